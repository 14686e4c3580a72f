"""The form's data files: saving uploads, previews of a file's first rows, and the whole-file checks (cached, so the
preview and Start see the same problems)."""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from app import roles
from distill_core.config import IMAGE_DATASETS, DataConfig, LanguageModelConfig
from distill_core.errors import DataError
from distill_core.modality.text.data import DataCheck, read_raw_table
from distill_core.preflight import file_check, image_source_info as engine_image_info
from distill_core.sources import UPLOADS_DIR, file_label

from .labels import FILE_TYPES, PREVIEW_ROWS


def upload_name(name: str) -> str:
    """The uploaded file's own name, safe to store: no folders, no control characters, no leading dot."""
    suffix = Path(str(name).replace("\\", "/")).suffix
    base = re.sub(r"[\x00-\x1f\x7f]+", "", str(name).replace("\\", "/").rsplit("/", 1)[-1]).strip().lstrip(".")
    if Path(base).suffix != suffix or not Path(base).stem.strip():
        base = "data" + suffix
    while len(base.encode()) > 160:               # file systems allow 255 bytes
        base = base[:-len(suffix) - 1] + suffix
    return base


def save_upload(runs_root: Path, name: str, data: bytes, max_mb: float, types: list[str] = FILE_TYPES) -> Path:
    """Write uploaded bytes to <runs_root>/.uploads/<content hash>/<the file's own name>, so that messages name
    the file as the user knows it and the same file uploaded again is the same path; only ever read as text (a
    .zip of images: read in memory by the engine, never extracted)."""
    if Path(name).suffix.lower().lstrip(".") not in types:
        raise DataError(f"{name}: only {', '.join('.' + t for t in types)} files can be used")
    if len(data) / 1e6 > max_mb:
        raise DataError(f"{name} is {len(data) / 1e6:.1f} MB, above the {max_mb:,g} MB limit")
    folder = Path(runs_root) / UPLOADS_DIR / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / upload_name(name)
    if not (path.is_file() and path.read_bytes() == data):     # unchanged: keep its mtime (and cached checks)
        path.write_bytes(data)
    return path


def take_upload(up, runs_root: Path, max_mb: float, path_key: str, sig_key: str,
                types: list[str] = FILE_TYPES) -> str | None:
    """The saved path of a file_uploader's file: saved (save_upload) once per new file, kept in session state under
    path_key; an unusable file is shown as an error and forgotten."""
    if up is not None and not roles.refused("upload files"):
        sig = f"{getattr(up, 'file_id', '')}:{up.name}:{up.size}"
        if st.session_state.get(sig_key) != sig:
            try:
                st.session_state[path_key] = str(save_upload(runs_root, up.name, up.getvalue(), max_mb, types))
                st.session_state[sig_key] = sig
            except DataError as e:
                st.error(str(e))
                st.session_state.pop(path_key, None)
    return st.session_state.get(path_key)


def counts_text(counts: dict, what: str, sep: str = " ") -> str:
    """"<what>; examples per class: a 10 (50%), ..." (the 12 largest classes; sep between a class and its count)."""
    total = sum(counts.values())
    shown = [f"{k}{sep}{v:,} ({v / total:.0%})" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:12]]
    more = f" and {len(counts) - 12:,} more" if len(counts) > 12 else ""
    return f"{what}; examples per class: {', '.join(shown)}{more}"


@st.cache_data(show_spinner=False, max_entries=16)
def _preview(path: str, mtime: float, size: int, max_file_mb: float) -> pd.DataFrame | str:
    """The first rows of the file as the engine reads it, or why the engine cannot read it (kept, so a file that
    cannot be read is not read again at every redraw)."""
    try:
        return read_raw_table(path, max_file_mb).head(PREVIEW_ROWS)
    except DataError as e:
        return str(e)


def preview_table(path: str | Path, max_file_mb: float) -> pd.DataFrame:
    """The first rows of a CSV/JSONL file; DataError with the reason when it cannot be read. The file is read as a
    session reads it (distill_core's read_raw_table: the size limit, UTF-8, the CSV or JSON parser), so the
    preview and Start give the same message for a file that cannot be used."""
    p = Path(path).expanduser()
    if not p.is_file():
        read_raw_table(p, max_file_mb)                  # says why, naming the file
    stat = p.stat()
    df = _preview(str(p), stat.st_mtime, stat.st_size, float(max_file_mb))
    if isinstance(df, str):
        raise DataError(df)
    if df.empty or not len(df.columns):
        raise DataError(f"{file_label(p)} has no rows")
    return df


@st.cache_data(show_spinner="Checking the whole file…", max_entries=16)
def _checked(path: str, mtime: float, size: int, text_column: str, label_column: str, sizes: tuple[int, int, int],
             max_file_mb: float, split_seed: int) -> DataCheck:
    return file_check(path, text_column, label_column, sizes, max_file_mb, split_seed)


def data_check(path: str | Path, text_column: str, label_column: str, sizes: tuple[int, int, int],
               max_file_mb: float, split_seed: int = 0) -> DataCheck:
    """distill_core.data.check_file on the whole file, cached by the file's path, time and size (and the
    choices that change the answer): the preview and the Start button (distill_core.preflight) see the same
    problems."""
    p = Path(path).expanduser()
    if not p.is_file():
        return file_check(p, text_column, label_column, sizes, max_file_mb, split_seed)
    stat = p.stat()
    return _checked(str(p), stat.st_mtime, stat.st_size, text_column, label_column,
                    tuple(int(x) for x in sizes), float(max_file_mb), int(split_seed))


TEXT_NAMES = ("text", "sentence", "tweet", "review", "content", "comment", "body", "message", "post", "document",
              "utterance")
LABEL_NAMES = ("label", "labels", "sentiment", "class", "category", "target", "rating", "stance")


def _named(columns: list[str], preferred: str, usual: tuple[str, ...], skip: int | None = None) -> int | None:
    """Index of the configured column, else of the first usual name (any case), never `skip`; None when none is there."""
    if preferred in columns and columns.index(preferred) != skip:
        return columns.index(preferred)
    lower = [c.strip().lower() for c in columns]
    for name in usual:
        if name in lower and lower.index(name) != skip:
            return lower.index(name)
    return None


def _words(values: pd.Series) -> tuple[float, float]:
    """(share of the non-empty cells that are not numbers, mean characters of those cells) of a column."""
    cells = [str(x).strip() for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    cells = [c for c in cells if c]
    if not cells:
        return 0.0, 0.0
    strings = [c for c in cells if not _is_number(c)]
    return len(strings) / len(cells), sum(map(len, strings)) / max(1, len(strings))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def guess_columns(df: pd.DataFrame, text_preferred: str, label_preferred: str) -> tuple[int, int]:
    """(text, label) column indices to preselect in a file's preview.

    Each is the configured name, else a usual name (text, sentence, tweet, review, ...; label, sentiment, class,
    ...), a text column's only if its cells are mostly words (at least half of them not numbers). Failing that, the
    text column is the column of mostly words with the most characters a cell on average; the label column is the
    last other column whose values repeat (fewer distinct values than half its cells), else the last other one."""
    cols = [str(c) for c in df.columns]
    label = _named(cols, label_preferred, LABEL_NAMES)
    scores = {i: _words(df.iloc[:, i]) for i in range(len(cols)) if i != label}
    wordy = [i for i, (share, _) in scores.items() if share >= 0.5]
    text = _named(cols, text_preferred, TEXT_NAMES, skip=label)
    if text not in wordy:
        text = max(wordy, key=lambda i: scores[i][1]) if wordy else next(iter(scores), 0)
    if label is None:
        others = [i for i in range(len(cols)) if i != text] or [text]
        repeats = [i for i in others if df.iloc[:, i].astype(str).nunique() < 0.5 * max(1, len(df))]
        label = (repeats or others)[-1]
    return text, label


@st.cache_data(show_spinner="Reading the images…", max_entries=16)
def _image_info(source: str, mtime: float, size: int, max_file_mb: float) -> dict:
    return engine_image_info(source, max_file_mb)


def image_source_info(source: str, max_file_mb: float) -> dict:
    """distill_core.images.check_image_source (classes and their counts, images, size, channels, notices), cached
    by the source's path, time and size; a built-in name, or a folder or .zip that exists. Raises DataError."""
    src = str(source).strip()
    p = Path(src).expanduser()
    stat = p.stat() if src not in IMAGE_DATASETS and p.exists() else None
    return _image_info(src, stat.st_mtime if stat else 0.0, stat.st_size if stat else 0, float(max_file_mb))


# ---- tagged sentences (token tagging) ----------------------------------------------------------------------
@st.cache_data(show_spinner="Reading the tagged sentences…", max_entries=16)
def _tagged(path: str, mtime: float, size: int, max_file_mb: float) -> dict | str:
    """What the tagging engine reads in a file (sentences, tokens, entities per type, the first sentences), or why
    it refuses the file (kept, so a file that cannot be used is not read again at every redraw)."""
    from distill_core.modality.tagging.data import read_tagged_file      # the engine's reader, loaded on first use
    try:
        words, tags = read_tagged_file(path, max_file_mb)
    except DataError as e:
        return str(e)
    return tagged_summary(words, tags)


def tagged_summary(words: list[list[str]], tags: list[list[str]]) -> dict:
    """Sentences, tokens, entities per type and a preview table of tagged sentences."""
    entities: dict[str, int] = {}
    for sent in tags:
        for t in sent:
            if t.startswith("B-"):
                entities[t[2:]] = entities.get(t[2:], 0) + 1
    rows = []
    for w, t in list(zip(words, tags))[:PREVIEW_ROWS]:
        found, cur = [], None
        for word, tag in zip(w, t):
            if tag.startswith("B-") or (tag.startswith("I-") and cur is None):
                cur = [word, tag[2:]]
                found.append(cur)
            elif tag.startswith("I-") and cur is not None:
                cur[0] += " " + word
            else:
                cur = None
        rows.append({"sentence": " ".join(w), "entities": ", ".join(f"{x} ({k})" for x, k in found)})
    return {"sentences": len(words), "tokens": sum(map(len, words)), "entities": entities,
            "preview": pd.DataFrame(rows, columns=["sentence", "entities"])}


def tagged_file_info(path: str | Path, max_file_mb: float) -> dict | None:
    """tagged_summary of a CoNLL-style or JSONL file as a tagging session reads it, cached by the file's path, time
    and size; DataError with the engine's words when the file cannot be used; None while the tagging engine is not
    installed (Start checks the file then)."""
    p = Path(path).expanduser()
    try:
        if not p.is_file():
            from distill_core.modality.tagging.data import read_tagged_file
            read_tagged_file(p, max_file_mb)                # says why, naming the file
        stat = p.stat()
        info = _tagged(str(p), stat.st_mtime, stat.st_size, float(max_file_mb))
    except ImportError:
        return None
    if isinstance(info, str):
        raise DataError(info)
    return info


# ---- sentence pairs (translation) -----------------------------------------------------------------------------
@st.cache_data(show_spinner="Reading the sentence pairs…", max_entries=16)
def _pairs(path: str, mtime: float, size: int, source_column: str, target_column: str,
           max_file_mb: float) -> dict | str:
    """What the translation engine reads in a file of pairs (their number, the first pairs), or why it refuses the
    file."""
    from distill_core.modality.translation.data import read_pair_file     # the engine's reader, loaded on first use
    try:
        pairs = read_pair_file(path, source_column, target_column, max_file_mb)
    except DataError as e:
        return str(e)
    words = [len(x.split()) for x in pairs.sources]
    return {"pairs": len(pairs.sources), "source_words": sum(words) / max(1, len(words)),
            "preview": pd.DataFrame({source_column: pairs.sources[:PREVIEW_ROWS],
                                     target_column: pairs.targets[:PREVIEW_ROWS]})}


def pair_file_info(path: str | Path, source_column: str, target_column: str, max_file_mb: float) -> dict | None:
    """The pairs of a CSV, TSV or JSONL file as a translation session reads them, cached by the file's path, time
    and size; DataError with the engine's words when they cannot be used; None while the translation engine is not
    installed (Start checks the file then)."""
    return engine_file_info(_pairs, path, max_file_mb, str(source_column), str(target_column))


def engine_file_info(read, path: str | Path, max_file_mb: float, *choices) -> dict | None:
    """read(path, mtime, size, *choices, max_file_mb): what a task's engine finds in a file, cached by its path, time
    and size (a file that is not there is refused naming it); DataError with the engine's words; None while the
    engine cannot be imported."""
    p = Path(path).expanduser()
    try:
        if not p.is_file():
            read_raw_table(p, max_file_mb)                  # says why, naming the file
        stat = p.stat()
        info = read(str(p), stat.st_mtime, stat.st_size, *choices, float(max_file_mb))
    except ImportError:
        return None
    if isinstance(info, str):
        raise DataError(info)
    return info


SOURCE_NAMES = ("source", "src", "en", "english", "input", "from")
TARGET_NAMES = ("target", "tgt", "fr", "french", "de", "es", "translation", "output", "to")


def guess_pair_columns(df: pd.DataFrame, source_preferred: str, target_preferred: str) -> tuple[int, int]:
    """(source, target) column indices to preselect: the configured names, else usual ones (source, src, en, ...;
    target, tgt, fr, ...), else the first two columns (a file of one column: that column twice, which the engine
    refuses with its reason)."""
    cols = [str(c) for c in df.columns]
    source = _named(cols, source_preferred, SOURCE_NAMES)
    target = _named(cols, target_preferred, TARGET_NAMES, skip=source)
    if source is None:
        source = next((i for i in range(len(cols)) if i != target), 0)
    if target is None:
        target = next((i for i in range(len(cols)) if i != source), source)
    return source, target


# ---- passages (language model) ----------------------------------------------------------------------------
PASSAGE_PREVIEW_CHARS = 160         # a passage's opening in the preview


@st.cache_data(show_spinner="Reading the passages…", max_entries=16)
def _passages(path: str, mtime: float, size: int, text_column: str, max_file_mb: float) -> dict | str:
    """What the language-model engine reads in a file (its passages, their words, the first passages), or why it
    refuses the file."""
    from distill_core.modality.language_model.data import read_passages     # the engine's reader, on first use
    try:
        passages = read_passages(DataConfig(source=path, max_file_mb=max_file_mb),
                                 LanguageModelConfig(text_column=text_column))
    except DataError as e:
        return str(e)
    words = sum(len(t.split()) for t in passages.texts)
    openings = [t if len(t) <= PASSAGE_PREVIEW_CHARS else t[:PASSAGE_PREVIEW_CHARS].rstrip() + " …"
                for t in passages.texts[:PREVIEW_ROWS]]
    return {"passages": len(passages.texts), "words": words, "name": passages.name, "notices": passages.notices,
            "preview": pd.DataFrame({"passage": passages.keys[:PREVIEW_ROWS], "opening": openings})}


def passage_file_info(path: str | Path, text_column: str, max_file_mb: float) -> dict | None:
    """The passages of a .txt file (its paragraphs) or of a CSV, TSV or JSONL file's text column as a
    language-model session reads them, cached by the file's path, time and size; DataError with the engine's words
    when they cannot be used; None while the language-model engine is not installed (Start checks the file then)."""
    return engine_file_info(_passages, path, max_file_mb, str(text_column))
