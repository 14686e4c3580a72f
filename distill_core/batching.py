"""Tokenising once, dynamic padding, and length-bucketed batches."""
from __future__ import annotations

import numpy as np
import torch


def encode(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids per text (no padding) and how many texts were truncated to max_length."""
    if not texts:
        return [], 0
    texts = list(texts)
    ids = [list(x) for x in tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]
    long = [i for i, x in enumerate(ids) if len(x) > max_length]
    if long:        # only the long ones again, truncated the tokenizer's way (its special tokens kept)
        cut = tokenizer([texts[i] for i in long], add_special_tokens=True, truncation=True,
                        max_length=max_length)["input_ids"]
        for i, x in zip(long, cut):
            ids[i] = list(x)
    return ids, len(long)


def make_batches(lengths: list[int], batch_size: int, seed: int | None, buckets: bool = True) -> list[np.ndarray]:
    """Index batches. With a seed: shuffled; with buckets: similar lengths share a batch (less padding).

    Bucketing sorts by length inside chunks of 50 batches, then shuffles the batches, so every epoch
    still sees a different order.
    """
    n = len(lengths)
    if seed is None:
        order = np.arange(n)
    else:
        order = np.random.default_rng(seed).permutation(n)
    if buckets:
        lens = np.asarray(lengths)
        chunk = batch_size * 50
        order = np.concatenate([c[np.argsort(lens[c], kind="stable")]
                                for c in np.array_split(order, max(1, int(np.ceil(n / chunk))))]) if n else order
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if seed is not None and buckets:
        rng = np.random.default_rng(seed + 7919)
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(ids: list[list[int]], index, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, T) with T the longest sequence in the batch."""
    rows = [ids[i] for i in index]
    t = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for j, r in enumerate(rows):
        input_ids[j, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[j, :len(r)] = 1
    return input_ids, mask


def pad_square(maps: list[torch.Tensor], t: int) -> torch.Tensor:
    """Per-example (..., t_i, t_i) maps zero-padded to (B, ..., t, t)."""
    first = maps[0]
    out = torch.zeros((len(maps), *first.shape[:-2], t, t), dtype=first.dtype)
    for j, m in enumerate(maps):
        n = m.shape[-1]
        out[j, ..., :n, :n] = m
    return out


def pad_tokens(states: list[torch.Tensor], t: int) -> torch.Tensor:
    """Per-example (P, t_i, D) hidden states zero-padded to (B, P, t, D)."""
    first = states[0]
    out = torch.zeros((len(states), first.shape[0], t, first.shape[-1]), dtype=first.dtype)
    for j, s in enumerate(states):
        out[j, :, :s.shape[1]] = s
    return out
