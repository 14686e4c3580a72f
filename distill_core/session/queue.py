"""Sessions queued in the background (`start_session`), each in a child process of its own (child.py).

Sessions started in the background run one at a time by default: on a 2-core machine two sessions at once took
877 s for a default session that takes 329 s alone. `ADS_MAX_SESSIONS` raises the number run at once; torch's
thread count is set to the machine's cores divided among them.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import torch

from ..config import SessionConfig
from ..preflight import preflight
from ..store import Run, RunStore, now_iso
from .child import LOG_FILE, run_in_child
from .runner import run_session

log = logging.getLogger(__name__)


# ---- the background queue --------------------------------------------------------------------------------
@dataclass
class _Queued:
    run: Run
    config: SessionConfig
    store: RunStore
    callbacks: tuple


class SessionQueue:
    """Runs queued sessions, `workers` at a time, in the order they were started: each in a child process that a
    background thread waits for (`in_child`, the default), or in that thread itself (`in_child=False`: callbacks
    are Python objects of this process; a native crash then takes this process down with the session)."""

    def __init__(self, workers: int = 1, in_child: bool = True):
        self.workers = max(1, workers)
        self.in_child = in_child
        self._pending: list[_Queued] = []
        self._running: set[str] = set()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []

    def submit(self, config: SessionConfig, store: RunStore, callbacks=()) -> str:
        if callbacks and self.in_child:
            raise ValueError("callbacks run in this process: a queue of child processes takes none (follow a run "
                             "through its folder: progress.json, status.json), or make it with in_child=False")
        run = store.create(config.to_dict(), status="queued")
        with self._cv:
            self._pending.append(_Queued(run, config, store, tuple(callbacks)))
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) < self.workers:
                t = threading.Thread(target=self._work, name=f"session-worker-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            self._cv.notify()
        return run.id

    def position(self, run_id: str) -> int | None:
        """1 for the next session to start, 2 for the one after, ...; None when not waiting."""
        with self._cv:
            ids = [q.run.id for q in self._pending]
        return ids.index(run_id) + 1 if run_id in ids else None

    def running(self) -> list[str]:
        with self._cv:
            return sorted(self._running)

    def cancel(self, run_id: str) -> bool:
        """Take a waiting session out of the queue (its run reads 'cancelled'); False when it is not waiting."""
        with self._cv:
            found = [q for q in self._pending if q.run.id == run_id]
            if not found:
                return False
            self._pending.remove(found[0])
        _mark_cancelled_in_queue(found[0].run)
        return True

    def _torch_threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def _work(self) -> None:
        if not self.in_child:
            torch.set_num_threads(self._torch_threads())
        while True:
            with self._cv:
                while not self._pending:
                    # idle for a minute: this worker ends (a job submitted as the wait timed out is still seen)
                    if not self._cv.wait(timeout=60) and not self._pending:
                        self._threads = [t for t in self._threads if t is not threading.current_thread()]
                        return
                job = self._pending.pop(0)
                self._running.add(job.run.id)
            try:
                self._run(job)
            finally:
                with self._cv:
                    self._running.discard(job.run.id)

    def _run(self, job: _Queued) -> None:
        if job.run.cancel_requested():
            _mark_cancelled_in_queue(job.run)
            return
        job.run.update_status(status="running", pid=os.getpid(), started=now_iso())
        try:
            if self.in_child:
                ended = run_in_child(job.run, threads=self._torch_threads(), output=job.run.path / LOG_FILE)
                if ended.get("status") == "failed":
                    log.warning("session %s failed: %s", job.run.id, ended.get("error"))
            else:
                run_session(job.config, job.store, job.callbacks, run=job.run)
        except BaseException:  # noqa: BLE001 - already recorded in the run's status
            log.exception("session %s failed", job.run.id)


def _mark_cancelled_in_queue(run: Run) -> None:
    run.update_status(status="cancelled", ended=now_iso(), error="cancelled while waiting in the queue")


_QUEUE: SessionQueue | None = None
_QUEUE_LOCK = threading.Lock()


def session_queue() -> SessionQueue:
    """This process's queue; ADS_MAX_SESSIONS (default 1) sessions run at once."""
    global _QUEUE
    with _QUEUE_LOCK:
        if _QUEUE is None:
            try:
                workers = int(os.environ.get("ADS_MAX_SESSIONS", "1"))
            except ValueError:
                workers = 1
            _QUEUE = SessionQueue(workers)
        return _QUEUE


def start_session(config: SessionConfig, store: RunStore | None = None, callbacks=()) -> str:
    """Create the run and queue it; returns the run id at once. The run reads 'queued' until it starts.

    Progress, cancellation and results go through the run folder, so any page or process can follow it. A config
    that preflight refuses raises here, before any run is created."""
    store = store or RunStore()
    preflight(config, store)
    return session_queue().submit(config, store, callbacks)


def cancel_session(store: RunStore, run_id: str) -> str:
    """Cancel a queued or running session; returns what happened, in words."""
    if session_queue().cancel(run_id):
        return "removed from the queue"
    store.open(run_id).request_cancel()
    return "cancel requested: it stops after the current step and keeps its finished epochs"
