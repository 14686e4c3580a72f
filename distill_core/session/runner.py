"""Running sessions: to the end in this thread (`run_session`), or queued in the background (`start_session`).

Sessions started in the background run one at a time by default: on a 2-core machine two sessions at once took
877 s for a default session that takes 329 s alone. `ADS_MAX_SESSIONS` raises the number run at once; torch's
thread count is set to the machine's cores divided among them.
"""
from __future__ import annotations

import logging
import os
import threading
import traceback
from dataclasses import dataclass

import torch

from .. import distributed
from ..config import SessionConfig
from ..errors import DistillError, NonFiniteLossError
from ..preflight import preflight
from ..store import Run, RunStore, now_iso
from .callbacks import Stop
from .session import Session

log = logging.getLogger(__name__)


def run_session(config: SessionConfig, store: RunStore | None = None, callbacks=(), run: Run | None = None) -> str:
    """Run one session to its end and return the run id. Errors are recorded in the run, then raised.

    Across several processes (distributed.py) only the main one writes to `store`: the others run the same session
    into a throwaway run, deleted at the end, and return its id."""
    store = store or RunStore()
    if run is None and distributed.active() and not distributed.is_main():
        with distributed.worker_run(store, config.to_dict()) as worker:
            return run_session(config, store, callbacks, run=worker)
    if run is None:
        run = store.create(config.to_dict())
    session = Session(config, run, callbacks)
    try:
        summary = session.execute()
    except Stop:
        run.update_status(status="cancelled", ended=now_iso(), error=None)
        run.write_json("summary.json", session.partial_summary("cancelled"))
        _save_finished_variants(session)        # a cancel during the final evaluation keeps the trained weights
        session.emit("on_session_end", run.read_json("summary.json"))
        return run.id
    except BaseException as e:  # noqa: BLE001 - every failure is recorded before it propagates
        msg = describe_failure(e, session)
        run.update_status(status="failed", ended=now_iso(), error=msg,
                          traceback=traceback.format_exc() if not isinstance(e, DistillError) else None)
        run.write_json("summary.json", session.partial_summary("failed", msg))
        _save_finished_variants(session)
        raise
    run.update_status(status=summary["status"], ended=now_iso(), error=None)
    session.emit("on_session_end", summary)
    return run.id


def describe_failure(e: BaseException, session: Session) -> str:
    """One line that names what went wrong and, where there is one, the fix."""
    where = f"epoch {session.state.epoch + 1}: " if session.state.phase == "train" else ""
    if isinstance(e, NonFiniteLossError):
        return f"{e}; learning rate now {session.config.train.lr:g}"
    if isinstance(e, DistillError):
        return f"{where}{e}"
    text = str(e)
    if isinstance(e, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return (f"{where}out of memory during {session.state.phase}; try a smaller batch size "
                f"(now {session.config.train.batch_size}) or max_length (now {session.config.data.max_length})")
    if isinstance(e, KeyboardInterrupt):
        return f"{where}interrupted"
    return f"{where}{type(e).__name__}: {text}"


def _save_finished_variants(session: Session) -> None:
    """After a failure or a cancel outside training, keep each variant's weights as of its last finished epoch,
    and its best epoch's where that is another one, as a finished session does (for the explorer)."""
    p = session.prepared
    if p is None or session.state.epoch < 1:
        return
    for v in p.variants:
        try:
            v.restore()
            session.save_weights(v)
        except Exception:  # noqa: BLE001 - the failure being recorded matters more than these weights
            log.exception("could not save the %s student of failed run %s", v.name, session.run.id)


# ---- the background queue --------------------------------------------------------------------------------
@dataclass
class _Queued:
    run: Run
    config: SessionConfig
    store: RunStore
    callbacks: tuple


class SessionQueue:
    """Runs queued sessions in background threads, `workers` at a time, in the order they were started."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self._pending: list[_Queued] = []
        self._running: set[str] = set()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []

    def submit(self, config: SessionConfig, store: RunStore, callbacks=()) -> str:
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

    def _work(self) -> None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.workers))
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

    @staticmethod
    def _run(job: _Queued) -> None:
        if job.run.cancel_requested():
            _mark_cancelled_in_queue(job.run)
            return
        job.run.update_status(status="running", pid=os.getpid(), started=now_iso())
        try:
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
