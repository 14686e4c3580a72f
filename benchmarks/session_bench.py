#!/usr/bin/env python
"""How fast is a session, and where does its time go? One run, one machine, the same batches for every side.

    .venv/bin/python benchmarks/session_bench.py            # full: default data and shapes (~15 min on 2 cores)
    .venv/bin/python benchmarks/session_bench.py --quick    # smaller numbers (~3-4 min)
    .venv/bin/python benchmarks/session_bench.py --skip-session --json out.json

Measures (ratios are taken within this one run, so a busy machine moves them much less than absolute times):

1. step      distillation step (ce + logit_kd + attention_kl, eager attention + capture, cached teacher outputs)
             / plain student step on hard labels (SDPA), same student shape, same length-bucketed batches of
             the real default data; both run through the engine's own `Session._train_step`, interleaved batch by
             batch. Target <= 1.3.
2. record    attention recording (probe maps + divergences) per epoch / training per epoch, from the
             "timing" the engine writes into metrics.jsonl. Target <= 5 %.
3. vs hand   our session (no baseline student) / a hand-written PyTorch + transformers loop with the same models,
             data, losses and epochs that pads to max_length and recomputes the teacher every step.
             Target < 0.5 per epoch from epoch 2 on.
4. session   wall time of the default session (absolute), the teacher fine-tune cached and, unless skipped,
             uncached in a fresh ADS_CACHE_DIR.
5. charts    building the attention explorer's figures (app/charts.py) plus fig.to_json(). Target < 0.5 s.

On CUDA, measure 1 is repeated on the GPU (bf16 autocast, pinned teacher outputs, as the engine does) and reported
in samples/s. Runs are written to a temporary folder and deleted; the teacher fine-tune is cached as usual.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from distill_core import mapping  # noqa: E402
from distill_core.batching import encode, make_batches  # noqa: E402
from distill_core.config import ATTENTION_LOSSES, SessionConfig  # noqa: E402
from distill_core.data import load_splits  # noqa: E402
from distill_core.models import build_student, load_tokenizer, num_layers_heads, pick_device  # noqa: E402
from distill_core.store import RunStore  # noqa: E402
from distill_core.teacher import cache_root, compute_teacher_outputs, prepare_teacher  # noqa: E402
from distill_core.trainer import Session, SessionCallback, _lr_lambda, _Student, run_session  # noqa: E402

MODES = {
    #            train examples, warm-up steps, timed steps, epochs (sessions 3 and 4), chart builds
    "quick": dict(train_size=800, warmup=3, steps=20, epochs=2, chart_repeats=3),
    "full": dict(train_size=None, warmup=5, steps=40, epochs=None, chart_repeats=7),
}
TARGETS = {"step": 1.3, "record": 0.05, "vs_hand": 0.5, "charts": 0.5}


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
    info = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": cpu,
            "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with contextlib.suppress(OSError, AttributeError):
        info["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- shared set-up: data, tokens, the fine-tuned teacher -----------------------------------------------------
class Setup:
    def __init__(self, cfg: SessionConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        t0 = time.perf_counter()
        self.splits = load_splits(cfg.data)
        self.tokenizer = load_tokenizer(cfg.teacher.source)
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ml = cfg.data.max_length
        self.train_ids, _ = encode(self.tokenizer, self.splits.train_texts, ml)
        self.val_ids, _ = encode(self.tokenizer, self.splits.val_texts, ml)
        self.data_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared = prepare_teacher(cfg, self.splits, self.train_ids, device)
        self.teacher_s = time.perf_counter() - t0
        self.teacher, self.teacher_path, self.teacher_cached = prepared.model, prepared.path, prepared.cached
        self.t_layers, self.t_heads = num_layers_heads(self.teacher)


# ---- 1. distillation step / plain step ----------------------------------------------------------------------
def _bench_session(cfg, run, device, pad, students, head_rule, pairs, s_heads) -> Session:
    """A Session holding just what `_train_step` reads, set up as `Session.execute` does."""
    s = Session(cfg, run)
    s.device, s.pad, s.students, s.head_rule, s.pairs, s.s_heads = device, pad, students, head_rule, pairs, s_heads
    return s


def bench_steps(setup: Setup, device: torch.device, warmup: int, steps: int, run) -> dict:
    """Median seconds of the engine's distillation step and of its plain (baseline) step on the same batches."""
    cfg = setup.cfg
    obj = cfg.objectives
    tcfg = cfg.train
    torch.manual_seed(tcfg.seed)
    s_layers = cfg.student.layers
    pairs_teacher = mapping.layer_map(obj.layer_map, setup.t_layers, s_layers)
    pairs = [(t, s) for s, t in enumerate(pairs_teacher)]
    init_layers = mapping.layer_map(obj.layer_map, setup.t_layers, s_layers)
    first = build_student(cfg.student, setup.teacher, setup.splits.num_labels, init_layers)
    _, s_heads = num_layers_heads(first)
    head_rule = mapping.resolve_head_rule(obj.head_rule, setup.t_heads, s_heads)
    need_att = any(obj.weight(n) > 0 for n in ATTENTION_LOSSES)
    need_hid = obj.weight("hidden_mse") > 0
    if need_hid:
        raise SystemExit("this benchmark measures the default objectives; hidden_mse is not set up here")

    lengths = [len(x) for x in setup.train_ids]
    # epoch 2's batches: the teacher outputs are cached before epoch 1 in this engine, so every step uses them
    batches = make_batches(lengths, tcfg.batch_size, seed=tcfg.seed * 1000 + 2, buckets=tcfg.length_buckets)
    batches = batches[:warmup + steps]
    if len(batches) < warmup + steps:
        say(f"  note: only {len(batches)} batches in an epoch; timing {len(batches) - warmup} steps")
    used = sorted({int(i) for b in batches for i in b})
    where = {i: k for k, i in enumerate(used)}
    sub_ids = [setup.train_ids[i] for i in used]
    sub_batches = [np.array([where[int(i)] for i in b]) for b in batches]
    y = torch.tensor([setup.splits.train_labels[i] for i in used], dtype=torch.long)

    t0 = time.perf_counter()
    tout = compute_teacher_outputs(setup.teacher, sub_ids, setup.pad, device, pairs_teacher, head_rule, s_heads,
                                   need_att, need_hid, batch_size=max(tcfg.batch_size, 64),
                                   mixed_precision=tcfg.mixed_precision)
    _sync(device)
    tout_s = time.perf_counter() - t0

    def student(name, model, weights):
        model.to(device)
        st = _Student(name, model, weights, None)
        st.optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        st.scheduler = torch.optim.lr_scheduler.LambdaLR(
            st.optimizer, _lr_lambda(tcfg.schedule, 10 * len(batches), tcfg.warmup_ratio))
        return st
    distilled = student("distilled", first, obj.losses)
    plain = student("baseline", copy.deepcopy(first).cpu(), {"ce": 1.0})
    sess_d = _bench_session(cfg, run, device, setup.pad, [distilled], head_rule, pairs, s_heads)
    sess_p = _bench_session(cfg, run, device, setup.pad, [plain], head_rule, pairs, s_heads)

    def timed(sess, index, t_out, step):
        _sync(device)
        t = time.perf_counter()
        sess._train_step(index, sub_ids, y, t_out, 2, step, need_att and t_out is not None, False)
        _sync(device)
        return time.perf_counter() - t

    td, tp, tokens = [], [], []
    for k, index in enumerate(sub_batches):
        # alternate which side goes first, so drifting machine load hits both alike
        if k % 2 == 0:
            d = timed(sess_d, index, tout, k)
            p = timed(sess_p, index, None, k)
        else:
            p = timed(sess_p, index, None, k)
            d = timed(sess_d, index, tout, k)
        if k >= warmup:
            td.append(d)
            tp.append(p)
            tokens.append(max(len(sub_ids[i]) for i in index))
    ratios = [a / b for a, b in zip(td, tp)]
    bs = tcfg.batch_size
    res = {"device": str(device), "steps": len(td), "warmup": warmup, "batch_size": bs,
           "padded_length_median": median(tokens), "padded_length_range": [min(tokens), max(tokens)],
           "distilled_step_s": median(td), "plain_step_s": median(tp),
           "ratio_of_medians": median(td) / median(tp), "median_of_ratios": median(ratios),
           "distilled_samples_per_s": bs / median(td), "plain_samples_per_s": bs / median(tp),
           "teacher_outputs_s": tout_s, "teacher_outputs_examples": len(sub_ids),
           "head_rule": head_rule, "pairs": pairs}
    res["breakdown"] = step_breakdown(setup, device, sub_ids, y, tout, sub_batches[warmup:], head_rule,
                                      pairs_teacher, first_state=first.state_dict())
    return res


def step_breakdown(setup, device, ids, y, tout, batches, head_rule, pairs_teacher, first_state) -> dict:
    """Where the extra time of a distillation step goes: the same step built up piece by piece (not the engine's
    code path; for reading the ratio above). Each variant runs on the same batches; medians in seconds."""
    from distill_core.batching import collate
    from distill_core.capture import AttentionCapture
    from distill_core.evaluate import autocast_for
    from distill_core.losses import LossInputs, combined_loss
    from distill_core.models import set_attention_backend
    cfg = setup.cfg
    torch.manual_seed(0)
    model = build_student(cfg.student, setup.teacher, setup.splits.num_labels, None)
    model.load_state_dict(first_state)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    obj = cfg.objectives

    def step(variant, index):
        _sync(device)
        t = time.perf_counter()
        input_ids, mask = collate(ids, index, setup.pad)
        input_ids, mask, labels = input_ids.to(device), mask.to(device), y[index].to(device)
        eager = variant in ("eager", "eager+capture", "eager+capture+losses")
        set_attention_backend(model, eager=eager)
        t_logits = t_att = s_att = None
        if variant == "eager+capture+losses":
            t_logits, t_att, _ = tout.batch(index, input_ids.shape[1], device)
        cap = AttentionCapture(model) if "capture" in variant else contextlib.nullcontext()
        with cap, autocast_for(device, cfg.train.mixed_precision):
            out = model(input_ids=input_ids, attention_mask=mask)
            if "capture" in variant:
                s_att = mapping.adapt_student(cap.pop_stacked().float(), head_rule)
            if variant == "eager+capture+losses":
                loss, _ = combined_loss(obj.losses, LossInputs(out.logits, labels, mask, obj.temperature, t_logits,
                                                               s_att, t_att))
            else:
                loss = F.cross_entropy(out.logits.float(), labels)
                if s_att is not None:          # keep the captured maps in the graph, as the attention loss does
                    loss = loss + 0.0 * s_att.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        _sync(device)
        return time.perf_counter() - t

    variants = ["sdpa", "eager", "eager+capture", "eager+capture+losses"]
    times = {v: [] for v in variants}
    for k, index in enumerate(batches):
        order = variants if k % 2 == 0 else variants[::-1]
        for v in order:
            times[v].append(step(v, index))
    base = median(times["sdpa"])
    return {v: {"step_s": median(times[v]), "vs_sdpa": median(times[v]) / base} for v in variants}


# ---- sessions (2, 3, 4) -------------------------------------------------------------------------------------
class PhaseClock(SessionCallback):
    """Seconds spent in each phase of a session, from its progress events. The evaluation and recording after an
    epoch fall in "train", epoch 0's recording in "teacher outputs"; the exact costs of the teacher's fine-tune
    and of its cached outputs are timed around the engine's functions (see `timed_session`)."""

    def __init__(self):
        self.phases: dict[str, float] = {}
        self._phase, self._t = None, None

    def _mark(self, phase):
        now = time.perf_counter()
        if self._phase is not None:
            self.phases[self._phase] = self.phases.get(self._phase, 0.0) + now - self._t
        self._phase, self._t = phase, now

    def on_session_begin(self, state, control):
        self._mark("starting")

    def on_step(self, state, control):
        if state.phase != self._phase:
            self._mark(state.phase)

    def on_session_end(self, state, control, summary):
        self._mark(None)


TIMED_CALLS = ("prepare_teacher", "compute_teacher_outputs", "predict_logits", "evaluate", "measure_latency")


@contextlib.contextmanager
def _timing(module, names, clock: PhaseClock, into: dict):
    """Time every call of the functions `names` that `module` imported, by session phase, inside the block.

    Only the benchmark's process is touched: the names are put back afterwards."""
    originals = {n: getattr(module, n) for n in names}

    def wrap(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            conf = getattr(a[0], "config", None) if a else None
            what = f"{name}[{conf.num_hidden_layers}L]" if hasattr(conf, "num_hidden_layers") else name
            try:
                return fn(*a, **k)
            finally:
                key = f"{clock._phase}: {what}"      # the phase the call ended in; [6L] = the teacher
                into[key] = into.get(key, 0.0) + time.perf_counter() - t0
        return wrapper
    for n, fn in originals.items():
        setattr(module, n, wrap(n, fn))
    try:
        yield
    finally:
        for n, fn in originals.items():
            setattr(module, n, fn)


def timed_session(cfg: SessionConfig, root: Path) -> dict:
    from distill_core import trainer
    store = RunStore(root)
    clock = PhaseClock()
    calls: dict[str, float] = {}
    t0 = time.perf_counter()
    with _timing(trainer, [n for n in TIMED_CALLS if hasattr(trainer, n)], clock, calls):
        run_id = run_session(cfg, store, callbacks=[clock])
    wall = time.perf_counter() - t0
    run = store.open(run_id)
    summary = run.summary() or {}
    metrics = run.metrics()

    def total(name):
        found = [v for k, v in calls.items() if k.split(": ", 1)[1].split("[")[0] == name]
        return sum(found) if found else None
    return {"wall_s": wall, "summary_wall_s": summary.get("wall_s"), "status": summary.get("status"),
            "teacher_path": summary.get("teacher_path"), "teacher_cached": summary.get("teacher_cached"),
            "accuracy": summary.get("accuracy"), "phases": {k: round(v, 2) for k, v in clock.phases.items()},
            "calls": {k: round(v, 2) for k, v in calls.items()},
            "prepare_teacher_s": total("prepare_teacher"), "teacher_outputs_s": total("compute_teacher_outputs"),
            "metrics": metrics, "epochs": cfg.train.epochs, "students": sorted({m["student"] for m in metrics})}


def session_for_json(d: dict) -> dict:
    """A timed session without its bulky per-epoch attention numbers."""
    out = {k: v for k, v in d.items() if k != "metrics"}
    out["epochs_timing"] = [{k: m.get(k) for k in ("epoch", "student", "time_s", "val_accuracy", "timing")}
                            for m in d.get("metrics", [])]
    return out


def print_session(d: dict) -> None:
    say(f"  wall {fmt_s(d['wall_s'])} ({d['status']}; teacher fine-tune "
        f"{'cached' if d['teacher_cached'] else 'NOT cached: fine-tuned in this session'})")
    say("  phases: " + ", ".join(f"{k} {fmt_s(v)}" for k, v in d["phases"].items()))
    say("  calls, by the phase they ended in ([6L]: a 6-layer model): " + ", ".join(f"{k} {fmt_s(v)}" for k, v in d["calls"].items()))


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


def recording_by_functions(setup: Setup, run, steps: dict) -> dict:
    """Without a session: time the engine's recording and evaluation functions once, against an epoch of steps."""
    from distill_core.evaluate import evaluate
    from distill_core.models import set_attention_backend
    from distill_core.trainer import Session as S
    cfg, device = setup.cfg, setup.device
    sess = S(cfg, run)
    obj = cfg.objectives
    torch.manual_seed(cfg.train.seed)
    model = build_student(cfg.student, setup.teacher, setup.splits.num_labels, None).to(device)
    _, s_heads = num_layers_heads(model)
    pairs_teacher = mapping.layer_map(obj.layer_map, setup.t_layers, cfg.student.layers)
    sess.device, sess.pad, sess.s_heads = device, setup.pad, s_heads
    sess.pairs = [(t, s) for s, t in enumerate(pairs_teacher)]
    sess.head_rule = mapping.resolve_head_rule(obj.head_rule, setup.t_heads, s_heads)
    sess.probe_ids = [setup.val_ids[i] for i in setup.splits.probe_indices]
    sess.teacher_probe = sess._probe_maps(setup.teacher)
    rec, ev = [], []
    for _ in range(3):
        set_attention_backend(model, eager=False)
        t0 = time.perf_counter()
        evaluate(model, setup.val_ids, setup.splits.val_labels, setup.pad, device,
                 mixed_precision=cfg.train.mixed_precision)
        t1 = time.perf_counter()
        maps = sess._probe_maps(model)
        run.write_attention("distilled_e1", maps)
        sess._compare(maps)
        t2 = time.perf_counter()
        ev.append(t1 - t0)
        rec.append(t2 - t1)
    train_epoch = steps["distilled_step_s"] * math.ceil(len(setup.train_ids) / cfg.train.batch_size)
    return {"record_s": median(rec), "eval_s": median(ev), "train_epoch_s_estimate": train_epoch,
            "record_over_train": median(rec) / train_epoch, "eval_over_train": median(ev) / train_epoch}


# ---- 3. the hand-written loop -------------------------------------------------------------------------------
def hand_loop(cfg: SessionConfig, splits, teacher_path: str, epochs: int) -> dict:
    """What a user would write without the studio: pad to max_length, recompute the teacher every step."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup
    times = {"epochs": {}, "eval": {}}
    t_start = time.perf_counter()
    obj, tr, sc = cfg.objectives, cfg.train, cfg.student
    temp = obj.temperature
    w = obj.losses
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
    from app import charts
    rng = np.random.default_rng(0)
    out = {}
    for t in (32, 64):
        tokens = None
        if setup is not None:
            # a real text, cut to t tokens: the teacher's maps of all 6 layers x 12 heads
            text = max(setup.splits.val_texts, key=len)
            ids = setup.tokenizer(text, truncation=True, max_length=t)["input_ids"]
            while len(ids) < t:
                ids = ids[:-1] + setup.tokenizer(text, add_special_tokens=False)["input_ids"] + ids[-1:]
                ids = ids[:t - 1] + [ids[-1]]
            from distill_core.capture import AttentionCapture
            from distill_core.models import set_attention_backend
            set_attention_backend(setup.teacher, eager=True)
            setup.teacher.eval()
            with torch.inference_mode(), AttentionCapture(setup.teacher) as cap:
                setup.teacher(input_ids=torch.tensor([ids], device=setup.device))
                t_maps = cap.pop_stacked()[0].float().cpu().numpy()        # (6, 12, T, T)
            tokens = setup.tokenizer.convert_ids_to_tokens(ids)
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
            figs = [charts.heatmap_triptych(tm[:3].mean(0), sm[0], tokens, titles=("teacher", "student", "diff")),
                    charts.head_grid(tm, tokens, "teacher layer", cols=6, zmax=zmax, highlight=[0, 1, 2]),
                    charts.head_grid(sm, tokens, "student layer", cols=6, zmax=zmax, highlight=[0]),
                    charts.heatmap_triptych(tm.mean(0), sm.mean(0), tokens, titles=("teacher", "student", "diff"))]
            return sum(len(f.to_json()) for f in figs)

        def full_grid():
            """All 6 teacher layers x 12 heads in one grid, plus the triptych."""
            figs = [charts.head_grid(t_maps, tokens, "teacher, all layers"),
                    charts.heatmap_triptych(t_maps[tl].mean(0), s_maps[sl].mean(0), tokens)]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer batches, epochs and training examples (~3-4 min)")
    ap.add_argument("--skip-session", action="store_true",
                    help="no whole sessions: skip measures 3 and 4, estimate 2 from the engine's functions")
    ap.add_argument("--skip-uncached", action="store_true",
                    help="run the default session (measure 4, full mode) with the usual teacher cache; without this "
                         "flag it runs with an empty one, so its teacher is fine-tuned again (1-2 more minutes) and "
                         "the cached wall time is derived by swapping the fine-tune for the cached load")
    ap.add_argument("--json", metavar="OUT", help="also write all results to this JSON file")
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
        f"{cfg.student.layers}x{cfg.student.heads}x{cfg.student.hidden}; losses {cfg.objectives.losses}")

    tmp = Path(tempfile.mkdtemp(prefix="ads-bench-"))
    try:
        section("set-up")
        setup = Setup(cfg, device)
        say(f"data + tokens {fmt_s(setup.data_s)}; teacher ready in {fmt_s(setup.teacher_s)} "
            f"(fine-tune {'cached' if setup.teacher_cached else 'NOT cached: fine-tuned now'}; {setup.teacher_path})")
        res["setup"] = {"data_s": setup.data_s, "teacher_s": setup.teacher_s, "teacher_cached": setup.teacher_cached,
                        "teacher_path": setup.teacher_path, "train_examples": len(setup.train_ids)}
        scratch = RunStore(tmp / "scratch").create({})

        section("5. explorer figures (app/charts.py + fig.to_json())")
        res["charts"] = bench_charts(setup, m["chart_repeats"])
        for k, v in res["charts"].items():
            say(f"  {k:<32} median {fmt_s(v['median_s'])} (min {fmt_s(v['min_s'])}, max {fmt_s(v['max_s'])}, "
                f"{v['json_bytes'] / 1e6:.2f} MB JSON, {v['builds']} builds)")

        section("1. distillation step / plain step (engine's Session._train_step, same batches, interleaved)")
        res["steps"] = bench_steps(setup, device, m["warmup"], m["steps"], scratch)
        s = res["steps"]
        say(f"  {s['steps']} steps after {s['warmup']} warm-up, batch {s['batch_size']}, padded length median "
            f"{s['padded_length_median']:.0f} (range {s['padded_length_range']}) on {s['device']}")
        say(f"  distilled {fmt_s(s['distilled_step_s'])}  plain {fmt_s(s['plain_step_s'])}  ratio of medians "
            f"{s['ratio_of_medians']:.2f}  median of per-batch ratios {s['median_of_ratios']:.2f}")
        say("  breakdown (same batches, one student; vs the plain SDPA step):")
        for k, v in s["breakdown"].items():
            say(f"    {k:<24} {fmt_s(v['step_s']):>8}  x{v['vs_sdpa']:.2f}")
        if torch.cuda.is_available() and device.type != "cuda":
            section("1b. the same on the GPU (bf16 autocast, pinned teacher outputs)")
            gcfg = cfg.with_overrides({"train.device": "cuda"})
            gsetup = Setup(gcfg, torch.device("cuda"))
            res["steps_cuda"] = g = bench_steps(gsetup, torch.device("cuda"), max(10, m["warmup"]),
                                                max(50, m["steps"]), scratch)
            say(f"  distilled {g['distilled_samples_per_s']:.0f} samples/s  plain {g['plain_samples_per_s']:.0f} "
                f"samples/s  ratio {g['ratio_of_medians']:.2f}")
            gsetup.teacher.cpu()
            del gsetup
            setup.teacher.to(device)

        if args.skip_session:
            section("2. recording / training (engine functions, no session)")
            res["recording_functions"] = r = recording_by_functions(setup, scratch, res["steps"])
            say(f"  record {fmt_s(r['record_s'])}  eval {fmt_s(r['eval_s'])}  vs an epoch of distilled steps "
                f"{fmt_s(r['train_epoch_s_estimate'])}: record/train {r['record_over_train']:.1%}, "
                f"eval/train {r['eval_over_train']:.1%}")
        else:
            section(f"3. our session (no baseline, {cfg.train.epochs} epochs) vs a hand-written loop")
            ours = timed_session(cfg.with_overrides({"train.baseline": False}), tmp / "runs")
            print_session(ours)
            res["ours"] = session_for_json(ours)
            hand = hand_loop(cfg, setup.splits, ours["teacher_path"], cfg.train.epochs)
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
                              "teacher_finetune_cached": ours["teacher_cached"],
                              "val_accuracy_ours": [x["val_accuracy"] for x in ours["metrics"] if x["epoch"] > 0],
                              "val_accuracy_hand": list(hand["val_accuracy"].values()),
                              "test_accuracy_ours": (ours["accuracy"] or {}).get("distilled"),
                              "test_accuracy_hand": hand["test_accuracy"]}
            v = res["vs_hand"]
            say(f"  hand-written loop: set-up {fmt_s(hand['setup_s'])}, test accuracy {fmt_s(hand['test_s'])}")
            say(f"  whole run: ours {fmt_s(ours_total)} (incl. caching the teacher's outputs, "
                f"{fmt_s(v['teacher_outputs_s'])}{'' if ours['teacher_cached'] else '; excl. the teacher fine-tune'})"
                f" / hand {fmt_s(hand['wall_s'])} = {v['whole_run_ratio']:.2f}")
            say(f"  accuracy: ours val {[round(x, 3) for x in v['val_accuracy_ours']]} test "
                f"{v['test_accuracy_ours']:.3f}; hand val {[round(x, 3) for x in v['val_accuracy_hand']]} test "
                f"{v['test_accuracy_hand']:.3f}")
            rec_source, rec_label = ours, "the session of measure 3"

            if mode == "full":
                dcfg = SessionConfig().with_overrides({"train.device": args.device})
                fresh = None if args.skip_uncached else tmp / "fresh-cache"
                section("4. default session (baseline on, 4 epochs, train 3,000)"
                        + ("" if fresh is None else f" with an empty teacher cache ({fresh})"))
                old = os.environ.get("ADS_CACHE_DIR")
                if fresh is not None:
                    os.environ["ADS_CACHE_DIR"] = str(fresh)
                try:
                    d = timed_session(dcfg, tmp / "runs")
                finally:
                    if old is None:
                        os.environ.pop("ADS_CACHE_DIR", None)
                    else:
                        os.environ["ADS_CACHE_DIR"] = old
                print_session(d)
                say(f"  test accuracy: {d['accuracy']}")
                res["session"] = {"label": "default session", **session_for_json(d)}
                if not d["teacher_cached"] and ours["teacher_cached"] and cfg.data == dcfg.data:
                    # the same session with the teacher cached: swap the fine-tune for the cached load measured in 3
                    res["session"]["cached_wall_s"] = d["wall_s"] - d["prepare_teacher_s"] + ours["prepare_teacher_s"]
                    say(f"  with the teacher cached: {fmt_s(res['session']['cached_wall_s'])} (its fine-tune "
                        f"{fmt_s(d['prepare_teacher_s'])} replaced by the cached load measured in 3, "
                        f"{fmt_s(ours['prepare_teacher_s'])})")
                rec_source, rec_label = d, "the default session"
            else:
                section("4. default session: skipped in quick mode (run without --quick)")

            section(f"2. recording / training per epoch (metrics.jsonl timing of {rec_label})")
            res["recording"] = rec = recording_ratios(rec_source["metrics"])
            if not rec:
                say("  the run's metrics.jsonl has no timing: timing the engine's functions instead")
                res["recording_functions"] = r = recording_by_functions(setup, scratch, res["steps"])
                say(f"  record {fmt_s(r['record_s'])}  eval {fmt_s(r['eval_s'])}  vs an epoch of distilled steps "
                    f"{fmt_s(r['train_epoch_s_estimate'])}")
            for name, r in rec.items():
                say(f"  {name:<10} record/train per epoch "
                    + " ".join(f"{x:.1%}" for x in r["record_over_train"])
                    + f"  (all epochs {r['record_over_train_total']:.1%}, with epoch 0 "
                      f"{r['record_over_train_total_with_epoch0']:.1%});  eval/train "
                    + " ".join(f"{x:.1%}" for x in r["eval_over_train"])
                    + "; train_s " + " ".join(f"{x:.1f}" for x in r["train_s"])
                    + ", record_s " + " ".join(f"{x:.2f}" for x in r["record_s"]))
    finally:
        import shutil
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
    rec = res.get("recording")
    if rec:
        for name, r in rec.items():
            worst = max(r["record_over_train"]) if r["record_over_train"] else float("nan")
            add(f"2. record / train per epoch ({name}, worst epoch)", f"{worst:.1%} (all epochs "
                f"{r['record_over_train_total']:.1%}; +epoch 0: {r['record_over_train_total_with_epoch0']:.1%})",
                "<= 5%", met(worst, TARGETS["record"]))
            add(f"2'. eval / train per epoch ({name}, for reference)", f"{max(r['eval_over_train']):.1%} worst, "
                f"{r['eval_over_train_total']:.1%} all epochs", "-", "-")
    rf = res.get("recording_functions")
    if rf:
        add("2. record / train per epoch (engine functions, estimated)", f"{rf['record_over_train']:.1%}",
            "<= 5%", met(rf["record_over_train"], TARGETS["record"]))
        add("2'. eval / train per epoch (estimated, for reference)", f"{rf['eval_over_train']:.1%}", "-", "-")
    v = res.get("vs_hand")
    if v:
        add("3. our epoch / hand-written epoch (epoch >= 2, worst)",
            f"{v['ratio_epoch2plus_max']:.2f}" if v["ratio_epoch2plus_max"] else "n/a", f"< {TARGETS['vs_hand']}",
            met(v["ratio_epoch2plus_max"], TARGETS["vs_hand"], strict=True))
        add("3'. our whole session / hand-written whole run", f"{v['whole_run_ratio']:.2f} ({fmt_s(v['ours_wall_s'] if v['teacher_finetune_cached'] else v['ours_wall_without_finetune_s'])} / "
            f"{fmt_s(v['hand_wall_s'])}; teacher fine-tune {'cached' if v['teacher_finetune_cached'] else 'excluded'})",
            "-", "-")
    d = res.get("session")
    if d:
        mc = res["machine"]
        cached = d["teacher_cached"]
        add("4. default session wall time" + ("" if cached else " (first session: teacher fine-tuned)"),
            f"{fmt_s(d['wall_s'])} ({mc['date'][:10]}, {mc['cpu']}, {mc['cores']} cores, torch {mc['torch']})",
            "absolute", "-")
        if d.get("cached_wall_s"):
            add("4'. default session wall time, teacher cached", f"{fmt_s(d['cached_wall_s'])} (fine-tune "
                f"{fmt_s(d['prepare_teacher_s'])} swapped for the cached load)", "absolute", "-")
    c = res.get("charts")
    if c:
        for k, x in c.items():
            add(f"5. figures: {k} (median of {x['builds']})", fmt_s(x["median_s"]), "< 0.5 s",
                met(x["median_s"], TARGETS["charts"], strict=True))
    return rows


if __name__ == "__main__":
    sys.exit(main())
