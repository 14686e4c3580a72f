"""One process of test_distributed's two-process group (torch.multiprocessing spawns it).

It imports distill_core/distributed.py alone: the package's __init__ loads the whole engine and transformers, which
would make each spawned process take several times longer to start than the collectives it checks.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


def load_distributed():
    """distill_core.distributed; in a spawned process that has not imported the package, without its __init__."""
    if "distill_core" not in sys.modules:
        package = types.ModuleType("distill_core")
        package.__path__ = [str(Path(__file__).resolve().parent.parent / "distill_core")]
        sys.modules["distill_core"] = package
    from distill_core import distributed
    return distributed


TOKENS = torch.tensor([[1, 2, 3], [4, 5, 1], [7, 8, 9], [10, 2, 3], [11, 12, 13], [1, 14, 15]])
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
ROWS = ([0, 1, 2, 3], [4, 5])           # uneven shares: 4 and 2 of 6 rows


def build():
    torch.manual_seed(0)
    emb = nn.Embedding(5000, 4, sparse=True)           # a large table: row-sparse gradients (optim.py)
    head, extra, unused = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)
    return emb, head, extra, unused


def row_losses(modules, rows, with_extra: bool) -> torch.Tensor:
    emb, head, extra, _ = modules
    h = emb(TOKENS[rows]).mean(1)
    logits = head(h) + (extra(h) if with_extra else 0.0)
    return F.cross_entropy(logits, LABELS[rows], reduction="none")


def collectives(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed = load_distributed()
    assert distributed.init(torch.device("cpu")) == torch.device("cpu")
    modules = build()
    rows = ROWS[rank]
    loss = row_losses(modules, rows, with_extra=rank == 0).mean()   # `extra` has a gradient on rank 0 only
    loss.backward()
    params = [p for m in modules for p in m.parameters()]
    n_total = distributed.average_gradients(params, len(rows))
    values = distributed.mean_values({"total": loss.item(), "ce": 2.0 * (rank + 1)}, len(rows), n_total)
    # BatchNorm statistics, the running loss sizes and the attention focus: the whole batch's
    bn = nn.BatchNorm1d(2)
    bn.train()
    bn(torch.full((len(rows), 2), 10.0 * rank) + torch.arange(len(rows)).unsqueeze(1).float())   # means 1.5, 10.5
    variant = SimpleNamespace(model=bn, loss_weights=SimpleNamespace(running={"ce": float(rank + 1)}),
                              focus=SimpleNamespace(running=torch.full((2, 2), float(rank))))
    distributed.average_state(variant, len(rows), n_total)
    control = SimpleNamespace(should_stop=rank == 0, reason="cancelled" if rank == 0 else "")
    distributed.agree_stop(control)
    with distributed.main_first():           # the first process writes, the other reads after it
        marker = Path(out) / "first"
        if rank == 0:
            marker.write_text("written")
        seen = marker.read_text()
    emb, head, extra, unused = modules
    torch.save({"n_total": n_total, "values": values, "emb": emb.weight.grad, "head": head.weight.grad,
                "extra": extra.weight.grad, "unused": unused.weight.grad, "bn": bn.running_mean.clone(),
                "running": variant.loss_weights.running, "focus": variant.focus.running,
                "stop": (control.should_stop, control.reason), "seen": seen}, Path(out) / f"{rank}.pt")
    distributed.finish()
