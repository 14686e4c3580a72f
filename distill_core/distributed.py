"""Data parallelism: one session across several processes (one per GPU, or several on a CPU), as started by
`accelerate launch` or torchrun, which set RANK, WORLD_SIZE and LOCAL_RANK in each process's environment.

    accelerate launch --num_processes 4 -m distill_core run --config my.yaml

Every process builds the same session from the same seeds: the same data, teacher, initial weights and batches.
Each training batch's rows are split across the processes (`shard`); after a variant's backward pass its gradients
are averaged, each process's weighted by its share of the batch (`average_gradients`), so every process takes the
same optimizer step and the weights stay identical everywhere; the recorded loss values are the whole batch's
(`mean_values`). Evaluation, the probe set's attention and the final test run on the full splits in every process
(the weights being the same, so are the numbers). Only the main process writes the run: the others write a
throwaway copy (`worker_run`), deleted at the end.

In one process (no WORLD_SIZE, or 1) every function here returns at once and no process group is started.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import signal
import socket
import threading
import uuid

import torch
import torch.distributed as dist
from transformers import PreTrainedModel

from .errors import ConfigError, DistillError
from .store import Run, now_iso

log = logging.getLogger(__name__)

# The other processes wait for the main process's teacher fine-tune (hours for a large teacher); a process that dies
# ends the others through the launcher, so a long wait only ever means slow work.
TIMEOUT = datetime.timedelta(hours=24)
KEEP_WORKER_RUNS = "ADS_KEEP_WORKER_RUNS"   # "1": the other processes' throwaway runs are kept (to compare them)
BUCKET = 1 << 24                            # gradient values per all-reduce (64 MB of float32)


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                pass
    return default


def world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) of this process, from the launcher's environment (torchrun and
    `accelerate launch`; mpirun's for `accelerate launch --cpu --mpirun_hostfile`); (0, 1, 0) alone."""
    rank = _env_int(("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"), 0)
    size = _env_int(("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"), 1)
    local = _env_int(("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"), 0)
    return rank, max(1, size), local


def active() -> bool:
    """Whether this session runs across several processes."""
    return world()[1] > 1


def is_main() -> bool:
    """The process that writes the run and prints (rank 0); True alone."""
    return world()[0] == 0


def _accelerate_cpu() -> bool:
    """Whether `accelerate launch --cpu` started this process."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def _dist():
    return dist


def initialized() -> bool:
    return active() and _dist().is_available() and _dist().is_initialized()


def init(device: torch.device | None = None) -> torch.device:
    """Join the process group (once) and return this process's device: on CUDA its own GPU (cuda:LOCAL_RANK, NCCL),
    elsewhere the CPU (gloo). `device` is the session's device as picked for one process; alone, it is returned."""
    device = torch.device(device if device is not None else "cpu")
    if not active():
        return device
    rank, size, local = world()
    if _accelerate_cpu():
        device = torch.device("cpu")
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"process {rank} would use GPU {local}, but this machine has "
                              f"{torch.cuda.device_count()}: start at most one process per GPU (--num_processes)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"several processes train on CUDA GPUs or on the CPU, not on {device.type}: set "
                          f"train.device to cuda or cpu, or start one process")
    dist = _dist()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=size, timeout=TIMEOUT,
                                **({"device_id": device} if backend == "nccl" else {}))
    return device


def finish() -> None:
    """At the end of a session that finished in every process: wait for the others, then leave the group."""
    if initialized():
        dist = _dist()
        dist.barrier()
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where the collectives' own small tensors live: the current GPU under NCCL, else the CPU."""
    if _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if initialized():
        _dist().barrier()


def _any(flag: bool) -> bool:
    """Whether any process passed True (every process must call it)."""
    dist = _dist()
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@contextlib.contextmanager
def main_first():
    """Run the block on each machine's first process, then on the others: what the first one writes to the disk
    caches (the teacher's fine-tune, its outputs) the others read. A first process that fails or is stopped inside
    the block stops the others (Stop) instead of leaving them waiting."""
    if not initialized():
        yield
        return
    if world()[2] != 0:
        if _any(False):
            from .session.callbacks import Stop  # here: the session imports this module
            raise Stop()
        yield
        return
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            _any(True)
        raise
    _any(False)


@contextlib.contextmanager
def every_process_writes():
    """Inside the block transformers' save_pretrained writes in every process. Once torch.distributed is initialised
    it writes on rank 0 only, but each process here writes its own folders: the others' throwaway runs, and the teacher
    cache of each machine's first process."""
    model_class = PreTrainedModel if initialized() else None
    if model_class is None or not hasattr(model_class, "should_save_on_this_rank"):
        yield
        return
    own = model_class.__dict__.get("should_save_on_this_rank")
    model_class.should_save_on_this_rank = lambda self, is_main_process: is_main_process
    try:
        yield
    finally:
        if own is None:
            del model_class.should_save_on_this_rank
        else:
            model_class.should_save_on_this_rank = own


def shard(index) -> list[int]:
    """This process's rows of a batch (index[rank::world_size]: lengths stay balanced across processes, as the rows
    of a length-bucketed batch are sorted). A batch too small to give every process 2 rows (a last, short batch) is
    taken whole by every process; the weighted average of their identical gradients is its gradient. Alone: `index`."""
    if not active():
        return index
    rank, size, _ = world()
    rows = [int(i) for i in index]
    if len(rows) < 2 * size:
        return rows
    return rows[rank::size]


def _unique(params) -> list[torch.Tensor]:
    seen, out = set(), []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


@torch.no_grad()
def average_gradients(params, n_local: int, n_total: int | None = None) -> int:
    """Make every parameter's .grad the gradient of the whole batch's mean loss: the sum over processes of
    grad * n_local, divided by n_total (the batch's rows; summed over the processes when None). Returns n_total.

    A sparse (row) gradient, as a large word-embedding table gets (optim.py), stays sparse: it is made dense over the
    union of the rows any process used, summed, and kept as a sparse gradient of exactly those rows, so the lazy
    update touches the rows the whole batch used, as in one process. A parameter without a gradient here but with one
    elsewhere takes part with zeros; one without a gradient anywhere keeps None (its optimizer skips it)."""
    if not initialized():
        return n_local if n_total is None else n_total
    dist = _dist()
    params = _unique(params)
    dev = _comm_device()
    # which parameters have a dense or a sparse gradient somewhere, and the batch's rows
    flags = torch.zeros(1 + 2 * len(params), dtype=torch.float64)
    flags[0] = n_local
    for k, p in enumerate(params):
        if p.grad is not None:
            flags[1 + 2 * k + int(p.grad.is_sparse)] = 1
    flags = flags.to(dev)
    dist.all_reduce(flags)
    flags = flags.cpu()
    total = int(round(flags[0].item())) if n_total is None else int(n_total)
    share = n_local / max(1, total)
    dense, sparse = [], []
    for k, p in enumerate(params):
        if flags[2 + 2 * k] > 0:
            sparse.append(p)
        elif flags[1 + 2 * k] > 0:
            dense.append(p)
    _reduce_dense(dense, share)
    for p in sparse:
        _reduce_sparse(p, share)
    return total


def _reduce_dense(params: list[torch.Tensor], share: float) -> None:
    """Sum grad * share over the processes, in buckets of flattened gradients of one dtype and device."""
    dist = _dist()
    groups: dict = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    for group in groups.values():
        start = 0
        while start < len(group):
            bucket, size = [], 0
            while start < len(group) and (not bucket or size + group[start].numel() <= BUCKET):
                bucket.append(group[start])
                size += group[start].numel()
                start += 1
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in bucket])
            flat.mul_(share)
            dist.all_reduce(flat)
            offset = 0
            for p in bucket:
                g = flat[offset:offset + p.numel()].view_as(p)
                offset += p.numel()
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)


def _reduce_sparse(p: torch.Tensor, share: float) -> None:
    """One parameter's row gradient: the union of the rows any process used, then their values summed."""
    dist = _dist()
    rows_n = p.shape[0]
    g = p.grad
    if g is None:
        rows = torch.zeros(0, dtype=torch.long, device=p.device)
        values = torch.zeros((0, *p.shape[1:]), dtype=p.dtype, device=p.device)
    else:
        if not g.is_sparse:
            g = g.to_sparse(1)
        g = g.coalesce()
        rows, values = g.indices()[0], g.values()
    present = torch.zeros(rows_n, dtype=torch.float32, device=p.device)
    present[rows] = 1.0
    dist.all_reduce(present)
    union = present.nonzero().squeeze(1)                                   # sorted, unique
    slot = torch.full((rows_n,), -1, dtype=torch.long, device=p.device)
    slot[union] = torch.arange(union.numel(), device=p.device)
    summed = torch.zeros((union.numel(), *p.shape[1:]), dtype=values.dtype, device=p.device)
    summed[slot[rows]] = values * share
    dist.all_reduce(summed)
    p.grad = torch.sparse_coo_tensor(union.unsqueeze(0), summed, p.shape, is_coalesced=True,
                                     check_invariants=False)


def mean_values(values: dict[str, float], n_local: int, n_total: int) -> dict[str, float]:
    """The whole batch's value of each loss: the processes' values weighted by their rows (every process must pass
    the same keys). Alone: `values`."""
    if not initialized():
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) * n_local / max(1, n_total) for k in keys], dtype=torch.float64,
                     device=_comm_device())
    _dist().all_reduce(t)
    mean = dict(zip(keys, t.cpu().tolist()))
    return {k: mean[k] for k in values}


@torch.no_grad()
def average_state(variant, n_local: int, n_total: int) -> None:
    """What a variant's step learns from its rows besides the gradients, made the whole batch's on every process
    (weighted by rows): BatchNorm running statistics (a CNN student's), the running loss sizes of automatic
    magnitude weighting, and the running per-head losses of the attention focus."""
    if not initialized():
        return
    tensors = [t for m in variant.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               for t in (m.running_mean, m.running_var) if t is not None]
    weights = getattr(variant, "loss_weights", None)
    running = getattr(weights, "running", None) or {}
    keys = sorted(running)
    focus = getattr(variant, "focus", None)
    focus_running = getattr(focus, "running", None)
    if not tensors and not keys and focus_running is None:
        return
    parts = [t.detach().reshape(-1).double().cpu() for t in tensors]
    parts.append(torch.tensor([running[k] for k in keys], dtype=torch.float64))
    if focus_running is not None:
        parts.append(focus_running.reshape(-1).double().cpu())
    flat = torch.cat(parts).mul_(n_local / max(1, n_total)).to(_comm_device())
    _dist().all_reduce(flat)
    flat = flat.cpu()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()
    for k in keys:
        running[k] = float(flat[offset])
        offset += 1
    if focus_running is not None:
        focus.running = flat[offset:offset + focus_running.numel()].view_as(focus_running).to(focus_running.dtype)


def agree_stop(control) -> None:
    """Every process takes the main process's decision to stop (a cancel, the time budget), at the same step."""
    if not initialized():
        return
    box = [(control.should_stop, control.reason) if is_main() else None]
    _dist().broadcast_object_list(box, src=0)
    control.should_stop, control.reason = box[0]


def notices(batch_size: int, device: torch.device) -> list[str]:
    """What a run trained across processes says about it (none alone)."""
    if not active():
        return []
    size = world()[1]
    where = "GPUs" if device.type == "cuda" else "CPU processes"
    return [f"trained data-parallel on {size} {where}: each batch of {batch_size} examples (train.batch_size, the "
            f"whole batch) was split across them and their gradients averaged; evaluation ran on the full splits"]


@contextlib.contextmanager
def worker_run(store, config: dict):
    """The throwaway run a process other than the main one writes: a hidden folder .rank<k>-<id> in the run store
    (which no listing shows; beside the real runs, so `layer_map: suggested` reads the same finished runs), deleted
    at the end unless ADS_KEEP_WORKER_RUNS=1."""
    rank = world()[0]
    path = store.root / f".rank{rank}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    run = Run(path)
    try:
        run.write_json("config.json", config)
        run.write_json("status.json", {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
                                        "started": now_iso(), "ended": None, "error": None, "rank": rank})
        yield run
    finally:
        if os.environ.get(KEEP_WORKER_RUNS) != "1":
            shutil.rmtree(path, ignore_errors=True)


def raise_on_termination() -> None:
    """Under a launcher, SIGTERM (sent to every process when one of them fails) becomes an error, so the main
    process records its run as failed rather than vanishing with it 'running'."""
    if not active() or threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        raise DistillError("stopped by the launcher: another process of this session failed or was stopped (the "
                           "launcher's output names why)")
    signal.signal(signal.SIGTERM, stop)


def launch_warning() -> str | None:
    """`accelerate launch --cpu --num_processes N` without mpirun starts one process, not N: say so."""
    if active() or not _accelerate_cpu():
        return None
    if "MASTER_ADDR" not in os.environ:
        return None
    return ("accelerate launch --cpu started one process (it starts several CPU processes only through mpirun); for "
            "several processes on the CPU use `accelerate launch --multi_gpu --num_processes N ... --device cpu` or "
            "`torchrun --nproc_per_node N -m distill_core run ...`")
