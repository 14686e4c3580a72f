"""Adaptive distillation: loss weights and a temperature that change over training, and attention losses that
follow where the student is still far from the teacher.

    weights = LossWeights(variant_config, total_steps, steps_per_epoch, epochs)
    total, used = weights.combine(values, step)     # values: loss name -> scalar tensor; used: name -> weight
    t = Temperature(variant_config, base=2.0, total_steps=...)
    focus = AttentionFocus(pairs, heads)            # head_weights (P, H'), updated from each step's head losses

A weight at a step is the configured weight times its schedule's multiplier (schedules.py) times, with automatic
weighting, a factor learned from the losses:
    magnitude    each loss divided by its running size (EMA), scaled so the terms keep their configured shares
    uncertainty  Kendall et al. (2018): exp(-s_i) * L_i + s_i with learned s_i, so a loss that stays large is
                 trusted less (its weight tends to 1 / L_i)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .schedules import curriculum_strength, multiplier, preset_schedules, temperature_at

AUTO_LR = 1e-2          # learning rate of the learned weights and temperature: the students' 5e-4 barely moves them
EMA = 0.9               # running magnitude: about the last ten steps
FACTOR_RANGE = (0.1, 10.0)


class LossWeights(nn.Module):
    """The weight of each of a variant's losses at each step."""

    def __init__(self, losses: dict[str, float], schedules: dict[str, str], preset: str, auto: str,
                 total_steps: int, steps_per_epoch: int, epochs: int):
        super().__init__()
        self.base = {k: float(w) for k, w in losses.items() if w > 0}
        self.schedules = dict(schedules) or preset_schedules(preset, self.base, epochs)
        self.auto = auto
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.names = list(self.base)
        self.log_vars = nn.Parameter(torch.zeros(len(self.names))) if auto == "uncertainty" else None
        self.running: dict[str, float] = {}

    @property
    def changes(self) -> bool:
        """Whether any weight differs from its configured value at some step."""
        return self.auto != "none" or any(s != "constant" for s in self.schedules.values())

    def multiplier(self, name: str, step: int) -> float:
        """The schedule's multiplier of `name` at `step` (1 when it has none), e.g. of the adversarial loss."""
        return multiplier(self.schedules.get(name, "constant"), step, self.total_steps, self.steps_per_epoch)

    def scheduled(self, step: int) -> dict[str, float]:
        """Configured weight times schedule multiplier, per loss, at `step` (0-based)."""
        return {k: w * self.multiplier(k, step) for k, w in self.base.items()}

    def factors(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Magnitude balancing: mean running size over the losses present divided by each loss's own (clamped)."""
        for k, v in values.items():
            x = abs(float(v.detach()))
            self.running[k] = x if k not in self.running else EMA * self.running[k] + (1 - EMA) * x
        present = [self.running[k] for k in values]
        mean = sum(present) / max(1, len(present))
        lo, hi = FACTOR_RANGE
        return {k: min(hi, max(lo, mean / max(self.running[k], 1e-8))) for k in values}

    def combine(self, values: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted total of `values` (loss name -> scalar with its graph) and the weight each loss had."""
        weights = self.scheduled(step)
        if self.auto == "magnitude":
            f = self.factors(values)
            weights = {k: weights[k] * f.get(k, 1.0) for k in weights}
        total, used = None, {}
        for k, v in values.items():
            w = weights[k]
            if self.log_vars is not None:
                s = self.log_vars[self.names.index(k)]
                term = w * (torch.exp(-s) * v + s) if w > 0 else v * 0.0
                used[k] = w * math.exp(-float(s.detach()))
            else:
                term = v * w
                used[k] = w
            total = term if total is None else total + term
        return total, used


class GradReverse(torch.autograd.Function):
    """Identity forward; the gradient times -strength backward (CTKD's adversarial temperature)."""

    @staticmethod
    def forward(ctx, x, strength: float):
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.strength * grad, None


class Temperature(nn.Module):
    """The KD temperature at each step: fixed, scheduled within [low, high], or learned against the student.

    curriculum (CTKD, Li et al. 2023): a learnable temperature receives the reversed gradient of the KD loss, so
    it moves to make the student's task harder; the strength of that push grows from 0 to 1 along a half cosine
    (easy to hard). It stays within [low, high]."""

    def __init__(self, schedule: str, base: float, low: float, high: float, total_steps: int):
        super().__init__()
        self.schedule, self.base, self.low, self.high, self.total_steps = schedule, base, low, high, total_steps
        self.value = nn.Parameter(torch.tensor(float(min(high, max(low, base))))) \
            if schedule == "curriculum" else None

    @property
    def changes(self) -> bool:
        return self.schedule != "constant"

    def at(self, step: int) -> float | torch.Tensor:
        if self.schedule == "constant":
            return self.base
        if self.value is None:
            return temperature_at(self.schedule, step, self.total_steps, self.low, self.high)
        return GradReverse.apply(self.value, curriculum_strength(step, self.total_steps))

    def clamp_(self) -> None:
        """After an optimizer step: keep the learned temperature in range."""
        if self.value is not None:
            with torch.no_grad():
                self.value.clamp_(self.low, self.high)


class AttentionFocus:
    """Per mapped pair and head, attention-loss weights that follow where the student is still far: each weight is
    the head's running loss over the mean running loss (clamped to [0.25, 4], then mean 1)."""

    def __init__(self, pairs: int, heads: int):
        self.running: torch.Tensor | None = None       # (P, H')
        self.shape = (pairs, heads)

    def weights(self, device) -> torch.Tensor | None:
        """(P, H') weights of mean 1; None before the first step (equal weights)."""
        if self.running is None:
            return None
        w = (self.running / self.running.mean().clamp_min(1e-8)).clamp(0.25, 4.0)
        return (w / w.mean()).to(device)

    def update(self, head_losses: dict[str, torch.Tensor]) -> None:
        """Fold in one step's per-head attention losses (mean over the attention losses present)."""
        if not head_losses:
            return
        x = torch.stack([v.float().cpu() for v in head_losses.values()]).mean(0)   # (P, H')
        self.running = x if self.running is None else EMA * self.running + (1 - EMA) * x
