"""The optimizer of every model trained here (students, teachers): AdamW, fused, and on request with the word
embedding updated row by row.

* Fused: torch's single-kernel AdamW on the CPU and on CUDA, the same update as the per-tensor loop (on a 2-core
  CPU it updates the default student's 7.3 M parameters in about 8 ms, where the loop takes about 45 ms).
* Row-sparse word embeddings (`sparse_embedding=True`, the setting train.sparse_embedding): a model's input
  embedding table (30,522 rows for the default tokenizer) receives a sparse gradient, the rows of the tokens in
  the batch, and only those rows are updated ("lazy" Adam, as in torch's SparseAdam and TensorFlow's LazyAdam):
  the table's dense gradient, its zeroing, its norm and its update over every row are not computed. Rows of
  tokens absent from a batch keep their moments and weights until a batch uses them again, where dense AdamW
  keeps moving them on their old momentum and decays them. Faster, but not the same training: on the default
  data it cost the distilled student 1-3 points, so it is off unless asked for.

    opt = make_optimizer(model, [{"params": params}], lr=3e-4, weight_decay=0.01)
    loss.backward()
    clip_grad_norm_(params, 1.0)
    opt.step()
"""
from __future__ import annotations

import math

import torch
from torch import nn

SPARSE_MIN_ROWS = 4096     # embedding tables with at least this many rows get row-sparse gradients


def sparse_embeddings(model: nn.Module) -> list[nn.Embedding]:
    """The model's input embedding table when it is large enough to gain from row-sparse updates; else []."""
    get = getattr(model, "get_input_embeddings", None)
    try:
        emb = get() if callable(get) else None
    except (NotImplementedError, AttributeError):
        emb = None
    if isinstance(emb, nn.Embedding) and emb.num_embeddings >= SPARSE_MIN_ROWS and emb.max_norm is None:
        return [emb]
    return []


def fused_available(device: torch.device | str) -> bool:
    return torch.device(device).type in ("cpu", "cuda")


class RowSparseAdamW(torch.optim.AdamW):
    """AdamW that takes sparse (row) gradients too: a parameter whose gradient is sparse has only the rows named
    in it updated, with its moments of those rows; every other parameter takes torch's AdamW step (fused where
    `fused=True`). The state of a parameter has AdamW's keys either way, so its moments survive a dense step."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    self._sparse_step(p, group)
                    p.grad = None               # the dense step below skips it
        super().step()
        return loss

    def _sparse_step(self, p: torch.Tensor, group: dict) -> None:
        grad = p.grad.coalesce()
        rows, g = grad.indices()[0], grad.values()
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        step = float(state["step"])
        beta1, beta2 = group["betas"]
        lr, wd, eps = float(group["lr"]), group["weight_decay"], group["eps"]
        if rows.numel() == 0:
            return
        m = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(g, alpha=1 - beta1)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        denom = (v.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
        w = p.index_select(0, rows)
        if wd:
            w.mul_(1 - lr * wd)
        w.addcdiv_(m, denom, value=-lr / (1 - beta1 ** step))
        p.index_copy_(0, rows, w)


def make_optimizer(model: nn.Module | None, groups: list[dict], lr: float, weight_decay: float,
                   device: torch.device | str = "cpu", sparse_embedding: bool = False) -> torch.optim.Optimizer:
    """AdamW over `groups`, fused where torch has the kernel. With `sparse_embedding`, `model`'s large input
    embedding (if any, and if it is among the groups' parameters) is switched to sparse gradients and updated
    row by row."""
    if model is not None and sparse_embedding:
        names = {id(p) for g in groups for p in g["params"]}
        for emb in sparse_embeddings(model):
            if id(emb.weight) in names and emb.weight.requires_grad:
                emb.sparse = True
    fused = fused_available(device) and all(p.is_floating_point() for g in groups for p in g["params"])
    return RowSparseAdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused)


@torch.no_grad()
def clip_grad_norm_(params, max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` that also takes sparse gradients (coalesced in place; their norm is the
    norm of the dense gradient they stand for)."""
    params = [p for p in params if p.grad is not None]
    dense = [p for p in params if not p.grad.is_sparse]
    sparse = [p for p in params if p.grad.is_sparse]
    if not sparse:
        return torch.nn.utils.clip_grad_norm_(dense, max_norm)
    for p in sparse:
        p.grad = p.grad.coalesce()
    norms = [torch.linalg.vector_norm(p.grad._values()) for p in sparse]
    if dense:
        norms.append(torch.nn.utils.get_total_norm([p.grad for p in dense]))
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    if dense:
        torch.nn.utils.clip_grads_with_norm_(dense, max_norm, total)
    for p in sparse:
        p.grad._values().mul_(coef)
    return total


def warmup_cosine(total: int, warmup: float):
    """The learning-rate multiplier of the teachers trained here (images, translation, language models) at each step
    of `total`: a linear warm-up over max(1, warmup * total) steps, then cosine decay to 0."""
    warm = max(1, int(warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return factor
