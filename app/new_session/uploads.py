"""The form's data files: saving uploads, previews of a file's first rows, and the whole-file checks (cached, so the
preview and Start see the same problems)."""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from distill_core.config import IMAGE_DATASETS
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
        raise DataError(f"{name} is {len(data) / 1e6:.1f} MB, above the {max_mb:g} MB limit")
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
    if up is not None:
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
def _preview(path: str, mtime: float, size: int) -> pd.DataFrame:
    suffix = Path(path).suffix.lower()
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        if suffix in (".jsonl", ".json", ".ndjson"):
            rows = []
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("each line must be one JSON object like {\"text\": ..., \"label\": ...}")
                    rows.append(obj)
                if len(rows) >= PREVIEW_ROWS:
                    break
            return pd.DataFrame(rows)
        return pd.read_csv(f, sep="\t" if suffix == ".tsv" else ",", nrows=PREVIEW_ROWS, dtype=object,
                           keep_default_na=False)


def preview_table(path: str | Path) -> pd.DataFrame:
    """The first rows of a CSV/JSONL file, as text; DataError with the reason when it cannot be read."""
    p = Path(path).expanduser()
    if not p.is_file():
        read_raw_table(p, math.inf)                  # says why, naming the file
    try:
        df = _preview(str(p), p.stat().st_mtime, p.stat().st_size)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{file_label(p)} cannot be read: {str(e).strip()}") from None
    if df.empty or not len(df.columns):
        raise DataError(f"{file_label(p)} has no rows")
    df.columns = [str(c) for c in df.columns]
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


def guess_column(columns: list[str], preferred: str, role: str) -> int:
    """Index of the column to preselect: the configured name, else a usual name, else first/last column."""
    usual = {"text": ("text", "sentence", "review", "content"), "label": ("label", "labels", "sentiment", "class")}
    for name in (preferred, *usual[role]):
        if name in columns:
            return columns.index(name)
    return {"text": 0, "label": len(columns) - 1}[role]     # texts first, labels last, as files usually have them


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
