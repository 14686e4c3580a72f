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
