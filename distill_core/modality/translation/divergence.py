"""Divergences between a teacher's and a student's attention of one kind, for maps that need not be square.

mapping.adapt_teacher and mapping.probe_metrics assume square (T, T) maps (self-attention); the cross-attention is
(target, source). These do the same with queries and keys apart: teacher heads reduced to the compared heads, maps of
several lengths zero-padded, padded keys given no probability and padded query rows left out of the averages.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...mapping import adapt_student
from ...metrics import EPS, METRICS, ROW_FUNCS


def adapt_teacher(maps: torch.Tensor, rule: str, student_heads: int) -> torch.Tensor:
    """Teacher maps (..., Ht, Q, K) to the compared heads (..., H', Q, K) under a resolved head rule."""
    if rule == "direct":
        return maps
    if rule == "mean":
        return maps.mean(-3, keepdim=True)
    ht, q, k = maps.shape[-3:]
    return maps.reshape(*maps.shape[:-3], student_heads, ht // student_heads, q, k).mean(-3)


def kind_metrics(p: torch.Tensor, q: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                 names=METRICS) -> dict[str, torch.Tensor]:
    """Average of each row metric over examples and real query rows: p, q (B, P, H, Q, K) teacher / student maps,
    query (B, Q) and key (B, K) masks (1 = real), or a key mask per row (B, Q, K) (causal attention: a row's own and
    earlier positions). Returns name -> (P, H)."""
    k = key.float()[:, None, None, None, :] if key.dim() == 2 else key.float()[:, None, None]   # (B, 1, 1, Q|1, K)
    rows = query.float()[:, None, None, :]                                    # (B, 1, 1, Q)
    p = p.float() * k
    q = q.float() * k
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    q = q / q.sum(-1, keepdim=True).clamp_min(1e-30)
    out = {}
    for name in names:
        values = ROW_FUNCS[name](p, q)                                        # (B, P, H, Q)
        if name == "mse":
            values = values / k.sum(-1).clamp_min(1.0)
        weight = rows.expand_as(values)
        out[name] = (values * weight).sum(dim=(0, -1)) / weight.sum(dim=(0, -1)).clamp_min(EPS)
    return out


def probe_kind_metrics(teacher_maps: Sequence[np.ndarray], student_maps: Sequence[np.ndarray],
                       pairs: Sequence[Sequence[int]], head_rule: str, student_heads: int,
                       causal: bool = False) -> dict[str, list]:
    """Metrics between mapped teacher and student layers of one kind on the probe pairs: name -> (P, H') nested
    lists; empty when no layers are mapped. teacher_maps[i] (Lt, Ht, q_i, k_i), student_maps[i] (Ls, Hs, q_i, k_i).
    causal: square maps of which each row is compared over its own and earlier positions only (the lower
    triangle), whatever weight the maps hold above it."""
    if not pairs or not len(student_maps):
        return {}
    t_layers, s_layers = [a for a, _ in pairs], [b for _, b in pairs]
    qs = [int(m.shape[-2]) for m in student_maps]
    ks = [int(m.shape[-1]) for m in student_maps]
    tq, tk = max(qs), max(ks)

    def pad(maps, layers) -> torch.Tensor:                                    # -> (B, P, H, Q, K)
        out = torch.zeros((len(maps), len(layers), maps[0].shape[1], tq, tk))
        for i, m in enumerate(maps):
            out[i, :, :, :m.shape[-2], :m.shape[-1]] = torch.from_numpy(np.asarray(m, dtype=np.float32)[layers])
        return out
    query = (torch.arange(tq)[None, :] < torch.tensor(qs)[:, None]).float()
    key = (torch.arange(tk)[None, :] < torch.tensor(ks)[:, None]).float()
    if causal:
        key = key[:, None, :] * torch.tril(torch.ones(tq, tk))                # (B, Q, K)
    teacher = adapt_teacher(pad(teacher_maps, t_layers), head_rule, student_heads)
    student = adapt_student(pad(student_maps, s_layers), head_rule)
    return {k: v.tolist() for k, v in kind_metrics(teacher, student, query, key).items()}
