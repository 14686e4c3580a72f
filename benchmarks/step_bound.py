"""A lower bound for one training step of a student, measured on this machine in the same run.

    bound = the step's matmul FLOPs / the machine's matmul rate  +  the optimizer's bytes / the memory bandwidth

* FLOPs: counted by `torch.utils.flop_counter.FlopCounterMode` around the whole step (forward and backward;
  matmuls, batched matmuls and SDPA attention).
* The machine's matmul rate: float32 GEMM of 2048 x 2048 by 2048 x 2048 with the threads the session uses (the
  best a matmul does here; the step's own matmuls are smaller and reach less).
* Optimizer bytes: AdamW reads the weight, its gradient and both moments and writes the weight and both moments,
  7 x 4 bytes for every element it updates: every element of the dense parameters and, for a row-sparse word
  embedding, the elements of the rows the batch uses.
* Memory bandwidth: a copy of 256 MB (bytes read plus bytes written, per second).

A step also does what neither term counts (elementwise work: layer norms, GELU, softmax, dropout, the losses,
the gradient norm; Python and dispatch), which is what the ratio step / bound shows.
"""
from __future__ import annotations

import time

import torch

ADAMW_BYTES_PER_ELEMENT = 7 * 4


def _timed(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matmul on the CPU (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / _timed(lambda: torch.mm(a, b), repeats)


def memory_bandwidth(mb: int = 256, repeats: int = 5) -> float:
    """Bytes/s of a large copy on the CPU, counting bytes read and written (best of `repeats`)."""
    x = torch.empty(mb * 1024 * 1024 // 4).uniform_()
    y = torch.empty_like(x)
    return 2 * x.numel() * 4 / _timed(lambda: y.copy_(x), repeats)


def step_flops(step) -> int:
    """Matmul FLOPs of calling `step()` once (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def update_elements(model: torch.nn.Module, rows_used: int | None) -> int:
    """Elements AdamW updates in one step: every trainable element, except that a row-sparse input embedding
    (distill_core.optim) counts only `rows_used` rows."""
    from distill_core.optim import sparse_embeddings
    sparse = {id(e.weight): e for e in sparse_embeddings(model) if e.sparse}
    n = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        e = sparse.get(id(p))
        n += p.numel() if e is None or rows_used is None else rows_used * e.embedding_dim
    return n


def bound_s(flops: int, update_elems: int, rate: float, bandwidth: float) -> dict:
    compute = flops / rate
    memory = update_elems * ADAMW_BYTES_PER_ELEMENT / bandwidth
    return {"flops": flops, "update_bytes": update_elems * ADAMW_BYTES_PER_ELEMENT, "compute_s": compute,
            "memory_s": memory, "bound_s": compute + memory}
