"""Progress, cancellation and events of a session (the shape of transformers' TrainerCallback).

A callback overrides the events it needs; any callback can ask the session to stop through `SessionControl`.
`StoreProgress` writes progress.json for pages and other processes, and honours a cancel file in the run folder;
`TqdmProgress` draws progress bars on a terminal.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..machine import WAITING_PHASE
from ..store import Run


# ---- estimates -----------------------------------------------------------------------------------------
STEP_WINDOW = 64       # the training speed is the mean of this many latest steps: it follows a machine that slows
WARMUP_STEPS = 3       # the session's first steps (allocations, first calls) count only until later ones are timed


def step_seconds(recent, step_s: float, steps_timed: int) -> float | None:
    """Seconds per training step: the mean of the recent steps past the warm-up, else of every step timed."""
    if recent:
        return sum(recent) / len(recent)
    return step_s / steps_timed if steps_timed else None


def plan_left_s(plan: list[float], done: int, spent_s: float) -> float:
    """Seconds left in a phase of items estimated beforehand at plan[i] seconds each, when the first `done` of them
    took `spent_s` seconds: the estimates of the items left, scaled by how long the finished ones took against
    theirs once those add up to a second; until then, the estimates less the time spent beyond them."""
    before, left = sum(plan[:done]), sum(plan[done:])
    if before >= 1.0:
        return left * spent_s / before
    return max(0.0, left - max(0.0, spent_s - before))


# ---- callbacks ---------------------------------------------------------------------------------------
TEACHER_PHASES = ("prepare teacher", "train teacher")     # the phases in which a teacher trains


@dataclass
class SessionState:
    """Where a session stands: what progress.json holds and what callbacks read.

    `eta_s` is the time left in the current phase at its rate so far. `session_eta_s` is the time left in the whole
    session, known once training has started:

    - during training: the training steps left at the measured seconds per step (a step is every variant's step
      on one batch: the mean of the last STEP_WINDOW steps, the session's first WARMUP_STEPS left out once later ones
      are timed, so the estimate follows the speed the session has now), plus the per-epoch recordings still to
      come (validation and the probe set's attention, at the last recording's measured time), plus the final
      evaluation (`finish_s`: each model's measured validation time scaled by test size / validation size, for the
      teacher, every variant, and again for each variant whose best epoch is not its last). With a time budget,
      training is taken to stop after the epoch in which the budget runs out;
    - during the final evaluation: the estimates of the models not yet tested (`finish_parts`), scaled by how long
      the tested ones took against theirs (plan_left_s); that is also the phase's `eta_s`;
    - before training (loading data, the teacher's fine-tune, its outputs, epoch 0): None; when done: 0.

    Not counted: latency measurements and writing the weights, a few seconds at most.

    progress.json also holds `started` and `phase_started` (wall-clock seconds) and `updated` (when it was written):
    a reader that redraws more often than the file is written ages the estimates by the time since `updated`.
    """
    run_id: str
    phase: str = "starting"      # load data, prepare teacher, teacher outputs, epoch 0, train, evaluate, done
    done: int = 0                # steps done in this phase
    total: int = 0               # steps in this phase
    epoch: int = 0               # epochs finished
    epochs: int = 0
    started: float = field(default_factory=time.time)
    phase_started: float = field(default_factory=time.time)
    train_started: float | None = None   # when the first training step began: the time budget counts from here
    epoch_step: int | None = None        # training steps done in the current epoch
    epoch_steps: int | None = None       # training steps per epoch
    time_budget_s: float | None = None   # train.time_budget_s (None: none)
    waiting: str | None = None           # while waiting for the machine (machine.py): whose session it waits for
    teacher_curve: list = field(default_factory=list)   # the teacher's training curve as it trains (fit_curve)
    step_s: float = 0.0                  # seconds measured in training steps so far
    steps_timed: int = 0                 # how many training steps step_s covers
    recent_step_s: deque = field(default_factory=lambda: deque(maxlen=STEP_WINDOW))  # the latest steps' seconds
    record_s: float | None = None        # seconds of the last per-epoch recording
    finish_s: float | None = None        # estimated seconds of the final evaluation
    finish_parts: list[float] | None = None   # the same, model by model, in the order the evaluation goes

    def add_step(self, seconds: float) -> None:
        """Count one timed training step."""
        self.step_s += seconds
        self.steps_timed += 1
        if self.steps_timed > WARMUP_STEPS:
            self.recent_step_s.append(seconds)

    @property
    def per_step_s(self) -> float | None:
        return step_seconds(self.recent_step_s, self.step_s, self.steps_timed)

    @property
    def elapsed_s(self) -> float:
        return time.time() - self.started

    @property
    def training_s(self) -> float:
        return 0.0 if self.train_started is None else time.time() - self.train_started

    @property
    def phase_s(self) -> float:
        return time.time() - self.phase_started

    @property
    def eta_s(self) -> float | None:
        """Seconds left in this phase: the final evaluation's from its plan (plan_left_s), others' at their rate."""
        parts = self.finish_parts
        if self.phase == "evaluate" and parts is not None and len(parts) == self.total:
            return plan_left_s(parts, self.done, self.phase_s)
        if self.done <= 0 or self.total <= 0:
            return None
        return self.phase_s / self.done * (self.total - self.done)

    @property
    def session_eta_s(self) -> float | None:
        """Seconds left in the whole session (see the class docstring); None before training starts."""
        if self.phase == "done":
            return 0.0
        if self.phase == "evaluate":
            if self.eta_s is not None:
                return self.eta_s
            return None if self.finish_s is None else max(0.0, self.finish_s - self.phase_s)
        if self.phase != "train" or not self.steps_timed or not self.epoch_steps:
            return None
        finish = self.finish_s or 0.0
        spe, budget, spent = self.epoch_steps, self.time_budget_s, self.training_s
        if self.epoch >= self.epochs or (budget and self.done <= self.epoch * spe and spent > budget):
            return finish                # training is over: the last epoch is recorded, or the budget ran out
        per_step, record = self.per_step_s, self.record_s or 0.0
        epoch_s = spe * per_step + record
        # to the end of the epoch being trained (epoch + 1), recorded; then each further epoch
        left = max(0, (self.epoch + 1) * spe - self.done) * per_step + record
        if not budget:
            return left + (self.epochs - self.epoch - 1) * epoch_s + finish
        for _ in range(self.epoch + 2, self.epochs + 1):
            if spent + left > budget:   # the budget is checked after each recording: training stops there
                break
            left += epoch_s
        return left + finish

    def as_dict(self) -> dict:
        training = self.phase == "train"
        eta, session_eta = self.eta_s, self.session_eta_s
        return {"phase": self.phase, "done": self.done, "total": self.total, "epoch": self.epoch,
                "epochs": self.epochs, "epoch_step": self.epoch_step if training else None,
                "epoch_steps": self.epoch_steps if training else None, "elapsed_s": round(self.elapsed_s, 1),
                "eta_s": None if eta is None else round(eta, 1),
                "session_eta_s": None if session_eta is None else round(session_eta, 1),
                "started": self.started, "phase_started": self.phase_started,
                **({"waiting": self.waiting} if self.phase == WAITING_PHASE else {}),
                **({"teacher_curve": self.teacher_curve} if self.phase in TEACHER_PHASES and self.teacher_curve else {}),
                "updated": time.time()}


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
    """Writes progress.json (at most every `every_s` seconds, and always at a phase's first and last step and an
    epoch's last training step, before its recording) and honours a cancel file in the run folder."""

    def __init__(self, run: Run, every_s: float = 0.5):
        self.run, self.every_s, self._last, self._phase = run, every_s, 0.0, None

    def on_step(self, state, control):
        if self.run.cancel_requested():
            control.stop("cancelled")
        now = time.time()
        edge = (state.phase != self._phase or state.done == state.total
                or (state.phase == "train" and state.epoch_step == state.epoch_steps))
        if edge or now - self._last >= self.every_s:
            self._last, self._phase = now, state.phase
            self.run.write_json("progress.json", state.as_dict())

    on_session_begin = on_step

    def on_epoch_end(self, state, control, records):
        self.run.write_json("progress.json", state.as_dict())

    def on_session_end(self, state, control, summary):
        self.run.write_json("progress.json", state.as_dict())


class TqdmProgress(SessionCallback):
    """Progress bars on the terminal, one per phase."""

    def __init__(self):
        self._tqdm, self._bar, self._phase = tqdm, None, None

    def on_session_begin(self, state, control): ...

    def on_step(self, state, control):
        if state.phase != self._phase or self._bar is None:
            if self._bar is not None:
                self._bar.close()
            self._phase = state.phase
            self._bar = self._tqdm(total=state.total or None, desc=state.phase, unit="step", leave=False,
                                   dynamic_ncols=True)
        if self._bar.total != state.total and state.total:
            self._bar.total = state.total
        self._bar.n = state.done
        self._bar.set_postfix_str(f"epoch {min(state.epoch + 1, state.epochs)}/{state.epochs}" if state.phase == "train" else "",
                                  refresh=False)
        self._bar.refresh()

    def on_epoch_end(self, state, control, records):
        line = "  ".join(f"{r['student']}: val acc {r['val_accuracy']:.3f}, JS "
                         + ("–" if r.get("js_mean") is None else f"{r['js_mean']:.4f}") for r in records)
        self._tqdm.write(f"epoch {state.epoch}: {line}")

    def on_session_end(self, state, control, summary):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Stop(Exception):
    """Raised inside a phase when a callback asked to stop."""
