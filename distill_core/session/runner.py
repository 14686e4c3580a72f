"""Running a session to its end in this process (`run_session`), recording how it ended. child.py runs one in a
child process, queue.py queues them in the background."""
from __future__ import annotations

import logging
import traceback

import torch

from .. import distributed
from ..config import SessionConfig
from ..errors import DistillError, NonFiniteLossError
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
