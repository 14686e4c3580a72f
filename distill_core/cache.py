"""The cache folder (ADS_CACHE_DIR): building one entry of it once, what it holds, how big it is, and clearing it.

cache_root()/teachers/<key>/            a fine-tuned teacher (save_pretrained + distill_meta.json)
cache_root()/image_teachers/<key>/      a built-in image teacher trained here (config.json, weights, distill_fit.json)
cache_root()/teacher_outputs/<key>.safetensors   the teacher's outputs on one training set
Each entry has a <key>.lock file beside it, held while a session writes the entry; a held entry is never deleted.
An entry is written as <name>.tmp and renamed into place (`get_or_build`), so a reader never sees half of one.

This module imports nothing of the project's but its errors, so the teacher and the image models can both use it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from safetensors import safe_open

from .errors import ConfigError, ModelError

log = logging.getLogger(__name__)

TEACHER, OUTPUTS, UNFINISHED = "teacher", "outputs", "unfinished"
T = TypeVar("T")


# ---- where the entries live ---------------------------------------------------------------------------------
def cache_root() -> Path:
    return Path(os.environ.get("ADS_CACHE_DIR", Path.home() / ".cache" / "attention-distillation-studio"))


def teachers_dir() -> Path:
    return cache_root() / "teachers"


def image_teachers_dir() -> Path:
    return cache_root() / "image_teachers"


def outputs_dir() -> Path:
    return cache_root() / "teacher_outputs"


def data_digest(*parts) -> str:
    """sha256[:16] of JSON-able parts (numpy arrays by their bytes): what a cached teacher learned from, in a key."""
    h = hashlib.sha256()
    for part in parts:
        if hasattr(part, "tobytes"):
            h.update(json.dumps([list(part.shape), str(part.dtype)]).encode())
            h.update(part.tobytes())
        else:
            h.update(json.dumps(part, default=str).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CacheSlot:
    """Where one entry lives: <folder>/<key><suffix> (suffix "" for a folder entry), its lock <folder>/<key>.lock
    and, while it is written, <folder>/<key><suffix>.tmp. The key names everything that changes the entry, its
    recipe version included."""
    folder: Path
    key: str
    suffix: str = ""

    @property
    def path(self) -> Path:
        return self.folder / f"{self.key}{self.suffix}"

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.key}.lock"

    @property
    def tmp(self) -> Path:
        return self.folder / f"{self.key}{self.suffix}.tmp"


# ---- building an entry once ---------------------------------------------------------------------------------
def touch(path: Path) -> None:
    """Mark a cache entry as used now (the cache listing shows it); a read-only cache is fine."""
    try:
        os.utime(path)
    except OSError:
        pass


@contextlib.contextmanager
def entry_lock(path: Path):
    """An exclusive lock between threads and processes (flock is per open file, so threads block too)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "w")
    except OSError as e:
        raise ModelError(f"cannot write the teacher cache {path.parent}: {e}; set ADS_CACHE_DIR to a writable "
                         f"folder") from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def write_then_rename(slot: CacheSlot, write: Callable[[Path], None]) -> None:
    """write(tmp) writes the entry at slot.tmp, which then replaces slot.path in one rename (a folder entry that
    is there is deleted first); on any error the half-written tmp is deleted and the error raised."""
    tmp = slot.tmp
    try:
        _remove(tmp)
        write(tmp)
        if slot.path.is_dir():
            shutil.rmtree(slot.path, ignore_errors=True)
        os.replace(tmp, slot.path)
    except BaseException:
        _remove(tmp)
        raise


def get_or_build(slot: CacheSlot, load: Callable[[bool], T | None], build: Callable[[], object],
                 write: Callable[[object, Path], None], *, write_errors: tuple[type[BaseException], ...],
                 write_failed: Callable[[BaseException], None], reread: Callable[[], T] | None = None,
                 read_unlocked: bool = False, unlocked: Callable[[Exception], T] | None = None) -> tuple[T, bool]:
    """The cached entry of `slot`, built and written the first time. Returns (value, hit).

    load(repair): the entry, or None when it is missing or damaged (a damaged one is deleted when `repair`).
    build(): the value; write(value, tmp) saves it (see write_then_rename). A write error of `write_errors` goes to
    write_failed(error), which raises or logs; the built value is then returned as it is. After a write,
    reread() (when given) is returned: what a later session loads, exactly.
    The slot's lock is held while it loads and builds, so two processes or threads never build one entry at once;
    with `read_unlocked` a first load(False) without the lock (for entries replaced in one rename). When the lock
    cannot be taken, unlocked(error) is returned when given, else the error raised."""
    if read_unlocked:
        found = load(False)
        if found is not None:
            touch(slot.path)
            return found, True
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(entry_lock(slot.lock))
        except (ModelError, OSError) as e:
            if unlocked is None:
                raise
            return unlocked(e), False
        found = load(True)              # another session may have written it while this one waited
        if found is not None:
            touch(slot.path)
            return found, True
        value = build()
        try:
            write_then_rename(slot, lambda tmp: write(value, tmp))
        except write_errors as e:
            write_failed(e)
            return value, False
        return (reread() if reread is not None else value), False


def read_fit(meta: Path) -> dict | None:
    """The "fit" record (how the training went) in an entry's distill_meta.json or distill_fit.json, if any."""
    try:
        return json.loads(meta.read_text()).get("fit")
    except (OSError, ValueError, AttributeError):
        return None


# ---- what the cache holds -----------------------------------------------------------------------------------
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
        with _unless_locked(CacheSlot(e.path.parent, e.key).lock) as free:
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
