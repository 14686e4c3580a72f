"""Distillation objectives, registered by name. Each reads a `LossInputs` and returns a scalar.

    ce             cross-entropy on the hard labels
    logit_kd       Hinton et al.: KL between temperature-softened teacher and student outputs, times T^2
    hard_kd        cross-entropy on the teacher's argmax (its predicted label)
    attention_mse  TinyBERT-style squared error between teacher and student attention probabilities
    attention_kl   MiniLM-style KL(teacher || student) between attention distributions, row by row
    hidden_mse     FitNets/TinyBERT: squared error between hidden states, through a learned projection
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import metrics
from .config import LOSS_NAMES
from .errors import ConfigError

LOSS_HELP = {
    "ce": "Cross-entropy with the true labels: what the student would learn on its own.",
    "logit_kd": "Match the teacher's softened output distribution (Hinton et al., 2015). The temperature T "
                "spreads probability over the wrong classes too, the 'dark knowledge'.",
    "hard_kd": "Cross-entropy with the teacher's predicted label instead of the true one.",
    "attention_mse": "Squared error between teacher and student attention probabilities on mapped layers "
                     "(TinyBERT, Jiao et al., 2020).",
    "attention_kl": "KL divergence from each teacher attention row to the student's (MiniLM, Wang et al., 2020): "
                    "the student learns where the teacher looks.",
    "hidden_mse": "Squared error between hidden states of mapped layers, through a learned projection when "
                  "widths differ (FitNets, Romero et al., 2015).",
}


@dataclass
class LossInputs:
    student_logits: torch.Tensor                    # (B, C)
    labels: torch.Tensor                            # (B,)
    mask: torch.Tensor                              # (B, T) 1 = real token
    temperature: float = 2.0
    teacher_logits: torch.Tensor | None = None      # (B, C)
    student_attention: torch.Tensor | None = None   # (B, P, H', T, T) mapped layers, compared heads
    teacher_attention: torch.Tensor | None = None   # (B, P, H', T, T)
    student_hidden: torch.Tensor | None = None      # (B, P, T, Dt) already projected to the teacher's width
    teacher_hidden: torch.Tensor | None = None      # (B, P, T, Dt)


def _need(x, name: str, loss: str):
    if x is None:
        raise ConfigError(f"loss {loss} needs {name}, which this session did not compute")
    return x


def ce(inp: LossInputs) -> torch.Tensor:
    return F.cross_entropy(inp.student_logits.float(), inp.labels)


def logit_kd(inp: LossInputs) -> torch.Tensor:
    t = inp.temperature
    teacher = _need(inp.teacher_logits, "teacher logits", "logit_kd").float()
    log_p_s = F.log_softmax(inp.student_logits.float() / t, dim=-1)
    p_t = F.softmax(teacher / t, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * (t * t)


def hard_kd(inp: LossInputs) -> torch.Tensor:
    teacher = _need(inp.teacher_logits, "teacher logits", "hard_kd")
    return F.cross_entropy(inp.student_logits.float(), teacher.argmax(-1))


def _attention_rows(name: str, inp: LossInputs, loss: str) -> torch.Tensor:
    p = _need(inp.teacher_attention, "teacher attention", loss)
    q = _need(inp.student_attention, "student attention", loss)
    values, query = metrics.row_metric(name, p, q, inp.mask)   # (B, P, H', T)
    return (values * query).sum() / query.sum().clamp_min(1.0)


def attention_mse(inp: LossInputs) -> torch.Tensor:
    return _attention_rows("mse", inp, "attention_mse")


def attention_kl(inp: LossInputs) -> torch.Tensor:
    return _attention_rows("kl", inp, "attention_kl")


def hidden_mse(inp: LossInputs) -> torch.Tensor:
    s = _need(inp.student_hidden, "student hidden states", "hidden_mse").float()
    t = _need(inp.teacher_hidden, "teacher hidden states", "hidden_mse").float()
    m = inp.mask.float()[:, None, :, None]                        # (B, 1, T, 1)
    return (((s - t) ** 2) * m).sum() / (m.sum() * s.shape[1] * s.shape[-1]).clamp_min(1.0)


LOSSES: dict[str, Callable[[LossInputs], torch.Tensor]] = {
    "ce": ce, "logit_kd": logit_kd, "hard_kd": hard_kd,
    "attention_mse": attention_mse, "attention_kl": attention_kl, "hidden_mse": hidden_mse,
}
assert tuple(LOSSES) == LOSS_NAMES


def get_loss(name: str) -> Callable[[LossInputs], torch.Tensor]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
    return LOSSES[name]


def combined_loss(weights: dict[str, float], inp: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the active losses, and each component's value (unweighted) for the record."""
    total = None
    parts = {}
    for name, w in weights.items():
        if w <= 0:
            continue
        value = get_loss(name)(inp)
        parts[name] = value.detach()
        total = value * w if total is None else total + value * w
    if total is None:
        raise ConfigError("no loss has a positive weight")
    return total, parts
