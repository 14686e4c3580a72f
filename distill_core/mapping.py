"""Which teacher layer each student layer is compared with, and how head counts are reconciled.

Layer maps (0-based teacher layers, one per student layer):
    uniform   spread the student layers over the teacher's depth, ending on the last layer
              (6 -> 3 gives 1, 3, 5: every second layer, as in TinyBERT)
    last      the student's layers face the teacher's last layers (6 -> 3 gives 3, 4, 5)
    suggested chosen from a finished run's probe maps (suggest_map below); resolved to a list of layers by
              analysis.resolve_suggested before a session starts, never here
    [a, b, c] explicit teacher layers, one per student layer
Head rules, used when teacher and student have Ht and Hs heads:
    direct    head h faces head h (needs Ht == Hs)
    group     teacher heads averaged in Hs consecutive groups of Ht / Hs (needs Hs to divide Ht)
    mean      both sides averaged over heads: one head-averaged map each
    auto      direct if Ht == Hs, group if Hs divides Ht, else mean

Suggesting a map: `layer_costs` measures how far each student layer's attention is from each teacher layer's on the
probe examples (mean Jensen-Shannon divergence, as the recorded divergences), and `suggest_map` picks one distinct
teacher layer per student layer with the least total divergence (an optimal assignment), then matches heads the
same way inside each pair.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import ConfigError
from .metrics import attention_metrics, row_metric


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
        if rule == "suggested":
            raise ConfigError("layer_map 'suggested' must be resolved from a finished run first "
                              "(analysis.resolve_suggested turns it into teacher layers); give the layers as a "
                              "list like 1,3,5 to map them directly")
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


def probe_metrics(teacher_maps: Sequence[np.ndarray], student_maps: Sequence[np.ndarray],
                  pairs: Sequence[Sequence[int]], head_rule: str, student_heads: int,
                  padded: bool = True) -> dict[str, list]:
    """Metrics between mapped teacher and student layers on the probe set, as a session records them each epoch:
    name -> (P, H') nested lists (P mapped pairs, H' compared heads under the resolved head rule); empty when no
    layers are mapped.

    teacher_maps[i] (Lt, Ht, t_i, t_i) and student_maps[i] (Ls, Hs, t_i, t_i) are probe example i without padding.
    padded=True (text): examples of different lengths are zero-padded to the longest and the padding is masked;
    padded=False (images): every example has the same (Q, K) maps and they are stacked as they are."""
    if not pairs:
        return {}
    t_layers, s_layers = [a for a, _ in pairs], [b for _, b in pairs]
    if not padded:
        teacher = torch.from_numpy(np.stack([m[t_layers] for m in teacher_maps]))
        student = torch.from_numpy(np.stack([m[s_layers] for m in student_maps]))
        teacher = adapt_teacher(teacher, head_rule, student_heads)                  # (B, P, H', Q, K)
        student = adapt_student(student, head_rule)
        return {k: v.tolist() for k, v in attention_metrics(teacher, student).items()}
    lengths = [int(m.shape[-1]) for m in student_maps]
    t = max(lengths)

    def pad(maps, layers):                                                           # -> (B, P, H, T, T)
        out = torch.zeros((len(maps), len(layers), maps[0].shape[1], t, t))
        for i, m in enumerate(maps):
            out[i, :, :, :m.shape[-1], :m.shape[-1]] = torch.from_numpy(m[layers])
        return out
    mask = (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).float()      # (B, T)
    teacher = adapt_teacher(pad(teacher_maps, t_layers), head_rule, student_heads)
    student = adapt_student(pad(student_maps, s_layers), head_rule)
    return {k: v.tolist() for k, v in attention_metrics(teacher, student, mask).items()}


# ---- suggesting a map from recorded attention ---------------------------------------------------------------------
def _as_tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _check_examples(teacher_maps: Sequence, student_maps: Sequence) -> None:
    if not len(teacher_maps) or len(teacher_maps) != len(student_maps):
        raise ValueError(f"need the same probe examples on both sides, got {len(teacher_maps)} teacher and "
                         f"{len(student_maps)} student maps")
    for i, (t, s) in enumerate(zip(teacher_maps, student_maps)):
        if np.shape(t)[-2:] != np.shape(s)[-2:]:
            raise ValueError(f"probe example {i} has {np.shape(t)[-1]} tokens on the teacher side but "
                             f"{np.shape(s)[-1]} on the student side")


def _pooled_js(pairs) -> np.ndarray:
    """Mean JS over compared heads and every query row of every example.

    pairs yields one (p, q) per example, broadcasting to (A, B, H', t, t) -> (A, B)."""
    total, rows = None, 0
    for p, q in pairs:
        shape = torch.broadcast_shapes(p.shape, q.shape)
        values, _ = row_metric("js", p.expand(shape), q.expand(shape))      # (A, B, H', t): every row is real
        total = values.sum(dim=(-2, -1)) if total is None else total + values.sum(dim=(-2, -1))
        rows += values.shape[-2] * values.shape[-1]
    return (total / rows).double().numpy()


def layer_costs(teacher_maps: list[np.ndarray], student_maps: list[np.ndarray], head_rule: str,
                student_heads: int) -> np.ndarray:
    """Mean Jensen-Shannon divergence between every student layer and every teacher layer: (Ls, Lt).

    teacher_maps[i] (Lt, Ht, t_i, t_i) and student_maps[i] (Ls, Hs, t_i, t_i) are one probe example, without
    padding (as a run stores them). Heads are reconciled by the (resolved) head rule, as in training; the mean is
    over compared heads and every query row of every example, as the recorded divergences.
    """
    _check_examples(teacher_maps, student_maps)
    teacher = [adapt_teacher(_as_tensor(m), head_rule, student_heads) for m in teacher_maps]   # (Lt, H', t, t)
    student = [adapt_student(_as_tensor(m), head_rule) for m in student_maps]                # (Ls, H', t, t)
    # one student layer at a time: a 12-layer teacher's 12 heads against 6 student layers at once would hold
    # several (6, 12, 12, T, T) tensors
    return np.concatenate([_pooled_js((p[None], q[s][None, None]) for p, q in zip(teacher, student))  # (1, Lt)
                           for s in range(student[0].shape[0])])


def head_costs(teacher_layer_maps: list[np.ndarray], student_layer_maps: list[np.ndarray]) -> np.ndarray:
    """Mean Jensen-Shannon divergence between each student head and each single teacher head of one mapped pair
    of layers: teacher_layer_maps[i] (Ht, t_i, t_i), student_layer_maps[i] (Hs, t_i, t_i) -> (Hs, Ht)."""
    _check_examples(teacher_layer_maps, student_layer_maps)
    return _pooled_js((_as_tensor(t)[None, :, None], _as_tensor(s)[:, None, None])   # -> (Hs, Ht, 1, t, t)
                      for t, s in zip(teacher_layer_maps, student_layer_maps))


def head_groups(costs: np.ndarray) -> list[list[int]]:
    """The teacher heads each student head is matched with, from a (Hs, Ht) cost matrix.

    Ht == Hs: one teacher head each; Hs divides Ht: Ht / Hs teacher heads each (every teacher head used once, the
    total divergence least); otherwise every student head faces all teacher heads (one group, as head rule mean).
    """
    from scipy.optimize import linear_sum_assignment  # deferred: only a suggested layer map needs scipy
    costs = np.asarray(costs, dtype=np.float64)
    hs, ht = costs.shape
    if ht % hs:
        return [list(range(ht)) for _ in range(hs)]
    k = ht // hs
    slots, heads = linear_sum_assignment(np.repeat(costs, k, axis=0))     # (Ht, Ht): k slots per student head
    groups: list[list[int]] = [[] for _ in range(hs)]
    for slot, head in zip(slots, heads):
        groups[slot // k].append(int(head))
    return [sorted(g) for g in groups]


def map_cost(costs: np.ndarray, layers: Sequence[int]) -> float:
    """Mean divergence of a layer map (teacher layer per student layer) read from a (Ls, Lt) cost matrix."""
    costs = np.asarray(costs, dtype=np.float64)
    return float(np.mean(costs[np.arange(len(layers)), list(layers)]))


def suggest_map(teacher_maps: list[np.ndarray], student_maps: list[np.ndarray], head_rule: str,
                student_heads: int) -> dict:
    """The teacher layer for each student layer whose attention is closest, all chosen together.

    teacher_maps[i] (Lt, Ht, t_i, t_i), student_maps[i] (Ls, Hs, t_i, t_i): the probe examples' maps. Layers are an
    optimal assignment (scipy's linear_sum_assignment) on the (Ls, Lt) costs of `layer_costs`: every student layer
    gets a distinct teacher layer and the summed divergence is the least possible. The order is as the assignment
    gives it (not forced to rise with depth), and among equally good maps the one it finds first is kept.
    Returns {"layers": [teacher layer per student layer], "cost": mean JS of that map, "uniform_cost": mean JS of
    the uniform map, "uniform": its layers, "costs": (Ls, Lt) nested list, "heads": per student layer, the teacher
    heads matched with each student head (`head_groups`), "head_rule": the resolved rule}.
    """
    from scipy.optimize import linear_sum_assignment
    _check_examples(teacher_maps, student_maps)
    n_teacher, t_heads = np.shape(teacher_maps[0])[:2]
    n_student, s_heads = np.shape(student_maps[0])[:2]
    if s_heads != student_heads:
        raise ValueError(f"the student maps have {s_heads} heads, not {student_heads}")
    uniform = layer_map("uniform", n_teacher, n_student)        # also refuses a student deeper than the teacher
    rule = resolve_head_rule(head_rule, t_heads, student_heads)
    costs = layer_costs(teacher_maps, student_maps, rule, student_heads)
    rows, cols = linear_sum_assignment(costs)                   # rows come back as 0..Ls-1
    layers = [int(t) for _, t in sorted(zip(rows, cols))]
    heads = [head_groups(head_costs([m[t] for m in teacher_maps], [m[s] for m in student_maps]))
             for s, t in enumerate(layers)]
    return {"layers": layers, "cost": map_cost(costs, layers), "uniform": uniform,
            "uniform_cost": map_cost(costs, uniform), "costs": costs.tolist(), "heads": heads, "head_rule": rule}


def check_same_head_rule(configured: str, name: str, heads: int, first_heads: int, student_heads: int,
                         head_rule: str) -> None:
    """A further teacher's maps must reduce to the student's heads the way the first teacher's do (`head_rule`)."""
    rule = resolve_head_rule(configured, heads, student_heads)
    if rule != head_rule:
        raise ConfigError(f"{name} has {heads} heads per layer and the first teacher {first_heads}: their "
                          f"maps reduce to the student's heads differently ({rule} and {head_rule}); set "
                          f"objectives.head_rule to mean to compare head-averaged maps of both")
