"""Accuracy and loss of a classifier on tokenised examples (latency: distill_core/latency.py)."""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .batching import collate, make_batches


def autocast_for(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; nothing elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.inference_mode()
def predict_logits(model, ids: list[list[int]], pad_id: int, device: torch.device,
                   batch_size: int = 64, mixed_precision: bool = True) -> torch.Tensor:
    """(N, C) float32 logits on the CPU, in the order of `ids`."""
    out = each_logits(model, ids, pad_id, device, batch_size, mixed_precision)
    return torch.stack(out) if out else torch.zeros(0)


@torch.inference_mode()
def each_logits(model, ids: list[list[int]], pad_id: int, device: torch.device, batch_size: int = 64,
                mixed_precision: bool = True, per_token: bool = False) -> list[torch.Tensor]:
    """Each input's float32 logits on the CPU, in the order of `ids` (length-bucketed batches): (C,) from a
    classifier, or with per_token (t_i, C) over its own t_i tokens from a token classifier."""
    model.eval()
    out: list = [None] * len(ids)
    for index in make_batches([len(x) for x in ids], batch_size, seed=None, buckets=True):
        input_ids, mask = collate(ids, index, pad_id)
        with autocast_for(device, mixed_precision):
            logits = model(input_ids=input_ids.to(device, non_blocking=True),
                           attention_mask=mask.to(device, non_blocking=True)).logits
        logits = logits.float().cpu()
        for j, i in enumerate(index):
            out[i] = logits[j, :len(ids[i])] if per_token else logits[j]
    return out


def accuracy_and_loss(logits: torch.Tensor, labels: list[int]) -> tuple[float, float]:
    y = torch.tensor(labels, dtype=torch.long)
    acc = (logits.argmax(-1) == y).float().mean().item()
    loss = F.cross_entropy(logits, y).item()
    return acc, loss


def evaluate(model, ids, labels, pad_id, device, batch_size=64, mixed_precision=True) -> tuple[float, float]:
    return accuracy_and_loss(predict_logits(model, ids, pad_id, device, batch_size, mixed_precision), labels)
