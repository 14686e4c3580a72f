"""Divergences between attention maps, row by row, with padding masked.

An attention map row is a probability distribution of one query token over the key tokens.
Every function takes teacher maps `p` and student maps `q` of the same shape `(..., T, T)` and an
optional key/query mask `(B, T)` (1 = real token) that broadcasts against the leading `B` dimension.
Padded query rows are left out of the average; padded key columns carry no probability.
"""
from __future__ import annotations

import numpy as np
import torch

from .vocab import JS_MAX, LOWER_IS_CLOSER, METRIC_LABELS, METRICS  # noqa: F401 - re-exported for callers

EPS = 1e-8


def _renorm(p: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    if key_mask is not None:
        p = p * key_mask
    return p / p.sum(-1, keepdim=True).clamp_min(1e-30)    # a row of tiny weights still sums to 1


def row_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row: (..., T, T) -> (..., T)."""
    return (p * (torch.log(p.clamp_min(EPS)) - torch.log(q.clamp_min(EPS)))).sum(-1)


def row_js(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per row, natural log, in [0, ln 2]: (..., T, T) -> (..., T)."""
    m = 0.5 * (p + q)
    return (0.5 * row_kl(p, m) + 0.5 * row_kl(q, m)).clamp(0.0, JS_MAX)


def row_mse(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Squared difference summed over the keys of each row: (..., T, T) -> (..., T).

    `row_metric` divides it by the row's number of real keys (mean over keys, as TinyBERT's MSE)."""
    return ((p - q) ** 2).sum(-1)


def row_cosine(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per row: (..., T, T) -> (..., T)."""
    return (p * q).sum(-1) / (p.norm(dim=-1) * q.norm(dim=-1)).clamp_min(EPS)


ROW_FUNCS = {"kl": row_kl, "js": row_js, "mse": row_mse, "cosine": row_cosine}


def _masks(mask: torch.Tensor | None, ndim: int):
    """(B, T) -> key mask (B, 1.., 1, T) and query mask (B, 1.., T) broadcasting over (B, ..., T, T)."""
    if mask is None:
        return None, None
    mask = mask.float()
    extra = ndim - 3  # dims between B and (T, T)
    key = mask.view(mask.shape[0], *([1] * extra), 1, mask.shape[1])
    query = mask.view(mask.shape[0], *([1] * extra), mask.shape[1])
    return key, query


def row_metric(name: str, p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None):
    """Per-row metric and the query mask: p, q (B, ..., T, T); mask (B, T) -> ((B, ..., T), (B, ..., T))."""
    if name not in ROW_FUNCS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    key, query = _masks(mask, p.dim())
    p, q = _renorm(p.float(), key), _renorm(q.float(), key)
    values = ROW_FUNCS[name](p, q)
    if name == "mse":                                          # mean over the real keys of each row
        n_keys = key.sum(-1) if key is not None else torch.tensor(float(p.shape[-1]))
        values = values / n_keys.clamp_min(1.0)
    if query is None:
        query = torch.ones_like(values)
    return values, query.expand_as(values)


def attention_metrics(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None,
                      names=METRICS) -> dict[str, torch.Tensor]:
    """Average of each metric over examples and real query rows.

    p, q: (B, P, H, T, T) teacher / student maps for P mapped layer pairs and H compared heads;
    mask: (B, T). Returns name -> (P, H).
    """
    out = {}
    for name in names:
        values, query = row_metric(name, p, q, mask)         # (B, P, H, T)
        total = (values * query).sum(dim=(0, -1))              # (P, H)
        count = query.sum(dim=(0, -1)).clamp_min(1.0)
        out[name] = total / count
    return out


def map_metric(name: str, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Metric between single-example maps without padding: p, q (..., T, T) -> (...,) (numpy, for the app)."""
    values, _ = row_metric(name, torch.tensor(np.asarray(p, dtype=np.float32))[None],     # copies: the app's arrays
                           torch.tensor(np.asarray(q, dtype=np.float32))[None])     # are shared and read-only
    return values[0].mean(-1).numpy()
