"""Sessions take turns on a machine's cores or GPU, whichever process starts them: the app, the command line, a
sweep, a benchmark.

Two torch sessions at once on one 2-core machine do not share it: each process gives torch one thread per core and
the threads spin waiting for each other, so the app's first epoch took 186 s while a command-line session ran,
against 12 s alone (a fair share would be 24 s). The app's own queue (session/queue.py) orders the sessions it
starts, but not those of other processes. So every session holds a slot of its device for as long as it runs: a lock
file in the cache folder (`ADS_CACHE_DIR/machine/<device>-<k>.lock`, flock, released by the system when the process
ends, however it ends), whose content says who holds it. A session that finds every slot taken waits, saying whose
session it waits for ("waiting for the machine"), and can be cancelled while it waits.

    with machine_slot("cpu", {"run_id": ..., "name": ...}, waiting=lambda message, waited_s: ...):
        ...   # the session

`ADS_MACHINE_SLOTS` sets how many sessions run at once on one device (default 1; 0 turns the turns off). Processes
of one distributed launch do not take slots (they are one session).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from .cache import cache_root
from .errors import ConfigError

log = logging.getLogger(__name__)

SLOTS_ENV = "ADS_MACHINE_SLOTS"
ORIGIN_ENV = "ADS_SESSION_ORIGIN"      # what started this process's sessions, in words ("the app", "the command line")
WAITING_PHASE = "waiting for the machine"
POLL_S = 1.0


def slots() -> int:
    """How many sessions may run at once on one device (ADS_MACHINE_SLOTS, default 1; 0: no turns)."""
    raw = os.environ.get(SLOTS_ENV, "1").strip()
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(f"{SLOTS_ENV} must be a whole number (sessions at once on one device; 0 turns the turns "
                          f"off), not {raw!r}") from None
    if n < 0:
        raise ConfigError(f"{SLOTS_ENV} must be 0 or more, not {n}")
    return n


def device_label(device) -> str:
    """The slot's name of a torch device: "cpu", "cuda0", "mps"."""
    kind = getattr(device, "type", str(device).split(":")[0])
    index = getattr(device, "index", None)
    if kind == "cuda":
        return f"cuda{index or 0}"
    return kind


def slot_folder() -> Path:
    return cache_root() / "machine"


def holders(device: str) -> list[dict]:
    """Who holds the slots of `device` now, as each holder wrote it (pid, run_id, name, since, what)."""
    out = []
    folder = slot_folder()
    for path in sorted(folder.glob(f"{device}-*.lock")) if folder.is_dir() else []:
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:                       # held: read what its holder wrote
                try:
                    out.append(json.loads(path.read_text() or "{}"))
                except (OSError, ValueError):
                    out.append({})
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return out


def describe_holders(device: str, found: list[dict]) -> str:
    """In words: whose session this one waits for."""
    where = "this machine's CPU" if device == "cpu" else f"GPU {device[4:]}" if device.startswith("cuda") else device
    if not found:
        return f"another session is running on {where}"
    parts = []
    for h in found:
        who = f"session {h['run_id']}" if h.get("run_id") else "a session"
        if h.get("name"):
            who += f" ({h['name']})"
        started = f", started from {h['what']}" if h.get("what") else ""
        since = (f" since {time.strftime('%H:%M:%S', time.localtime(h['since']))}" if h.get("since") else "")
        pid = f", process {h['pid']}" if h.get("pid") else ""
        parts.append(f"{who}{started}{pid}, running{since}")
    return f"{'; '.join(parts)} on {where}"


def waiting_message(who: str) -> str:
    """What a session that waits says once (the command line prints it): `who` is describe_holders'."""
    return (f"waiting for the machine: {who}. This session starts when that one ends: two sessions at once on these "
            f"cores would each run many times slower, so they take turns. Press Ctrl+C (or cancel the run) to stop "
            f"waiting, or set {SLOTS_ENV}=2 to let two run at once")


def _try_slot(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def machine_slot(device: str, who: dict, waiting: Callable[[str, float], None] | None = None,
                 poll_s: float = POLL_S) -> Iterator[float]:
    """Hold a slot of `device` while the block runs; yields the seconds waited for it. While every slot is taken,
    calls waiting(whose session it waits for, in words, waited_s) every poll_s seconds (it may raise to stop waiting). With ADS_MACHINE_SLOTS=0,
    or a cache folder that cannot be written, the block runs without a slot."""
    n = slots()
    if n == 0:
        yield 0.0
        return
    try:
        slot_folder().mkdir(parents=True, exist_ok=True)
        paths = [slot_folder() / f"{device}-{k}.lock" for k in range(n)]
        fd = next((f for f in (_try_slot(p) for p in paths) if f is not None), None)
    except OSError as e:
        log.warning("cannot take a turn on the machine (%s): running without one", e)
        yield 0.0
        return
    t0, told = time.time(), False
    while fd is None:
        whose = describe_holders(device, holders(device))
        if not told:
            log.warning("%s", waiting_message(whose))
            told = True
        if waiting is not None:
            waiting(whose, time.time() - t0)
        time.sleep(poll_s)
        fd = next((f for f in (_try_slot(p) for p in paths) if f is not None), None)
    waited = time.time() - t0 if told else 0.0       # 0: it had the machine at once
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": time.time(), **who}).encode(), 0)
    except OSError:
        pass
    try:
        yield waited
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
