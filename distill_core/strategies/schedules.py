"""Weight and temperature schedules: a multiplier in [0, 1] of training progress, named in a config.

    constant        1 throughout
    linear_up       0 -> 1 over training          linear_down     1 -> 0
    cosine_up       0 -> 1 along a half cosine    cosine_down     1 -> 0
    step@E          0 before epoch E (1-based), 1 from epoch E on
    until@E         1 before epoch E, 0 from epoch E on

A variant's loss weight at a step is its configured weight times the multiplier of the loss's schedule. The
TinyBERT preset (intermediate layers first, then the prediction layer) is two of these: the attention and hidden
losses run `until@S`, the output losses `step@S`, with S the first epoch of the second half.

Pure Python: the config validates names with `check_schedule` without importing torch.
"""
from __future__ import annotations

import math

SCHEDULES = ("constant", "linear_up", "linear_down", "cosine_up", "cosine_down", "step@E", "until@E")
TEMPERATURE_SCHEDULES = ("constant", "linear_up", "linear_down", "cosine_up", "cosine_down", "curriculum")
PRESETS = ("", "tinybert")
# TinyBERT stages: which losses are "intermediate" (first stage) and which "prediction" (second stage)
INTERMEDIATE_LOSSES = ("attention_mse", "attention_score_mse", "attention_kl", "hidden_mse", "attention_transfer")
PREDICTION_LOSSES = ("ce", "logit_kd", "hard_kd")


def check_schedule(spec: str) -> str | None:
    """None when `spec` names a schedule, else what is wrong and how to write one."""
    if not isinstance(spec, str):
        return f"a schedule is a name like linear_up or step@2, not {spec!r}"
    if spec in SCHEDULES[:5]:
        return None
    kind, _, epoch = spec.partition("@")
    if kind in ("step", "until"):
        if epoch.isdigit() and int(epoch) >= 1:
            return None
        return f"schedule {spec!r} needs the epoch it switches at, a whole number from 1, e.g. {kind}@2"
    return f"unknown schedule {spec!r}; known: constant, linear_up, linear_down, cosine_up, cosine_down, step@E, until@E"


def multiplier(spec: str, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The schedule's value at `step` (0-based) of `total_steps`; epochs are 1-based for step@E / until@E."""
    progress = min(1.0, step / max(1, total_steps - 1))
    if spec == "constant":
        return 1.0
    if spec == "linear_up":
        return progress
    if spec == "linear_down":
        return 1.0 - progress
    if spec == "cosine_up":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    if spec == "cosine_down":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    kind, _, e = spec.partition("@")
    epoch = step // max(1, steps_per_epoch) + 1
    if kind == "step":
        return 1.0 if epoch >= int(e) else 0.0
    if kind == "until":
        return 1.0 if epoch < int(e) else 0.0
    raise ValueError(check_schedule(spec))


def preset_schedules(preset: str, losses: dict, epochs: int) -> dict[str, str]:
    """The schedules a preset gives the variant's losses (given `epochs` training epochs)."""
    if not preset:
        return {}
    if preset == "tinybert":
        switch = max(2, epochs // 2 + 1) if epochs > 1 else 1
        out = {}
        for name in losses:
            if name in INTERMEDIATE_LOSSES:
                out[name] = f"until@{switch}" if epochs > 1 else "constant"
            elif name in PREDICTION_LOSSES:
                out[name] = f"step@{switch}" if epochs > 1 else "constant"
        return out
    raise ValueError(f"unknown preset {preset!r}")


def temperature_at(spec: str, step: int, total_steps: int, low: float, high: float) -> float:
    """A scheduled temperature between `low` and `high` ("linear_down": high at the start, low at the end)."""
    return low + (high - low) * multiplier(spec, step, total_steps, 1)


def curriculum_strength(step: int, total_steps: int) -> float:
    """CTKD's lambda: how hard the learnable temperature pushes against the student, 0 -> 1 along a half cosine."""
    return multiplier("cosine_up", step, total_steps, 1)
