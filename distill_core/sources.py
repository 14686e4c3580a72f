"""One rule for what a source string names: the built-in default, a local file or folder, or a hub id.

    source_kind("default", "model")            -> "builtin"
    source_kind("./folder", "model")           -> "local"      (even when it does not exist: then it is missing)
    source_kind("data.csv", "data")            -> "local"
    source_kind("stanfordnlp/sst2", "data")    -> "hub"
    source_kind("user/model", "model")         -> "hub"

The engine, the command line and the app all ask this module, so a name means the same thing everywhere.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

BUILTIN = {"model": "default", "data": "rotten_tomatoes"}
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson", ".txt")
KINDS = ("builtin", "local", "hub")


def source_kind(source: str, role: str) -> str:
    """'builtin', 'local' or 'hub' for a model (role 'model') or dataset (role 'data') source."""
    src = (source or "").strip()
    if src == BUILTIN[role]:
        return "builtin"
    if looks_local(src, role) or Path(src).expanduser().exists():
        return "local"
    return "hub"


def looks_local(source: str, role: str) -> bool:
    """A path by its spelling: starts with '.', '/' or '~', holds a backslash or '//', has more than one '/',
    or (for data) ends in a data file's suffix. Hub ids are 'name' or 'owner/name'."""
    src = source.strip()
    if src.startswith((".", "/", "~")) or "\\" in src or "//" in src or src.count("/") > 1 or os.sep + os.sep in src:
        return True
    return role == "data" and Path(src).suffix.lower() in DATA_SUFFIXES


UPLOADS_DIR = ".uploads"       # under the runs folder: files uploaded in the app, as <content hash>/<name>
_OLD_UPLOAD = re.compile(r"^[0-9a-f]{12}_(.+)$")   # older uploads: .uploads/<random hex>_<name>


def file_label(path: str | Path) -> str:
    """The name a data file goes by in messages: its own name. Uploads keep their original name
    (.uploads/<hash>/<name>); one saved by older versions as .uploads/<hex>_<name> is called <name>."""
    p = Path(path)
    m = _OLD_UPLOAD.match(p.name)
    return m.group(1) if m and p.parent.name == UPLOADS_DIR else p.name


def is_upload(path: str | Path) -> bool:
    """Whether `path` is a file the app stored from an upload."""
    return UPLOADS_DIR in Path(path).parts[-3:-1]
