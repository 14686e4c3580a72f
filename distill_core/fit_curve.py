"""A teacher's training curve as it trains, for whoever shows it live.

The loops that train or fine-tune a teacher (teacher.finetune_loop, the image, translation and language-model
teachers' loops) hand each point to `point(...)`; a session collects them while it prepares its teacher (`collecting`)
and writes them to progress.json, so that the page that follows the run draws the curve and the time left while the
class waits for the first session. Outside `collecting`, `point` does nothing and the loops skip the extra
validations they make only to be shown (`wanted()`).

    with fit_curve.collecting(lambda p: curve.append(p)):
        prepare_teacher(...)
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

_SINK: contextvars.ContextVar[Callable[[dict], None] | None] = contextvars.ContextVar("fit_curve_sink", default=None)
_BEFORE: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("fit_curve_before", default=None)
POINTS_PER_EPOCH = 4        # validations per epoch drawn live (the last one is the epoch's own)


@contextlib.contextmanager
def collecting(sink: Callable[[dict], None], before: Callable | None = None) -> Iterator[None]:
    """Points go to `sink`; `before(model)` sees a teacher once, just before its training starts (the session
    records its attention on the probe examples, which the explorer shows while the class waits)."""
    token, token_before = _SINK.set(sink), _BEFORE.set(before)
    try:
        yield
    finally:
        _SINK.reset(token)
        _BEFORE.reset(token_before)


def before_training(model) -> None:
    """A teacher about to be trained or fine-tuned (its weights as loaded)."""
    before = _BEFORE.get()
    if before is not None:
        before(model)


def wanted() -> bool:
    """Whether anyone draws the curve live (else a loop makes no validation only to be shown)."""
    return _SINK.get() is not None


def point(**record) -> None:
    """One point: step, epoch (fractional), and what was measured (train_loss, val_accuracy, val_loss, ...)."""
    sink = _SINK.get()
    if sink is not None:
        sink({k: (round(v, 5) if isinstance(v, float) else v) for k, v in record.items()})


def live_every(steps_per_epoch: int) -> int:
    """Every how many steps a loop validates to be shown: POINTS_PER_EPOCH times an epoch (0: only at its end)."""
    every = steps_per_epoch // POINTS_PER_EPOCH
    return every if every >= 2 and wanted() else 0
