"""Progress, cancellation and events of a session (the shape of transformers' TrainerCallback).

A callback overrides the events it needs; any callback can ask the session to stop through `SessionControl`.
`StoreProgress` writes progress.json for pages and other processes, and honours a cancel file in the run folder.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..store import Run


# ---- callbacks ---------------------------------------------------------------------------------------
@dataclass
class SessionState:
    run_id: str
    phase: str = "starting"      # load data, prepare teacher, teacher outputs, train, evaluate, done
    done: int = 0                # steps done in this phase
    total: int = 0               # steps in this phase
    epoch: int = 0               # epochs finished
    epochs: int = 0
    started: float = field(default_factory=time.time)
    phase_started: float = field(default_factory=time.time)
    train_started: float | None = None   # when the first training step began: the time budget counts from here

    @property
    def elapsed_s(self) -> float:
        return time.time() - self.started

    @property
    def training_s(self) -> float:
        return 0.0 if self.train_started is None else time.time() - self.train_started

    @property
    def eta_s(self) -> float | None:
        """Seconds left in this phase at the current rate."""
        if self.done <= 0 or self.total <= 0:
            return None
        rate = (time.time() - self.phase_started) / self.done
        return rate * (self.total - self.done)

    def as_dict(self) -> dict:
        return {"phase": self.phase, "done": self.done, "total": self.total, "epoch": self.epoch,
                "epochs": self.epochs, "elapsed_s": round(self.elapsed_s, 1),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1), "updated": time.time()}


@dataclass
class SessionControl:
    should_stop: bool = False
    reason: str = ""             # "cancelled" or "time budget"

    def stop(self, reason: str) -> None:
        self.should_stop, self.reason = True, reason


class SessionCallback:
    """Base class of no-op events; override what you need. Set control.stop("cancelled") to cancel."""

    def on_session_begin(self, state: SessionState, control: SessionControl) -> None: ...
    def on_step(self, state: SessionState, control: SessionControl) -> None: ...
    def on_epoch_end(self, state: SessionState, control: SessionControl, records: list[dict]) -> None: ...
    def on_session_end(self, state: SessionState, control: SessionControl, summary: dict) -> None: ...


class StoreProgress(SessionCallback):
    """Writes progress.json (at most every `every_s` seconds) and honours a cancel file in the run folder."""

    def __init__(self, run: Run, every_s: float = 0.5):
        self.run, self.every_s, self._last = run, every_s, 0.0

    def on_step(self, state, control):
        if self.run.cancel_requested():
            control.stop("cancelled")
        now = time.time()
        if now - self._last >= self.every_s or state.done == state.total:
            self._last = now
            self.run.write_json("progress.json", state.as_dict())

    on_session_begin = on_step

    def on_epoch_end(self, state, control, records):
        self.run.write_json("progress.json", state.as_dict())

    def on_session_end(self, state, control, summary):
        self.run.write_json("progress.json", state.as_dict())


class Stop(Exception):
    """Raised inside a phase when a callback asked to stop."""
