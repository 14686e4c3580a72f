#!/usr/bin/env python
"""How fast is a session, and where does its time go? One run, one machine, the same batches for every side.

    .venv/bin/python benchmarks/session_bench.py            # full: default data and shapes (~25 min on 2 cores)
    .venv/bin/python benchmarks/session_bench.py --quick    # smaller numbers (~3-4 min)
    .venv/bin/python benchmarks/session_bench.py --skip-session --json out.json

Only the engine's public functions are called; nothing in it is patched. Measures (ratios are taken within this
one run, so a busy machine moves them much less than absolute times):

1. step      distillation step (ce + logit_kd + attention_kl, eager attention + capture, cached teacher outputs)
             / plain student step on hard labels (SDPA): the `distilled` and `baseline` variants that
             `Session.prepare()` builds from one set of initial weights, each taking `Variant.step` on the same
             length-bucketed batches of the real default data (building the batch, and for the distilled one
             fetching the teacher's cached outputs, included), interleaved batch by batch. Target <= 1.3.
2. record    attention recording (probe maps + divergences) per epoch / training per epoch, from the
             "timing" the engine writes into metrics.jsonl. Target <= 5 %.
3. vs hand   our session (the distilled variant alone) / a hand-written PyTorch + transformers loop with the same
             models, data, losses and epochs that pads to max_length and recomputes the teacher every step.
             Target < 0.5 per epoch from epoch 2 on.
4. session   wall time of the default session (absolute). In an empty ADS_CACHE_DIR it runs three times: the
             teacher fine-tuned and its outputs computed (a new machine), the teacher cached with its outputs
             computed (as after new data or a new mapping), and both from the disk cache (the same teacher and
             data again); each with the time of its "teacher outputs" phase. --skip-uncached: once, usual cache.
             Targets: a new machine <= 180 s; the teacher and its outputs cached <= 60 s.
4+. alone    that last session / the same students trained alone on the same batches (hard labels, the engine's
             optimizer, no teacher, recording or evaluation). Target <= 1.5. Full mode.
5. charts    building the attention explorer's figures (app/figures/maps.py) plus fig.to_json(). Target < 0.5 s.
6. live view training speed with the New session page open / with it closed, the session started from the app in
             headless Chromium (benchmarks/live_view_bench.py; full mode, when Chromium and Playwright are
             installed; --skip-live-view leaves it out). Target >= 0.9.
7. strategies an adversarial step (PGD, 2 steps, ARD) / the plain distillation step, on the same batches: target
             <= 1 + PGD steps. And an epoch of a variant that also learns from generated data (the dataset's
             unused rows, half the training split's size) / the plain variant's epoch, divided by the ratio of
             their sizes: target <= 1.1 (generated data costs its size and nothing more; the teacher's outputs
             on it are computed once, in prepare). --skip-strategies leaves it out.

8. bound     each variant's median step (measure 1) / a lower bound measured in the same run: the step's matmul
             FLOPs at the machine's float32 matmul rate plus AdamW's bytes at its memory bandwidth
             (benchmarks/step_bound.py). Target <= 1.5.

9. tasks     tagging, translation and language models: each variant's step / the reference's on the same batches
             (their defaults; the translation and language-model teachers trained briefly, which the step does not
             depend on), target <= 1.3 for each task's logit-KD recipe; and whether a second prepare reads the
             teacher's outputs from the disk cache (tagging), or the teacher runs inside each step (translation,
             language models). --skip-tasks leaves it out.
10. pair     the classroom preset (examples/classroom.yaml) from the command line alone (target <= 60 s, teacher
             cached), then two of it at once from two command lines: each session's own speed / alone, target
             >= 0.45 or queued with a message (machine.py: the second waits for the first). Full mode; --skip-pair.

On CUDA, measure 1 is repeated on the GPU (bf16 autocast, pinned teacher outputs, as the engine does) and reported
in samples/s (1b), and the default session runs there against the same students trained alone: samples per second
of the session / of the students alone, target >= 50 %, with the peak GPU memory (1c). Runs are written to a temporary folder and deleted; the teacher fine-tune and its outputs on the
training split are cached as usual (`distill_core.cache.cache_root()`), except in measure 4's empty cache.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import functools
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):          # the engine, and this folder's step_bound (also when imported)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from distill_core import mapping  # noqa: E402
from distill_core.capture import AttentionCapture  # noqa: E402
from distill_core.config import SessionConfig  # noqa: E402
from distill_core.evaluate import autocast_for  # noqa: E402
from distill_core.models import pick_device, set_attention_backend  # noqa: E402
from distill_core.objectives import TEACHER_INPUTS, LossInputs, combined_loss  # noqa: E402
from distill_core.optim import clip_grad_norm_, make_optimizer  # noqa: E402
from distill_core.session import Session, SessionCallback, run_session  # noqa: E402
from distill_core.store import RunStore  # noqa: E402
from distill_core.cache import cache_root, outputs_dir  # noqa: E402

import step_bound  # noqa: E402

MODES = {
    #            train examples, warm-up steps, timed steps, epochs (sessions 3 and 4), chart builds
    "quick": dict(train_size=800, warmup=3, steps=20, epochs=2, chart_repeats=3),
    "full": dict(train_size=None, warmup=5, steps=40, epochs=None, chart_repeats=7),
}
TARGETS = {"step": 1.3, "record": 0.05, "vs_hand": 0.5, "charts": 0.5, "generated": 1.1,
           "cached_session": 60.0, "first_session": 180.0, "vs_alone": 1.5, "bound": 1.5, "gpu_vs_alone": 0.5,
           "pair": 0.45}
TASK_STEP_TARGETED = ("distilled", "word_kd", "forward_kl")    # each task's logit-KD recipe (the others do more work)
PGD_STEPS = 2


def say(*a) -> None:
    print(*a, flush=True)


def section(title: str) -> None:
    say(f"\n## {title}  [{load_avg()}]")


def load_avg() -> str:
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return ""


def median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import transformers
    info = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": cpu,
            "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with contextlib.suppress(OSError, AttributeError):
        info["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- phases of a session, from its progress events ----------------------------------------------------------
class PhaseClock(SessionCallback):
    """Seconds spent in each phase of a session ("load data", "prepare teacher", "teacher outputs", "train",
    "evaluate"), from its progress events alone.

    The interval between two events goes to the later event's phase when that event reports work done in it
    (done > 0), and to the phase before when it only marks a phase's start (done == 0). So "teacher outputs"
    runs from the previous phase's last event to its own last one: computing the teacher's outputs or loading
    them from the disk cache, plus loading a cached teacher (which sends no "prepare teacher" events) or saving
    a freshly fine-tuned one, and building the students. "epoch 0" holds the teacher's probe maps and validation
    accuracy and epoch 0's recording; the last epoch's recording falls in "train", saving the models in
    "evaluate"."""

    def __init__(self):
        self.phases: dict[str, float] = {}
        self.current: str | None = None
        self.last_t: float | None = None

    def start(self, phase: str = "starting") -> None:
        self.current, self.last_t = phase, time.perf_counter()

    def add(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last_t
        self.last_t = now

    def close(self, phase: str | None = None) -> None:
        """End the clock; the time since the last event goes to `phase` (default: the current one)."""
        self.add(phase or self.current)
        self.current = None

    def on_session_begin(self, state, control):
        self.start()

    def on_step(self, state, control):
        if self.last_t is None:
            self.start()
        self.add(state.phase if state.done > 0 else self.current)
        self.current = state.phase

    def on_session_end(self, state, control, summary):
        self.close()


# ---- shared set-up: Session.prepare() on the benchmark's config -----------------------------------------------
class Setup:
    """What `Session.prepare()` builds for the config (data, the teacher, its outputs on the training split, the
    baseline and distilled variants, the probe set), timed by phase. Measures 1, 2 (without sessions) and 5 use
    it; nothing here trains a whole session."""

    def __init__(self, cfg: SessionConfig, run):
        self.cfg = cfg
        self.clock = PhaseClock()
        self.session = Session(cfg, run, callbacks=[self.clock])
        self.clock.start()
        t0 = time.perf_counter()
        self.p = self.session.prepare()
        self.clock.close("probe set")       # the teacher's probe maps and validation accuracy, the optimizers
        self.clock.phases["probe set"] += self.clock.phases.pop("epoch 0", 0.0)   # prepare's part of epoch 0
        self.prepare_s = time.perf_counter() - t0
        self.teacher_outputs_cached = self.p.teacher_outputs_cached

    def describe(self) -> dict:
        p = self.p
        return {"prepare_s": self.prepare_s, "phases": {k: round(v, 3) for k, v in self.clock.phases.items()},
                "teacher_cached": p.teacher.cached, "teacher_outputs_cached": self.teacher_outputs_cached,
                "teacher_path": p.teacher.path, "train_examples": p.modality.size("train"),
                "steps_per_epoch": p.steps_per_epoch, "variants": [v.name for v in p.variants],
                "pairs": p.pairs, "head_rule": p.head_rule}


def variant(p, name: str):
    found = [v for v in p.variants if v.name == name]
    if not found:
        raise SystemExit(f"this benchmark needs the default variants (baseline and distilled); "
                         f"the session has {[v.name for v in p.variants]}")
    return found[0]


# ---- 1. distillation step / plain step ----------------------------------------------------------------------
def bench_steps(setup: Setup, warmup: int, steps: int) -> dict:
    """Median seconds of the distilled variant's step and of the baseline variant's step on the same batches."""
    session, p, tcfg = setup.session, setup.p, setup.cfg.train
    device = p.device
    distilled, plain = variant(p, "distilled"), variant(p, setup.cfg.reference or "baseline")
    initial = copy.deepcopy(distilled.model)        # the initial weights, for the breakdown
    # epoch 2's batches (the teacher's outputs are ready before epoch 1, so every step reads them)
    batches = p.modality.batches("train", tcfg.batch_size, seed=tcfg.seed * 1000 + 2, buckets=tcfg.length_buckets)
    batches = batches[:warmup + steps]
    if len(batches) < warmup + steps:
        say(f"  note: only {len(batches)} batches in an epoch; timing {len(batches) - warmup} steps")

    def timed(v, index):
        sync(device)
        t = time.perf_counter()
        batch = p.modality.batch("train", index, device)
        teacher = session.teacher_batch(p, batch) if v.needs & TEACHER_INPUTS else None
        v.step(batch, teacher, p.step)
        sync(device)
        return time.perf_counter() - t, batch.length

    td, tp, tokens = [], [], []
    for k, index in enumerate(batches):
        # alternate which side goes first, so drifting machine load hits both alike
        if k % 2 == 0:
            d, length = timed(distilled, index)
            pl, _ = timed(plain, index)
        else:
            pl, _ = timed(plain, index)
            d, length = timed(distilled, index)
        if k >= warmup:
            td.append(d)
            tp.append(pl)
            tokens.append(length)
    ratios = [a / b for a, b in zip(td, tp)]
    bs = tcfg.batch_size
    res = {"device": str(device), "steps": len(td), "warmup": warmup, "batch_size": bs,
           "padded_length_median": median(tokens), "padded_length_range": [min(tokens), max(tokens)],
           "distilled_step_s": median(td), "plain_step_s": median(tp),
           "step_s_by_variant": {distilled.name: median(td), plain.name: median(tp)},
           "ratio_of_medians": median(td) / median(tp), "median_of_ratios": median(ratios),
           "distilled_samples_per_s": bs / median(td), "plain_samples_per_s": bs / median(tp),
           "losses": {v.name: dict(setup.session.config.variant(v.name).losses) for v in (distilled, plain)},
           "head_rule": p.head_rule, "pairs": p.pairs}
    res["breakdown"] = step_breakdown(setup, initial, dict(setup.session.config.variant(distilled.name).losses),
                                      batches[warmup:])
    return res


def step_breakdown(setup: Setup, model, weights: dict, batches) -> dict:
    """Where the extra time of a distillation step goes: the same step built up piece by piece from the
    engine's public pieces (not its code path; for reading the ratio above). Each variant runs on the same
    batches; medians in seconds."""
    session, p = setup.session, setup.p
    device, ctx = p.device, p.step
    model.to(device).train()
    opt = make_optimizer(model, [{"params": list(model.parameters())}], 1e-5, 0.0, device)     # the engine's

    def step(kind, index):
        sync(device)
        t = time.perf_counter()
        batch = p.modality.batch("train", index, device)
        eager = kind in ("eager", "eager+capture", "eager+capture+losses")
        capture = "capture" in kind
        set_attention_backend(model, eager=eager)
        teacher = session.teacher_batch(p, batch) if kind == "eager+capture+losses" else None
        s_att = None
        cap = AttentionCapture(model, ctx.student_layers) if capture else contextlib.nullcontext()
        with cap, autocast_for(device, ctx.mixed_precision):
            out = model(**batch.inputs)
            if capture:
                s_att = mapping.adapt_student(cap.pop_stacked().float(), ctx.head_rule)
            if teacher is not None:
                loss, _ = combined_loss(weights, LossInputs(out.logits, batch.labels, batch.mask, session.config.objectives.temperature,
                                                            teacher.logits, s_att, teacher.attention))
            else:
                loss = F.cross_entropy(out.logits.float(), batch.labels)
                if s_att is not None:          # keep the captured maps in the graph, as the attention loss does
                    loss = loss + 0.0 * s_att.sum()
        loss.backward()
        clip_grad_norm_(model.parameters(), ctx.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        sync(device)
        return time.perf_counter() - t

    kinds = ["sdpa", "eager", "eager+capture", "eager+capture+losses"]
    times = {k: [] for k in kinds}
    for n, index in enumerate(batches):
        for k in (kinds if n % 2 == 0 else kinds[::-1]):
            times[k].append(step(k, index))
    base = median(times["sdpa"])
    return {k: {"step_s": median(times[k]), "vs_sdpa": median(times[k]) / base} for k in kinds}


# ---- 8. the training step against its bound ------------------------------------------------------------------
def bench_bound(setup: Setup, steps: dict) -> dict:
    """Each timed step (measure 1's medians) against its lower bound on this machine (benchmarks/step_bound.py):
    FLOPs and the optimizer's bytes of one step on the timed batch of median padded length, the machine's matmul
    rate and memory bandwidth measured now, with the threads the session uses."""
    session, p, tcfg = setup.session, setup.p, setup.cfg.train
    batches = p.modality.batches("train", tcfg.batch_size, seed=tcfg.seed * 1000 + 2, buckets=tcfg.length_buckets)
    target_len = steps["padded_length_median"]
    index = min(batches, key=lambda ix: abs(p.modality.batch("train", ix, p.device).length - target_len))
    batch = p.modality.batch("train", index, p.device)
    rate, bandwidth = step_bound.matmul_rate(), step_bound.memory_bandwidth()
    rows = int(torch.unique(batch.inputs["input_ids"]).numel()) if "input_ids" in batch.inputs else None
    out = {"matmul_gflops": rate / 1e9, "bandwidth_gb_s": bandwidth / 1e9, "batch_length": batch.length,
           "rows_used": rows, "threads": torch.get_num_threads()}
    for v in (variant(p, "distilled"), variant(p, setup.cfg.reference or "baseline")):
        teacher = session.teacher_batch(p, batch) if v.needs & TEACHER_INPUTS else None
        flops = step_bound.step_flops(lambda: v.step(batch, teacher, p.step))
        b = step_bound.bound_s(flops, step_bound.update_elements(v.model, rows), rate, bandwidth)
        measured = steps["step_s_by_variant"][v.name]
        out[v.name] = {**b, "step_s": measured, "ratio": measured / b["bound_s"]}
    return out


def plain_step(p, model, params, opt, batch) -> None:
    """One optimisation step on hard labels alone (cross-entropy), clipped like the engine's."""
    model.train()
    with autocast_for(p.device, p.step.mixed_precision):
        logits = model(**batch.inputs).logits
    F.cross_entropy(logits.float(), batch.labels).backward()
    clip_grad_norm_(params, p.step.max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)


def interleaved(sides: dict, batches, warmup: int, device=None) -> dict[str, float]:
    """{name: median seconds} of each side's `step(batch)` over the same batches, the order rotating batch by batch
    so that drifting machine load hits every side alike; the first `warmup` batches are not timed."""
    names, times = list(sides), {n: [] for n in sides}
    for k, batch in enumerate(batches):
        for n in names[k % len(names):] + names[:k % len(names)]:
            if device is not None:
                sync(device)
            t = time.perf_counter()
            sides[n](batch)
            if device is not None:
                sync(device)
            if k >= warmup:
                times[n].append(time.perf_counter() - t)
    return {n: median(v) for n, v in times.items()}


# ---- 8'. what the optimizer's changes bought ------------------------------------------------------------------
OPTIMIZERS = {   # name -> (torch AdamW keyword arguments, or None for the engine's make_optimizer; its sparse_embedding)
    "AdamW per tensor (before)": ({"foreach": False}, False),
    "engine: fused AdamW": (None, False),
    "fused + row-sparse embedding (train.sparse_embedding)": (None, True),
}


def bench_optimizers(setup: Setup, batches, warmup: int) -> dict:
    """The plain step (hard labels, SDPA) of copies of the baseline's initial weights, one per optimizer in
    OPTIMIZERS, interleaved batch by batch (the order rotating) on the same batches: medians in seconds."""
    p, tr = setup.p, setup.cfg.train
    plain = variant(p, setup.cfg.reference or "baseline")
    sides = {}
    for name, (kwargs, sparse) in OPTIMIZERS.items():
        model = copy.deepcopy(plain.model)
        model.load_state_dict(plain.last_state)
        set_attention_backend(model, eager=False)
        params = list(model.parameters())
        model.get_input_embeddings().sparse = False
        if kwargs is None:
            opt = make_optimizer(model, [{"params": params}], tr.lr, tr.weight_decay, p.device, sparse)
        else:
            opt = torch.optim.AdamW(params, lr=tr.lr, weight_decay=tr.weight_decay, **kwargs)
        sides[name] = (model, params, opt)

    steps = {name: (lambda index, side=side: plain_step(p, *side, p.modality.batch("train", index, p.device)))
             for name, side in sides.items()}
    med = interleaved(steps, batches, warmup, p.device)
    first = med[next(iter(med))]
    return {n: {"step_s": s, "vs_first": s / first} for n, s in med.items()}


# ---- 4+. the same students trained alone ---------------------------------------------------------------------
def students_alone(setup: Setup, epochs: int) -> dict:
    """Wall time of training the session's students alone: each prepared variant's initial weights, hard labels
    only (SDPA attention), the engine's optimizer and schedule, the session's batches and order, and nothing
    else: no teacher, no recording, no evaluation, no saving. What a session's wall time is compared with."""
    from distill_core.session.variant import lr_lambda
    p, cfg = setup.p, setup.cfg
    tr = cfg.train
    students = []
    for v in p.variants:
        model = copy.deepcopy(v.model)
        model.load_state_dict(v.last_state)              # the weights every variant starts from (epoch 0)
        set_attention_backend(model, eager=False)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = make_optimizer(model, [{"params": params}], tr.lr, tr.weight_decay, p.device, tr.sparse_embedding)
        total = p.steps_per_epoch * epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tr.schedule, total, tr.warmup_ratio))
        students.append((model, params, opt, sched))
    sync(p.device)
    t0 = time.perf_counter()
    steps = 0
    for epoch in range(1, epochs + 1):
        for index in p.modality.batches("train", tr.batch_size, seed=tr.seed * 1000 + epoch, buckets=tr.length_buckets):
            batch = p.modality.batch("train", index, p.device)
            for model, params, opt, sched in students:
                plain_step(p, model, params, opt, batch)
                sched.step()
                steps += 1
    sync(p.device)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "students": len(students), "epochs": epochs, "steps": steps,
            "samples_per_s": steps * tr.batch_size / wall}


# ---- sessions (2, 3, 4) -------------------------------------------------------------------------------------
def timed_session(cfg: SessionConfig, root: Path) -> dict:
    store = RunStore(root)
    clock = PhaseClock()
    t0 = time.perf_counter()
    run_id = run_session(cfg, store, callbacks=[clock])
    wall = time.perf_counter() - t0
    run = store.open(run_id)
    summary = run.summary() or {}
    metrics = run.metrics()
    return {"wall_s": wall, "summary_wall_s": summary.get("wall_s"), "summary_train_s": summary.get("train_s"),
            "status": summary.get("status"), "teacher_path": summary.get("teacher_path"),
            "teacher_cached": summary.get("teacher_cached"),
            "teacher_outputs_cached": summary.get("teacher_outputs_cached"),
            "accuracy": summary.get("accuracy"), "phases": {k: round(v, 2) for k, v in clock.phases.items()},
            "prepare_teacher_s": clock.phases.get("prepare teacher"),
            "teacher_outputs_s": clock.phases.get("teacher outputs"),
            "metrics": metrics, "epochs": cfg.train.epochs, "students": sorted({m["student"] for m in metrics})}


def cache_case(d: dict) -> str:
    """What a session found in the cache, from its summary."""
    teacher = ("teacher fine-tuned" if "prepare teacher" in d["phases"] else
               "teacher cached" if d["teacher_cached"] else "teacher loaded")
    outputs = "outputs from the disk cache" if d["teacher_outputs_cached"] else "outputs computed"
    return f"{teacher}, {outputs}"


@contextlib.contextmanager
def cache_dir(path: Path):
    """Point ADS_CACHE_DIR (read by `cache_root()` at every use) at `path` inside the block."""
    old = os.environ.get("ADS_CACHE_DIR")
    os.environ["ADS_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ADS_CACHE_DIR", None)
        else:
            os.environ["ADS_CACHE_DIR"] = old


def cache_sessions(cfg: SessionConfig, root: Path, fresh: Path | None) -> list[dict]:
    """Measure 4's sessions. With `fresh` (an empty cache folder): three sessions, the first fine-tuning the
    teacher and computing its outputs (a new machine), the second with the teacher cached and its outputs
    computed (its outputs dropped from the cache, as after new data or a new mapping), the third with both
    from the cache (the same teacher and data again). Without: one session with the usual cache."""
    if fresh is None:
        return [timed_session(cfg, root)]
    out = []
    with cache_dir(fresh):
        for k in range(3):
            if k == 1:
                shutil.rmtree(outputs_dir(), ignore_errors=True)
            out.append(timed_session(cfg, root))
    return out


def session_for_json(d: dict) -> dict:
    """A timed session without its bulky per-epoch attention numbers."""
    out = {k: v for k, v in d.items() if k != "metrics"}
    out["epochs_timing"] = [{k: m.get(k) for k in ("epoch", "student", "time_s", "val_accuracy", "timing")}
                            for m in d.get("metrics", [])]
    return out


def print_session(d: dict) -> None:
    say(f"  wall {fmt_s(d['wall_s'])} ({d['status']}; teacher fine-tune "
        f"{'cached' if d['teacher_cached'] else 'NOT cached: fine-tuned in this session'}; teacher outputs "
        f"{'from the disk cache' if d['teacher_outputs_cached'] else 'computed'}, phase "
        f"{fmt_s(d['teacher_outputs_s'])}; training {fmt_s(d['summary_train_s'])})")
    say("  phases: " + ", ".join(f"{k} {fmt_s(v)}" for k, v in d["phases"].items()))


def epoch_times(metrics: list[dict]) -> dict[int, float]:
    """Wall seconds of each epoch (its training, evaluation and recording), from the records' time stamps."""
    last = {}
    for m in metrics:
        last[m["epoch"]] = max(last.get(m["epoch"], 0.0), m["time_s"])
    return {e: last[e] - last[e - 1] for e in sorted(last) if e - 1 in last}


def recording_ratios(metrics: list[dict]) -> dict:
    """record_s / train_s and eval_s / train_s per student and epoch, from the engine's timing records."""
    out = {}
    for m in metrics:
        tm = m.get("timing")
        if not tm:
            continue
        d = out.setdefault(m["student"], {"epochs": [], "train_s": [], "eval_s": [], "record_s": []})
        if m["epoch"] == 0:
            d["epoch0_record_s"], d["epoch0_eval_s"] = tm["record_s"], tm["eval_s"]
            continue
        d["epochs"].append(m["epoch"])
        for k in ("train_s", "eval_s", "record_s"):
            d[k].append(tm[k])
    for d in out.values():
        tr = sum(d["train_s"]) or float("nan")
        d["record_over_train"] = [r / t for r, t in zip(d["record_s"], d["train_s"])]
        d["eval_over_train"] = [r / t for r, t in zip(d["eval_s"], d["train_s"])]
        d["record_over_train_total"] = sum(d["record_s"]) / tr
        d["record_over_train_total_with_epoch0"] = (sum(d["record_s"]) + d.get("epoch0_record_s", 0.0)) / tr
        d["eval_over_train_total"] = sum(d["eval_s"]) / tr
    return out


def recording_by_functions(setup: Setup, steps: dict, repeats: int = 3) -> dict:
    """Without a whole session: `Session.record_epoch` a few times on the prepared variants, its own timing
    (eval_s, record_s) against an epoch of each variant's measured steps. Per variant."""
    session, p = setup.session, setup.p
    seen = {v.name: {"record_s": [], "eval_s": []} for v in p.variants}
    for epoch in range(1, repeats + 1):
        for rec in session.record_epoch(p, epoch):
            for k in ("record_s", "eval_s"):
                seen[rec["student"]][k].append(rec["timing"][k])
    out = {}
    for name, t in seen.items():
        train_epoch = steps["step_s_by_variant"][name] * p.steps_per_epoch
        rec, ev = median(t["record_s"]), median(t["eval_s"])
        out[name] = {"record_s": rec, "eval_s": ev, "train_epoch_s_estimate": train_epoch,
                     "steps_per_epoch": p.steps_per_epoch, "repeats": repeats,
                     "record_over_train": rec / train_epoch, "eval_over_train": ev / train_epoch}
    return out


# ---- 3. the hand-written loop -------------------------------------------------------------------------------
def hand_loop(cfg: SessionConfig, splits, teacher_path: str, epochs: int) -> dict:
    """What a user would write without the studio: pad to max_length, recompute the teacher every step."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup
    times = {"epochs": {}, "eval": {}}
    t_start = time.perf_counter()
    obj, tr, sc = cfg.objectives, cfg.train, cfg.student
    temp = obj.temperature
    w = cfg.variant("distilled").losses
    tok = AutoTokenizer.from_pretrained(teacher_path)
    ml = cfg.data.max_length

    def enc(texts):
        e = tok(list(texts), padding="max_length", truncation=True, max_length=ml, return_tensors="pt")
        return e["input_ids"], e["attention_mask"]
    x_tr, m_tr = enc(splits.train_texts)
    x_va, m_va = enc(splits.val_texts)
    x_te, m_te = enc(splits.test_texts)
    y_tr = torch.tensor(splits.train_labels)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_path, attn_implementation="eager").eval()
    t_layers, t_heads = teacher.config.num_hidden_layers, teacher.config.num_attention_heads
    # the same student as the session's: teacher config with the student's shape, same seed, eager attention
    torch.manual_seed(tr.seed)
    conf = copy.deepcopy(teacher.config)
    conf.num_hidden_layers, conf.num_attention_heads, conf.hidden_size = sc.layers, sc.heads, sc.hidden
    conf.intermediate_size = sc.intermediate
    conf.hidden_dropout_prob = conf.attention_probs_dropout_prob = sc.dropout
    student = AutoModelForSequenceClassification.from_config(conf, attn_implementation="eager")
    step_t = t_layers / sc.layers
    layer_pairs = [(s, int(round(step_t * (s + 1))) - 1) for s in range(sc.layers)]    # 6 -> 3: 1, 3, 5
    group = t_heads // sc.heads
    n = len(x_tr)
    total = math.ceil(n / tr.batch_size) * epochs
    opt = torch.optim.AdamW(student.parameters(), lr=tr.lr, weight_decay=tr.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(tr.warmup_ratio * total), total)

    def accuracy(x, m, y):
        student.eval()
        right = 0
        with torch.no_grad():
            for b in range(0, len(x), 64):
                right += (student(input_ids=x[b:b + 64], attention_mask=m[b:b + 64]).logits.argmax(-1)
                          == torch.tensor(y[b:b + 64])).sum().item()
        return right / len(x)
    times["setup_s"] = time.perf_counter() - t_start
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        student.train()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(tr.seed * 1000 + epoch))
        for b in range(0, n, tr.batch_size):
            idx = perm[b:b + tr.batch_size]
            ids, mask, labels = x_tr[idx], m_tr[idx], y_tr[idx]
            with torch.no_grad():
                t_out = teacher(input_ids=ids, attention_mask=mask, output_attentions=True)
            s_out = student(input_ids=ids, attention_mask=mask, output_attentions=True)
            loss = w.get("ce", 0) * F.cross_entropy(s_out.logits, labels)
            loss = loss + w.get("logit_kd", 0) * F.kl_div(
                F.log_softmax(s_out.logits / temp, -1), F.softmax(t_out.logits / temp, -1),
                reduction="batchmean") * temp * temp
            if w.get("attention_kl", 0):
                q_mask = mask.float()[:, None, :]                               # (B, 1, T) real query rows
                att = 0.0
                for s, t in layer_pairs:
                    p = t_out.attentions[t]
                    p = p.view(p.shape[0], sc.heads, group, *p.shape[-2:]).mean(2)   # group the teacher's heads
                    q = s_out.attentions[s]
                    kl = (p * (p.clamp_min(1e-8).log() - q.clamp_min(1e-8).log())).sum(-1)   # (B, H, T)
                    att = att + (kl * q_mask).sum() / (q_mask.sum() * sc.heads)
                loss = loss + w["attention_kl"] * att / len(layer_pairs)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        t1 = time.perf_counter()
        acc = accuracy(x_va, m_va, splits.val_labels)
        t2 = time.perf_counter()
        times["epochs"][epoch] = t2 - t0
        times["eval"][epoch] = t2 - t1
        times.setdefault("val_accuracy", {})[epoch] = acc
    t0 = time.perf_counter()
    times["test_accuracy"] = accuracy(x_te, m_te, splits.test_labels)
    times["test_s"] = time.perf_counter() - t0
    times["wall_s"] = time.perf_counter() - t_start
    return times


# ---- 5. charts ----------------------------------------------------------------------------------------------
def bench_charts(setup: Setup | None, repeats: int) -> dict:
    from app.figures import maps as fig_maps
    rng = np.random.default_rng(0)
    out = {}
    for t in (32, 64):
        tokens = None
        if setup is not None:
            # a real text, cut to t tokens: the teacher's maps of all 6 layers x 12 heads
            p = setup.p
            tokenizer, teacher = p.modality.tokenizer, p.teacher_model
            text = max(p.modality.splits.val_texts, key=len)
            ids = tokenizer(text, truncation=True, max_length=t)["input_ids"]
            while len(ids) < t:
                ids = ids[:-1] + tokenizer(text, add_special_tokens=False)["input_ids"] + ids[-1:]
                ids = ids[:t - 1] + [ids[-1]]
            set_attention_backend(teacher, eager=True)
            teacher.eval()
            with torch.inference_mode(), AttentionCapture(teacher) as cap:
                teacher(input_ids=torch.tensor([ids], device=p.device))
                t_maps = cap.pop_stacked()[0].float().cpu().numpy()        # (6, 12, T, T)
            tokens = tokenizer.convert_ids_to_tokens(ids)
        else:
            z = rng.normal(size=(6, 12, t, t)) * 3
            t_maps = (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)
            tokens = [f"tok{i % 17}" for i in range(t)]
        z = rng.normal(size=(3, 4, t, t)) * 3
        s_maps = (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)
        tl, sl = 5, 2

        def explorer_view():
            """What app/views/explorer.py draws for one choice: two triptychs and the two head grids."""
            tm, sm = t_maps[tl], s_maps[sl]
            zmax = float(max(tm.max(), sm.max()))
            figs = [fig_maps.heatmap_triptych(tm[:3].mean(0), sm[0], tokens, titles=("teacher", "student", "diff")),
                    fig_maps.head_grid(tm, tokens, "teacher layer", cols=6, zmax=zmax, highlight=[0, 1, 2]),
                    fig_maps.head_grid(sm, tokens, "student layer", cols=6, zmax=zmax, highlight=[0]),
                    fig_maps.heatmap_triptych(tm.mean(0), sm.mean(0), tokens, titles=("teacher", "student", "diff"))]
            return sum(len(f.to_json()) for f in figs)

        def full_grid():
            """All 6 teacher layers x 12 heads in one grid, plus the triptych."""
            figs = [fig_maps.head_grid(t_maps, tokens, "teacher, all layers"),
                    fig_maps.heatmap_triptych(t_maps[tl].mean(0), s_maps[sl].mean(0), tokens)]
            return sum(len(f.to_json()) for f in figs)

        for name, fn in (("explorer_view", explorer_view), ("grid_6x12_plus_triptych", full_grid)):
            fn()    # first build imports and warms plotly's validators
            ts, size = [], 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                size = fn()
                ts.append(time.perf_counter() - t0)
            out[f"{name}_T{t}"] = {"median_s": median(ts), "min_s": min(ts), "max_s": max(ts),
                                   "json_bytes": size, "builds": repeats}
    return out


# ---- report -------------------------------------------------------------------------------------------------
def fmt_s(x) -> str:
    return "-" if x is None or x != x else (f"{x * 1000:.0f} ms" if x < 1 else f"{x:.1f} s")


def met(value, target, below=True, strict=False) -> str:
    if value is None or value != value:
        return "n/a"
    ok = (value < target if strict else value <= target) if below else value >= target
    return "yes" if ok else "NO"


# ---- 7. what the strategies cost -------------------------------------------------------------------------------
def bench_strategies(base: SessionConfig, root: Path, warmup: int, steps: int) -> dict:
    """Adversarial step / plain distillation step on the same batches, and a generated-data epoch / plain epoch
    over the size ratio, from the variants `Session.prepare()` builds (the generated one's batches spread over
    the epoch as the session spreads them)."""
    kd = {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1}
    cfg = SessionConfig.from_dict({**base.to_dict(), "name": "strategies", "variants": [
        {"name": "distilled", "losses": kd},
        {"name": "adversarial", "losses": kd, "adversarial": {"method": "pgd", "epsilon": 0.05, "steps": PGD_STEPS}},
        {"name": "generated", "losses": kd, "generated": True}],
        "transfer": {"source": "unused", "max_texts": max(1, base.data.train_size // 2)}})
    setup = Setup(cfg, RunStore(root / "strategies").create(cfg.to_dict()))
    session, p, tcfg = setup.session, setup.p, cfg.train
    plain, adv, gen = (variant(p, n) for n in ("distilled", "adversarial", "generated"))
    batches = p.modality.batches("train", tcfg.batch_size, seed=tcfg.seed * 1000 + 2, buckets=tcfg.length_buckets)

    def timed(v, split, index):
        sync(p.device)
        t = time.perf_counter()
        if split == "generated":
            session.generated_step(p, index)          # the generated variant (the only one using it) steps
        else:
            batch = p.modality.batch(split, index, p.device)
            v.step(batch, session.teacher_batch(p, batch), p.step)
        sync(p.device)
        return time.perf_counter() - t
    ta, tp = [], []
    for k, index in enumerate(batches[:warmup + steps]):
        pair = (timed(adv, "train", index), timed(plain, "train", index)) if k % 2 == 0 else \
            tuple(reversed((timed(plain, "train", index), timed(adv, "train", index))))
        if k >= warmup:
            ta.append(pair[0])
            tp.append(pair[1])
    # one epoch: the plain variant on the shared batches; the generated one on them and on its own batches
    extra = session.generated_schedule(p, 2, len(batches))
    epoch_plain = epoch_gen = 0.0
    gen_steps = 0
    for k, index in enumerate(batches):
        epoch_plain += timed(plain, "train", index)
        epoch_gen += timed(gen, "train", index)
        for g in extra[k]:
            epoch_gen += timed(gen, "generated", g)
            gen_steps += 1
    size_ratio = (len(p.modality.ids["train"]) + len(p.generated)) / len(p.modality.ids["train"])
    return {"pgd_steps": PGD_STEPS, "steps": len(ta), "adversarial_step_s": median(ta), "plain_step_s": median(tp),
            "adversarial_ratio": median(ta) / median(tp), "adversarial_target": 1 + PGD_STEPS,
            "generated_examples": len(p.generated), "train_examples": len(p.modality.ids["train"]),
            "shared_steps": len(batches), "generated_steps": gen_steps, "epoch_plain_s": epoch_plain,
            "epoch_generated_s": epoch_gen, "epoch_ratio": epoch_gen / epoch_plain, "size_ratio": size_ratio,
            "generated_over_size": epoch_gen / epoch_plain / size_ratio}


# ---- 9. the other kinds of task: their step ratios and their teachers' cached outputs --------------------------
TASK_BENCH = {   # task -> overrides: the task's defaults, its teacher trained briefly (the step does not depend on it)
    "tagging": {},
    "translation": {"translation.teacher_epochs": 2},
    "language_model": {"language_model.teacher_epochs": 1},
}


def bench_task(task: str, overrides: dict, root: Path, warmup: int, steps: int) -> dict:
    """Each variant's step / the reference's on the same batches (interleaved, Variant.step as a session takes it),
    and the teacher's outputs phase of a second prepare (from the disk cache) against the first's."""
    cfg = SessionConfig.from_dict({"task": task}).with_overrides(overrides)
    first = Setup(cfg, RunStore(root).create(cfg.to_dict()))
    second = Setup(cfg, RunStore(root).create(cfg.to_dict()))
    p, session, tcfg = second.p, second.session, cfg.train
    ref = variant(p, cfg.reference or "baseline")
    batches = p.modality.batches("train", tcfg.batch_size, seed=tcfg.seed * 1000 + 2,
                                 buckets=tcfg.length_buckets)[:warmup + steps]

    def step(v, index):
        batch = p.modality.batch("train", index, p.device)
        v.step(batch, session.teacher_batch(p, batch) if v.needs & TEACHER_INPUTS else None, p.step)

    med = interleaved({v.name: functools.partial(step, v) for v in p.variants}, batches, warmup, p.device)
    plain = med[ref.name]
    return {"task": task, "reference": ref.name, "steps": max(0, len(batches) - warmup), "batch_size": tcfg.batch_size,
            "step_s": med, "ratio": {n: s / plain for n, s in med.items() if n != ref.name},
            "losses": {v.name: dict(cfg.variant(v.name).losses) for v in p.variants},
            "teacher_outputs_first_s": first.clock.phases.get("teacher outputs"),
            "teacher_outputs_first_cached": first.teacher_outputs_cached,
            "teacher_outputs_again_s": second.clock.phases.get("teacher outputs"),
            "teacher_outputs_again_cached": second.teacher_outputs_cached,
            "prepare_first_s": first.prepare_s, "prepare_again_s": second.prepare_s,
            "teacher_cached_first": first.p.teacher.cached}


# ---- 10. two sessions at once on this machine, and the classroom preset ----------------------------------------
def cli_session(config: Path, runs: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distill_core", "run", "--config", str(config), "--runs-dir",
                             str(runs)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finished_summary(out: str, runs: Path) -> dict:
    run_id = next((line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("run ")), None)
    if not run_id:
        raise SystemExit(f"a command-line session did not finish:\n{out[-2000:]}")
    return RunStore(runs).open(run_id).summary() or {}


def bench_two_at_once(root: Path) -> dict:
    """The classroom preset (examples/classroom.yaml) from the command line: once alone, then two at once, each in a
    process of its own as two users would start them. Each session's own wall time (summary wall_s: from when it
    had the machine) / alone, how long the second waited (machine.py) and the processes' wall times."""
    config = ROOT / "examples" / "classroom.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    p = cli_session(config, root / "alone", env)
    out, _ = p.communicate()
    alone_process = time.perf_counter() - t0
    alone = finished_summary(out, root / "alone")
    t0 = time.perf_counter()
    procs = [cli_session(config, root / f"pair{k}", env) for k in range(2)]
    outs, ends = [], []
    for pr in procs:
        outs.append(pr.communicate()[0])
        ends.append(time.perf_counter() - t0)
    pair = [finished_summary(o, root / f"pair{k}") for k, o in enumerate(outs)]
    waited = [s.get("machine_wait_s") or 0.0 for s in pair]
    speeds = [alone["wall_s"] / s["wall_s"] for s in pair]
    return {"alone_wall_s": alone["wall_s"], "alone_process_s": alone_process, "alone_accuracy": alone.get("accuracy"),
            "pair_wall_s": [s["wall_s"] for s in pair], "pair_process_s": ends, "pair_waited_s": waited,
            "speed_vs_alone": speeds, "accuracy_same": all(s.get("accuracy") == alone.get("accuracy") for s in pair),
            "told": [next((line for line in o.splitlines() if "waiting for the machine" in line), "") for o in outs]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer batches, epochs and training examples (~3-4 min)")
    ap.add_argument("--skip-session", action="store_true",
                    help="no whole sessions: skip measures 3 and 4, estimate 2 from Session.record_epoch")
    ap.add_argument("--skip-uncached", action="store_true",
                    help="run the default session (measure 4, full mode) once, with the usual cache; without this "
                         "flag it runs three times in an empty one: teacher fine-tuned (1-2 more minutes) and its "
                         "outputs computed, then the teacher cached with its outputs computed, then both cached")
    ap.add_argument("--json", metavar="OUT", help="also write all results to this JSON file")
    ap.add_argument("--skip-live-view", action="store_true", help="leave out measure 6 (the app in a browser)")
    ap.add_argument("--skip-strategies", action="store_true", help="leave out measure 7 (adversarial and generated)")
    ap.add_argument("--skip-tasks", action="store_true", help="leave out measure 9 (tagging, translation, language model)")
    ap.add_argument("--skip-pair", action="store_true", help="leave out measure 10 (two sessions at once, the classroom)")
    ap.add_argument("--device", default="cpu", help="device of measures 1-4 (default cpu; CUDA is added for 1 "
                                                    "when available)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's own choice, as a session uses). On a machine busy with "
                         "other work, 1 avoids threads waiting on each other and makes steps far less noisy")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    mode = "quick" if args.quick else "full"
    m = MODES[mode]
    t_bench = time.perf_counter()
    res: dict = {"mode": mode, "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                 "machine": machine()}
    mc = res["machine"]
    say(f"# session benchmark ({mode})")
    say(f"{mc['date']} | {mc['cpu']} | {mc['cores']} cores ({mc['cores_usable']} usable, torch threads "
        f"{mc['torch_threads']}) | torch {mc['torch']} | transformers {mc['transformers']} | python {mc['python']}"
        + (f" | GPU {mc['cuda']}" if mc["cuda"] else " | no GPU")
        + (f" | load average at start {mc['load_avg_start']}" if mc.get("load_avg_start") else ""))

    base = SessionConfig()
    overrides = {"train.device": args.device}
    if m["train_size"]:
        overrides["data.train_size"] = m["train_size"]
    if m["epochs"]:
        overrides["train.epochs"] = m["epochs"]
    cfg = base.with_overrides(overrides)
    device = pick_device(args.device)
    say(f"data: {cfg.data.source}, train {cfg.data.train_size}, val {cfg.data.val_size}, test {cfg.data.test_size}, "
        f"max_length {cfg.data.max_length}, batch {cfg.train.batch_size}, epochs {cfg.train.epochs}; student "
        f"{cfg.student.layers}x{cfg.student.heads}x{cfg.student.hidden}; variants "
        + "; ".join(f"{v.name} {v.losses}" for v in cfg.variants))

    tmp = Path(tempfile.mkdtemp(prefix="ads-bench-"))
    try:
        section("set-up (Session.prepare)")
        setup = Setup(cfg, RunStore(tmp / "scratch").create(cfg.to_dict()))
        res["setup"] = s0 = setup.describe()
        say(f"prepared in {fmt_s(s0['prepare_s'])}: " + ", ".join(f"{k} {fmt_s(v)}" for k, v in s0["phases"].items()))
        say(f"teacher fine-tune {'cached' if s0['teacher_cached'] else 'NOT cached: fine-tuned now'} "
            f"({s0['teacher_path']}); its outputs on {s0['train_examples']} training examples "
            f"{'from the disk cache' if s0['teacher_outputs_cached'] else 'computed (and cached on disk)'}; "
            f"cache {cache_root()}")

        section("5. explorer figures (app/figures/maps.py + fig.to_json())")
        res["charts"] = bench_charts(setup, m["chart_repeats"])
        for k, v in res["charts"].items():
            say(f"  {k:<32} median {fmt_s(v['median_s'])} (min {fmt_s(v['min_s'])}, max {fmt_s(v['max_s'])}, "
                f"{v['json_bytes'] / 1e6:.2f} MB JSON, {v['builds']} builds)")

        section("1. distillation step / plain step (Variant.step of the prepared variants, same batches, "
                "interleaved)")
        res["steps"] = bench_steps(setup, m["warmup"], m["steps"])
        s = res["steps"]
        say(f"  {s['steps']} steps after {s['warmup']} warm-up, batch {s['batch_size']}, padded length median "
            f"{s['padded_length_median']:.0f} (range {s['padded_length_range']}) on {s['device']}")
        say(f"  distilled {fmt_s(s['distilled_step_s'])}  plain {fmt_s(s['plain_step_s'])}  ratio of medians "
            f"{s['ratio_of_medians']:.2f}  median of per-batch ratios {s['median_of_ratios']:.2f}")
        say("  breakdown (same batches, one student; vs the plain SDPA step):")
        for k, v in s["breakdown"].items():
            say(f"    {k:<24} {fmt_s(v['step_s']):>8}  x{v['vs_sdpa']:.2f}")
        section("8'. the plain step with each optimizer (same batches, interleaved)")
        opt_batches = setup.p.modality.batches("train", cfg.train.batch_size, seed=cfg.train.seed * 1000 + 2,
                                                           buckets=cfg.train.length_buckets)[:m["warmup"] + m["steps"]]
        res["optimizers"] = ob = bench_optimizers(setup, opt_batches, m["warmup"])
        for name, x in ob.items():
            say(f"  {name:<38} {fmt_s(x['step_s']):>8}  x{x['vs_first']:.2f}")
        section("8. the training step / its bound (matmul FLOPs at the measured matmul rate + the optimizer's bytes "
                "at the measured memory bandwidth)")
        res["bound"] = b = bench_bound(setup, s)
        say(f"  machine: float32 matmul {b['matmul_gflops']:.0f} GFLOP/s, memory {b['bandwidth_gb_s']:.1f} GB/s "
            f"({b['threads']} threads); batch of padded length {b['batch_length']}, {b['rows_used']} embedding rows used")
        for name in (k for k, x in b.items() if isinstance(x, dict)):
            x = b[name]
            say(f"  {name:<10} {x['flops'] / 1e9:.2f} GFLOP -> {fmt_s(x['compute_s'])}, "
                f"{x['update_bytes'] / 1e6:.0f} MB updated -> {fmt_s(x['memory_s'])}; bound {fmt_s(x['bound_s'])}, "
                f"step {fmt_s(x['step_s'])}: {x['ratio']:.2f} x the bound")
        if torch.cuda.is_available() and device.type != "cuda":
            section("1b. the same on the GPU (bf16 autocast, pinned teacher outputs)")
            gcfg = cfg.with_overrides({"train.device": "cuda"})
            gsetup = Setup(gcfg, RunStore(tmp / "scratch").create(gcfg.to_dict()))
            res["steps_cuda"] = g = bench_steps(gsetup, max(10, m["warmup"]), max(50, m["steps"]))
            say(f"  distilled {g['distilled_samples_per_s']:.0f} samples/s  plain {g['plain_samples_per_s']:.0f} "
                f"samples/s  ratio {g['ratio_of_medians']:.2f}")
            section("1c. the session on the GPU / the same students trained alone on it (samples per second)")
            torch.cuda.reset_peak_memory_stats()
            gs = timed_session(gcfg, tmp / "runs-cuda")
            alone = students_alone(gsetup, gcfg.train.epochs)
            res["session_cuda"] = gc = {
                "card": torch.cuda.get_device_name(0), "session_wall_s": gs["wall_s"], "alone_wall_s": alone["wall_s"],
                "session_samples_per_s": alone["steps"] * gcfg.train.batch_size / gs["wall_s"],
                "alone_samples_per_s": alone["samples_per_s"], "ratio": alone["wall_s"] / gs["wall_s"],
                "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9, "teacher_cached": gs["teacher_cached"],
                "phases": gs["phases"]}
            say(f"  {gc['card']}: session {gc['session_samples_per_s']:.0f} samples/s ({fmt_s(gc['session_wall_s'])}, "
                f"phases {gc['phases']}), students alone {gc['alone_samples_per_s']:.0f} samples/s: "
                f"{gc['ratio']:.0%}; peak GPU memory {gc['peak_memory_gb']:.2f} GB")
            del gsetup
            torch.cuda.empty_cache()

        if args.skip_session:
            section("2. recording / training (Session.record_epoch on the prepared variants, no session)")
            res["recording_functions"] = rf = recording_by_functions(setup, res["steps"])
            for name, r in rf.items():
                say(f"  {name:<10} record {fmt_s(r['record_s'])}  eval {fmt_s(r['eval_s'])}  vs an epoch of its "
                    f"steps {fmt_s(r['train_epoch_s_estimate'])} ({r['steps_per_epoch']} steps): record/train "
                    f"{r['record_over_train']:.1%}, eval/train {r['eval_over_train']:.1%}")
        else:
            section(f"3. our session (distilled variant only, {cfg.train.epochs} epochs) vs a hand-written loop")
            ours = timed_session(cfg.with_overrides({"train.baseline": False}), tmp / "runs")
            print_session(ours)
            res["ours"] = session_for_json(ours)
            hand = hand_loop(cfg, setup.p.modality.splits, ours["teacher_path"], cfg.train.epochs)
            res["hand"] = hand
            ours_ep = epoch_times(ours["metrics"])
            rows = []
            for e in range(1, cfg.train.epochs + 1):
                o, h = ours_ep.get(e), hand["epochs"].get(e)
                rows.append({"epoch": e, "ours_s": o, "hand_s": h, "ratio": (o / h) if o and h else None})
                say(f"  epoch {e}: ours {fmt_s(o)} (train + eval + record)  hand {fmt_s(h)} (train + eval)  "
                    f"ratio {o / h:.2f}")
            later = [r["ratio"] for r in rows if r["epoch"] >= 2 and r["ratio"]]
            ft = (ours["prepare_teacher_s"] or 0.0) if not ours["teacher_cached"] else 0.0
            ours_total = ours["wall_s"] - ft
            res["vs_hand"] = {"per_epoch": rows, "ratio_epoch2plus_max": max(later) if later else None,
                              "ratio_epoch2plus_median": median(later) if later else None,
                              "ours_wall_s": ours["wall_s"], "ours_wall_without_finetune_s": ours_total,
                              "hand_wall_s": hand["wall_s"], "whole_run_ratio": ours_total / hand["wall_s"],
                              "teacher_outputs_s": ours["teacher_outputs_s"],
                              "teacher_outputs_cached": ours["teacher_outputs_cached"],
                              "teacher_finetune_cached": ours["teacher_cached"],
                              "val_accuracy_ours": [x["val_accuracy"] for x in ours["metrics"] if x["epoch"] > 0],
                              "val_accuracy_hand": list(hand["val_accuracy"].values()),
                              "test_accuracy_ours": (ours["accuracy"] or {}).get("distilled"),
                              "test_accuracy_hand": hand["test_accuracy"]}
            v = res["vs_hand"]
            say(f"  hand-written loop: set-up {fmt_s(hand['setup_s'])}, test accuracy {fmt_s(hand['test_s'])}")
            say(f"  whole run: ours {fmt_s(ours_total)} (its teacher outputs phase {fmt_s(v['teacher_outputs_s'])}, "
                + ("outputs from the disk cache the set-up's prepare filled" if v["teacher_outputs_cached"]
                   else "outputs computed")
                + ("" if ours["teacher_cached"] else "; excl. the teacher fine-tune")
                + f") / hand {fmt_s(hand['wall_s'])} = {v['whole_run_ratio']:.2f}")
            say(f"  accuracy: ours val {[round(x, 3) for x in v['val_accuracy_ours']]} test "
                f"{v['test_accuracy_ours']:.3f}; hand val {[round(x, 3) for x in v['val_accuracy_hand']]} test "
                f"{v['test_accuracy_hand']:.3f}")
            rec_source, rec_label = ours, "the session of measure 3"

            if mode == "full":
                dcfg = SessionConfig().with_overrides({"train.device": args.device})
                fresh = None if args.skip_uncached else tmp / "fresh-cache"
                section("4. default session (baseline on, 4 epochs, train 3,000), "
                        + ("usual cache" if fresh is None else f"three times from an empty cache ({fresh})"))
                sessions = cache_sessions(dcfg, tmp / "runs", fresh)
                for d in sessions:
                    say(f"  -- {cache_case(d)}")
                    print_session(d)
                    say(f"  test accuracy: {d['accuracy']}")
                res["sessions"] = [{"case": cache_case(d), **session_for_json(d)} for d in sessions]
                section("4+. the same students trained alone (hard labels, no teacher, recording or evaluation)")
                res["alone"] = a = students_alone(setup, dcfg.train.epochs)
                cached = [d for d in res["sessions"] if d["teacher_cached"] and d["teacher_outputs_cached"]]
                if cached:
                    a["session_wall_s"] = cached[-1]["wall_s"]
                    a["ratio"] = a["session_wall_s"] / a["wall_s"]
                say(f"  {a['students']} students x {a['epochs']} epochs ({a['steps']} steps): {fmt_s(a['wall_s'])}"
                    + (f"; the default session with the teacher and its outputs cached took {fmt_s(a['session_wall_s'])}"
                       f" = {a['ratio']:.2f} x" if cached else "; no session with both cached to compare"))
                rec_source, rec_label = sessions[0], "the default session"
            else:
                section("4. default session: skipped in quick mode (run without --quick)")

            section(f"2. recording / training per epoch (metrics.jsonl timing of {rec_label})")
            res["recording"] = rec = recording_ratios(rec_source["metrics"])
            if not rec:
                say("  the run's metrics.jsonl has no timing: timing Session.record_epoch instead")
                res["recording_functions"] = rf = recording_by_functions(setup, res["steps"])
                for name, r in rf.items():
                    say(f"  {name:<10} record {fmt_s(r['record_s'])}  eval {fmt_s(r['eval_s'])}  vs an epoch of "
                        f"its steps {fmt_s(r['train_epoch_s_estimate'])}")
            for name, r in rec.items():
                say(f"  {name:<10} record/train per epoch "
                    + " ".join(f"{x:.1%}" for x in r["record_over_train"])
                    + f"  (all epochs {r['record_over_train_total']:.1%}, with epoch 0 "
                      f"{r['record_over_train_total_with_epoch0']:.1%});  eval/train "
                    + " ".join(f"{x:.1%}" for x in r["eval_over_train"])
                    + "; train_s " + " ".join(f"{x:.1f}" for x in r["train_s"])
                    + ", record_s " + " ".join(f"{x:.2f}" for x in r["record_s"]))
        if not args.skip_strategies:
            section(f"7. strategies: adversarial step (PGD {PGD_STEPS} steps) / plain step; generated-data epoch / "
                    f"plain epoch over their sizes")
            res["strategies"] = g = bench_strategies(cfg, tmp, m["warmup"], m["steps"])
            say(f"  adversarial {fmt_s(g['adversarial_step_s'])}  plain {fmt_s(g['plain_step_s'])}  ratio "
                f"{g['adversarial_ratio']:.2f} (target <= {g['adversarial_target']}, median of {g['steps']} batches)")
            say(f"  epoch: plain {fmt_s(g['epoch_plain_s'])} ({g['shared_steps']} steps), with generated data "
                f"{fmt_s(g['epoch_generated_s'])} (+{g['generated_steps']} steps on {g['generated_examples']} "
                f"generated examples); time ratio {g['epoch_ratio']:.2f} / size ratio {g['size_ratio']:.2f} = "
                f"{g['generated_over_size']:.2f}")
        if not args.skip_tasks:
            section("9. the other kinds of task: each variant's step / the reference's (same batches, interleaved), "
                    "and their teacher's outputs from the disk cache")
            res["tasks"] = {}
            for task, over in TASK_BENCH.items():
                res["tasks"][task] = t = bench_task(task, over, tmp / f"task-{task}", m["warmup"], m["steps"])
                say(f"  {task}: steps " + ", ".join(f"{n} {fmt_s(x)}" for n, x in t["step_s"].items())
                    + "; / " + t["reference"] + ": " + ", ".join(f"{n} {x:.2f}" for n, x in t["ratio"].items()))
                say(f"    teacher outputs phase: first prepare {fmt_s(t['teacher_outputs_first_s'])} "
                    f"({'from the cache' if t['teacher_outputs_first_cached'] else 'computed'}), again "
                    f"{fmt_s(t['teacher_outputs_again_s'])} "
                    f"({'from the cache' if t['teacher_outputs_again_cached'] else 'computed again'})")
        if mode == "full" and not args.skip_pair:
            section("10. the classroom preset alone, then two of it at once from two command lines")
            res["pair"] = pr = bench_two_at_once(tmp / "pair")
            say(f"  alone: {fmt_s(pr['alone_wall_s'])} (process {fmt_s(pr['alone_process_s'])}); two at once: "
                f"session walls {[round(x, 1) for x in pr['pair_wall_s']]} s, waited {pr['pair_waited_s']} s, "
                f"processes {[round(x, 1) for x in pr['pair_process_s']]} s; speed / alone "
                f"{[round(x, 2) for x in pr['speed_vs_alone']]}; same accuracies: {pr['accuracy_same']}")
            for line in pr["told"]:
                if line:
                    say(f"  said: {line[:200]}")
        if mode == "full" and not args.skip_live_view:
            section("6. training speed with the New session page open / closed (the app, headless Chromium)")
            import live_view_bench
            if not Path(live_view_bench.CHROMIUM).exists():
                say(f"  skipped: no Chromium at {live_view_bench.CHROMIUM}")
            else:
                del setup
                work = tmp / "live"
                work.mkdir()
                try:
                    res["live_view"] = live_view_bench.measure(cfg, work, log=say)
                    live_view_bench.report(res["live_view"], log=say)
                except Exception as e:  # noqa: BLE001 - the other measures are kept, and the table says why
                    res["live_view_error"] = f"{type(e).__name__}: {e}"
                    say(f"  failed: {res['live_view_error']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError, AttributeError):
        res["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["bench_wall_s"] = time.perf_counter() - t_bench
    res["table"] = table = summary_table(res)
    say(f"\n## summary ({mode}, {res['machine']['date']}, benchmark took {fmt_s(res['bench_wall_s'])}; load average "
        f"start {res['machine'].get('load_avg_start')}, end {res['machine'].get('load_avg_end')})\n")
    say("| measure | value | target | met? |")
    say("|---|---|---|---|")
    for row in table:
        say(f"| {row['measure']} | {row['value']} | {row['target']} | {row['met']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
        say(f"\nresults written to {args.json}")
    return 0


def summary_table(res: dict) -> list[dict]:
    rows = []

    def add(measure, value, target, ok):
        rows.append({"measure": measure, "value": value, "target": target, "met": ok})
    s = res.get("steps")
    if s:
        add(f"1. distillation step / plain step ({s['device']}, median of {s['steps']} batches)",
            f"{s['ratio_of_medians']:.2f} ({fmt_s(s['distilled_step_s'])} / {fmt_s(s['plain_step_s'])})",
            f"<= {TARGETS['step']}", met(s["ratio_of_medians"], TARGETS["step"]))
    g = res.get("steps_cuda")
    if g:
        add("1b. GPU samples/s: distilled vs plain", f"{g['distilled_samples_per_s']:.0f} vs "
            f"{g['plain_samples_per_s']:.0f} (ratio {g['ratio_of_medians']:.2f})", f"<= {TARGETS['step']}",
            met(g["ratio_of_medians"], TARGETS["step"]))
    gc = res.get("session_cuda")
    if gc:
        add(f"1c. GPU ({gc['card']}): session samples/s / the students alone, peak memory",
            f"{gc['ratio']:.0%} ({gc['session_samples_per_s']:.0f} / {gc['alone_samples_per_s']:.0f}); "
            f"{gc['peak_memory_gb']:.2f} GB", f">= {TARGETS['gpu_vs_alone']:.0%}",
            met(gc["ratio"], TARGETS["gpu_vs_alone"], below=False))
    rec = res.get("recording")
    if rec:
        for name, r in rec.items():
            worst = max(r["record_over_train"]) if r["record_over_train"] else float("nan")
            add(f"2. record / train per epoch ({name}, worst epoch)", f"{worst:.1%} (all epochs "
                f"{r['record_over_train_total']:.1%}; +epoch 0: {r['record_over_train_total_with_epoch0']:.1%})",
                "<= 5%", met(worst, TARGETS["record"]))
            add(f"2'. eval / train per epoch ({name}, for reference)", f"{max(r['eval_over_train']):.1%} worst, "
                f"{r['eval_over_train_total']:.1%} all epochs", "-", "-")
    for name, rf in (res.get("recording_functions") or {}).items():
        add(f"2. record / train per epoch ({name}, Session.record_epoch, estimated)", f"{rf['record_over_train']:.1%}",
            "<= 5%", met(rf["record_over_train"], TARGETS["record"]))
        add(f"2'. eval / train per epoch ({name}, estimated, for reference)", f"{rf['eval_over_train']:.1%}",
            "-", "-")
    v = res.get("vs_hand")
    if v:
        add("3. our epoch / hand-written epoch (epoch >= 2, worst)",
            f"{v['ratio_epoch2plus_max']:.2f}" if v["ratio_epoch2plus_max"] else "n/a", f"< {TARGETS['vs_hand']}",
            met(v["ratio_epoch2plus_max"], TARGETS["vs_hand"], strict=True))
        ours = v["ours_wall_s"] if v["teacher_finetune_cached"] else v["ours_wall_without_finetune_s"]
        add("3'. our whole session / hand-written whole run", f"{v['whole_run_ratio']:.2f} ({fmt_s(ours)} / "
            f"{fmt_s(v['hand_wall_s'])}; teacher fine-tune {'cached' if v['teacher_finetune_cached'] else 'excluded'}"
            f", its outputs {'from the disk cache' if v['teacher_outputs_cached'] else 'computed'})", "-", "-")
    mc = res["machine"]
    for k, d in enumerate(res.get("sessions") or []):
        where = f"; {mc['date'][:10]}, {mc['cpu']}, {mc['cores']} cores, torch {mc['torch']}" if k == 0 else ""
        fresh = not d["teacher_cached"]
        both = d["teacher_cached"] and d["teacher_outputs_cached"]
        limit = TARGETS["first_session"] if fresh else TARGETS["cached_session"] if both else None
        add(f"4{chr(39) * k}. default session wall time ({d['case']})",
            f"{fmt_s(d['wall_s'])} (teacher outputs phase {fmt_s(d['teacher_outputs_s'])}{where})",
            f"<= {limit:.0f} s" if limit else "-", met(d["wall_s"], limit) if limit else "-")
    a = res.get("alone")
    if a and a.get("ratio"):
        add("4+. default session, teacher and its outputs cached / the same students trained alone",
            f"{a['ratio']:.2f} ({fmt_s(a['session_wall_s'])} / {fmt_s(a['wall_s'])})",
            f"<= {TARGETS['vs_alone']}", met(a["ratio"], TARGETS["vs_alone"]))
    ob = res.get("optimizers")
    if ob:
        names = list(ob)
        add(f"8'. plain step with fused AdamW / with per-tensor AdamW (row-sparse embedding too: "
            f"{ob[names[2]]['vs_first']:.2f})", f"{ob[names[1]]['vs_first']:.2f} ({fmt_s(ob[names[1]]['step_s'])} / "
            f"{fmt_s(ob[names[0]]['step_s'])})", "-", "-")
    b = res.get("bound")
    if b:
        for name in (k for k, x in b.items() if isinstance(x, dict)):
            x = b[name]
            add(f"8. {name} training step / its bound (FLOPs at {b['matmul_gflops']:.0f} GFLOP/s + optimizer bytes "
                f"at {b['bandwidth_gb_s']:.1f} GB/s)", f"{x['ratio']:.2f} ({fmt_s(x['step_s'])} / {fmt_s(x['bound_s'])})",
                f"<= {TARGETS['bound']}", met(x["ratio"], TARGETS["bound"]))
    if res.get("live_view_error"):
        add("6. training speed with the New session page open / closed", f"failed: {res['live_view_error']}", ">= 0.9",
            "n/a")
    lv = res.get("live_view")
    if lv:
        add("6. training speed with the New session page open / closed (median epoch)",
            f"{lv['ratio']:.2f} ({statistics.median(lv['open_steps_per_s']):.2f} / "
            f"{statistics.median(lv['closed_steps_per_s']):.2f} steps/s)", f">= {lv['target']}",
            met(lv["ratio"], lv["target"], below=False))
    g = res.get("strategies")
    if g:
        add(f"7. adversarial step (PGD {g['pgd_steps']} steps) / plain distillation step",
            f"{g['adversarial_ratio']:.2f} ({fmt_s(g['adversarial_step_s'])} / {fmt_s(g['plain_step_s'])})",
            f"<= {g['adversarial_target']}", met(g["adversarial_ratio"], g["adversarial_target"]))
        add("7'. generated-data epoch / plain epoch, over their size ratio",
            f"{g['generated_over_size']:.2f} ({g['epoch_ratio']:.2f} / {g['size_ratio']:.2f})",
            f"<= {TARGETS['generated']}", met(g["generated_over_size"], TARGETS["generated"]))
    for task, t in (res.get("tasks") or {}).items():
        for n, r in t["ratio"].items():
            add(f"9. {task}: {n} step / {t['reference']} step (median of {t['steps']} batches)",
                f"{r:.2f} ({fmt_s(t['step_s'][n])} / {fmt_s(t['step_s'][t['reference']])})",
                f"<= {TARGETS['step']}" if n in TASK_STEP_TARGETED else "-",
                met(r, TARGETS["step"]) if n in TASK_STEP_TARGETED else "-")
        if t["teacher_outputs_again_cached"] is None:          # the task keeps no teacher outputs: it runs each step
            add(f"9'. {task}: the teacher's outputs", "not cached: the teacher runs inside every distillation step "
                f"(prepare {fmt_s(t['prepare_first_s'])} first, {fmt_s(t['prepare_again_s'])} again)", "-", "-")
            continue
        add(f"9'. {task}: teacher outputs phase, first prepare / again", f"{fmt_s(t['teacher_outputs_first_s'])} "
            f"({'cached' if t['teacher_outputs_first_cached'] else 'computed'}) / {fmt_s(t['teacher_outputs_again_s'])}"
            f" ({'from the disk cache' if t['teacher_outputs_again_cached'] else 'computed again'})", "from the cache",
            "yes" if t["teacher_outputs_again_cached"] else "**no**")
    pr = res.get("pair")
    if pr:
        add("10. classroom preset (examples/classroom.yaml), teacher cached, session wall", fmt_s(pr["alone_wall_s"]),
            f"<= {TARGETS['cached_session']:.0f} s", met(pr["alone_wall_s"], TARGETS["cached_session"]))
        worst = min(pr["speed_vs_alone"])
        add("10'. two sessions at once from two command lines: each one's speed / alone (the second queued)",
            f"{worst:.2f} worst ({', '.join(f'{x:.2f}' for x in pr['speed_vs_alone'])}); waited "
            f"{', '.join(f'{x:.0f} s' for x in pr['pair_waited_s'])}; processes "
            f"{', '.join(f'{x:.0f} s' for x in pr['pair_process_s'])}", ">= 0.45, or queued with a message",
            met(worst, TARGETS["pair"], below=False))
    c = res.get("charts")
    if c:
        for k, x in c.items():
            add(f"5. figures: {k} (median of {x['builds']})", fmt_s(x["median_s"]), "< 0.5 s",
                met(x["median_s"], TARGETS["charts"], strict=True))
    return rows


if __name__ == "__main__":
    sys.exit(main())
