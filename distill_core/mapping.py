"""Which teacher layer each student layer is compared with, and how head counts are reconciled.

Layer maps (0-based teacher layers, one per student layer):
    uniform   spread the student layers over the teacher's depth, ending on the last layer
              (6 -> 3 gives 1, 3, 5: every second layer, as in TinyBERT)
    last      the student's layers face the teacher's last layers (6 -> 3 gives 3, 4, 5)
    [a, b, c] explicit teacher layers, one per student layer
Head rules, used when teacher and student have Ht and Hs heads:
    direct    head h faces head h (needs Ht == Hs)
    group     teacher heads averaged in Hs consecutive groups of Ht / Hs (needs Hs to divide Ht)
    mean      both sides averaged over heads: one head-averaged map each
    auto      direct if Ht == Hs, group if Hs divides Ht, else mean
"""
from __future__ import annotations

import torch

from .errors import ConfigError


def layer_map(rule, teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer (0-based) for each student layer."""
    if isinstance(rule, str):
        if student_layers > teacher_layers:
            raise ConfigError(f"the student has {student_layers} layers but the teacher only {teacher_layers}: "
                              f"use at most {teacher_layers} student layers or an explicit layer_map")
        if rule == "uniform":
            step = teacher_layers / student_layers
            return [int(round(step * (i + 1))) - 1 for i in range(student_layers)]
        if rule == "last":
            return list(range(teacher_layers - student_layers, teacher_layers))
        raise ConfigError(f"unknown layer_map {rule!r}: use 'uniform', 'last' or a list of teacher layers")
    layers = list(rule)
    if len(layers) != student_layers:
        raise ConfigError(f"layer_map lists {len(layers)} teacher layers but the student has {student_layers} "
                          f"layers: give exactly one teacher layer per student layer")
    bad = [x for x in layers if not 0 <= x < teacher_layers]
    if bad:
        raise ConfigError(f"layer_map names teacher layer {bad[0]}, but the teacher's layers are 0..{teacher_layers - 1}")
    return layers


def resolve_head_rule(rule: str, teacher_heads: int, student_heads: int) -> str:
    if rule == "auto":
        if teacher_heads == student_heads:
            return "direct"
        return "group" if teacher_heads % student_heads == 0 else "mean"
    if rule == "direct" and teacher_heads != student_heads:
        raise ConfigError(f"head_rule 'direct' needs equal head counts (teacher {teacher_heads}, student "
                          f"{student_heads}); use 'group' or 'mean'")
    if rule == "group" and teacher_heads % student_heads != 0:
        raise ConfigError(f"head_rule 'group' needs the student's {student_heads} heads to divide the teacher's "
                          f"{teacher_heads}; use 'mean' or change the student's head count")
    return rule


def compared_heads(rule: str, student_heads: int) -> int:
    return 1 if rule == "mean" else student_heads


def adapt_teacher(maps: torch.Tensor, rule: str, student_heads: int) -> torch.Tensor:
    """Teacher maps to the compared heads: (..., Ht, T, T) -> (..., H', T, T)."""
    if rule == "direct":
        return maps
    if rule == "mean":
        return maps.mean(-3, keepdim=True)
    ht, t = maps.shape[-3], maps.shape[-1]
    return maps.reshape(*maps.shape[:-3], student_heads, ht // student_heads, t, t).mean(-3)


def adapt_student(maps: torch.Tensor, rule: str) -> torch.Tensor:
    """Student maps to the compared heads: (..., Hs, T, T) -> (..., H', T, T)."""
    return maps.mean(-3, keepdim=True) if rule == "mean" else maps
