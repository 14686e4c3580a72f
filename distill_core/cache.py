"""What the cache folder holds (fine-tuned teachers, teacher outputs), how big it is, and clearing it.

cache_root()/teachers/<key>/            a fine-tuned teacher (save_pretrained + distill_meta.json)
cache_root()/image_teachers/<key>/      a built-in image teacher trained here (config.json, weights, distill_fit.json)
cache_root()/teacher_outputs/<key>.safetensors   the teacher's outputs on one training set
Each entry has a <key>.lock file beside it, held while a session writes the entry; a held entry is never deleted.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .teacher import outputs_dir, teachers_dir

log = logging.getLogger(__name__)

TEACHER, OUTPUTS, UNFINISHED = "teacher", "outputs", "unfinished"


@dataclass(frozen=True)
class CacheEntry:
    kind: str          # "teacher", "outputs", or "unfinished" (a write that was cut off, or is under way)
    key: str
    path: Path
    size_bytes: int
    used: float        # last used or modified, seconds since the epoch
    source: str = ""   # teacher: its source ("default", a folder, a hub id); outputs: the teacher they came from
    data: str = ""     # the data fingerprint ("" when unknown)


def _size_and_time(path: Path) -> tuple[int, float]:
    """(bytes, newest mtime) of a file, or of a folder and everything in it."""
    st = path.stat()
    if not path.is_dir():
        return st.st_size, st.st_mtime
    size, used = 0, st.st_mtime
    for f in path.rglob("*"):
        with contextlib.suppress(OSError):
            fs = f.stat()
            if f.is_file():
                size += fs.st_size
            used = max(used, fs.st_mtime)
    return size, used


def _teacher_meta(folder: Path) -> tuple[str, str]:
    if (folder / "distill_fit.json").is_file():     # a built-in image teacher trained here
        try:
            meta = json.loads((folder / "distill_fit.json").read_text())
            return f"image teacher {meta.get('source', '')}".strip(), str(meta.get("data", ""))
        except (OSError, ValueError, AttributeError):
            return "image teacher", ""
    try:
        meta = json.loads((folder / "distill_meta.json").read_text())
        return str(meta.get("source", "")), str(meta.get("data", ""))
    except (OSError, ValueError, AttributeError):
        return "", ""


def _outputs_meta(path: Path) -> tuple[str, str]:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - a damaged file is still listed (and recomputed when next used)
        return "", ""
    teacher = meta.get("teacher", "")
    if teacher and Path(teacher).parent == teachers_dir():
        teacher = f"teacher {Path(teacher).name}"
    return teacher, meta.get("data", "")


def _entry(kind: str, key: str, path: Path) -> CacheEntry | None:
    try:
        size, used = _size_and_time(path)
    except OSError:              # removed while listing
        return None
    source, data = _teacher_meta(path) if kind == TEACHER else _outputs_meta(path) if kind == OUTPUTS else ("", "")
    return CacheEntry(kind, key, path, size, used, source, data)


def cache_entries() -> list[CacheEntry]:
    """Every cached teacher, teacher-outputs file and unfinished write, most recently used first."""
    found = []
    if teachers_dir().is_dir():
        for p in teachers_dir().iterdir():
            if p.is_dir():
                unfinished = p.name.endswith(".tmp")
                found.append((UNFINISHED if unfinished else TEACHER, p.name.removesuffix(".tmp"), p))
    from .vision_models import image_teachers_dir
    if image_teachers_dir().is_dir():
        for p in image_teachers_dir().iterdir():
            if p.is_dir():
                unfinished = ".tmp" in p.name
                found.append((UNFINISHED if unfinished else TEACHER, p.name.split(".tmp")[0], p))
    if outputs_dir().is_dir():
        for p in outputs_dir().iterdir():
            if p.is_file() and p.name.endswith(".safetensors"):
                found.append((OUTPUTS, p.name.removesuffix(".safetensors"), p))
            elif p.is_file() and p.name.endswith(".safetensors.tmp"):
                found.append((UNFINISHED, p.name.removesuffix(".safetensors.tmp"), p))
    entries = [e for e in (_entry(*f) for f in found) if e is not None]
    return sorted(entries, key=lambda e: (-e.used, e.key))


def cache_size_bytes() -> int:
    return sum(e.size_bytes for e in cache_entries())


@contextlib.contextmanager
def _unless_locked(lock: Path):
    """Yields False when a running session holds `lock`, else True (holding it meanwhile)."""
    try:
        f = open(lock, "a")
    except OSError:              # no lock file can be made here, so nobody holds one
        yield True
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _matching(entries: list[CacheEntry], key: str) -> list[CacheEntry]:
    """Entries whose key is `key`, or starts with it when that names one key only."""
    exact = [e for e in entries if e.key == key]
    if exact:
        return exact
    keys = sorted({e.key for e in entries if e.key.startswith(key)}) if key else []
    if not keys:
        raise ConfigError(f"the cache has no entry {key!r}; `python -m distill_core cache` lists the keys")
    if len(keys) > 1:
        raise ConfigError(f"{key!r} starts {len(keys)} cache keys ({', '.join(keys[:3])}...); give more of the key")
    return [e for e in entries if e.key == keys[0]]


def clear_cache(key: str | None = None) -> int:
    """Delete every cache entry, or those of one key (or unique key prefix); returns the bytes freed.

    An entry whose lock a running session holds (a fine-tune or an outputs write under way) is kept, with a
    warning. Lock files are kept: deleting one that another process waits on would let two writers in."""
    entries = cache_entries()
    if key is not None:
        entries = _matching(entries, key)
    freed = 0
    for e in entries:
        with _unless_locked(e.path.parent / f"{e.key}.lock") as free:
            if not free:
                log.warning("kept %s %s: a running session is writing it; clear it when that session has "
                            "finished", e.kind, e.key)
                continue
            try:
                if e.path.is_dir():
                    shutil.rmtree(e.path)
                else:
                    e.path.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                log.warning("could not delete %s: %s; check the folder's permissions", e.path, err)
                continue
            freed += e.size_bytes
    return freed
