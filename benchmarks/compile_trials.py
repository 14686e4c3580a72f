#!/usr/bin/env python
"""What the compilers and number formats the ecosystem offers buy on this machine, on the default session's own
models and batches: each side's step interleaved with the other's on the same batches, medians after a warm-up.

    .venv/bin/python benchmarks/compile_trials.py            # ~4 min on 2 cores, teacher cached
    .venv/bin/python benchmarks/compile_trials.py --json out.json

1. students' step: eager / torch.compile (inductor, dynamic shapes: the batches are grouped by length, so every
   batch has its own length) — the plain step on hard labels and the distillation step's student forward + backward.
2. the teacher's fine-tune step (MiniLM-L6, batch 32): float32 / bfloat16 autocast on the CPU (AMX where the CPU
   has it) / torch.compile.
3. dropout: the student's plain step with its dropout (0.1) / without (what dropout's random draws cost).

Each trial also checks how far the faster side's loss moves from the reference side's on the same batch and
weights (bf16 rounds; compile reorders sums). What wins here is reported in README › Performance, won or lost.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from distill_core.batching import collate, make_batches  # noqa: E402
from distill_core.config import SessionConfig  # noqa: E402
from distill_core.models import load_classifier, set_attention_backend  # noqa: E402
from distill_core.optim import make_optimizer  # noqa: E402
from distill_core.store import RunStore  # noqa: E402

from session_bench import Setup, interleaved, machine, say, variant  # noqa: E402


def student_trials(setup: Setup, warmup: int, steps: int) -> dict:
    p, tr = setup.p, setup.cfg.train
    base = variant(p, "baseline")
    batches = p.modality.batches("train", tr.batch_size, seed=7, buckets=tr.length_buckets)[:warmup + steps]
    data = [p.modality.batch("train", i, p.device) for i in batches]

    def make(dropout: bool, compiled: bool):
        model = copy.deepcopy(base.model)
        set_attention_backend(model, eager=False)
        if not dropout:
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
        opt = make_optimizer(model, [{"params": list(model.parameters())}], tr.lr, tr.weight_decay, p.device)
        fwd = torch.compile(model, dynamic=True) if compiled else model

        def step(b):
            model.train()
            loss = F.cross_entropy(fwd(**b.inputs).logits.float(), b.labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)
        return step

    t0 = time.perf_counter()
    compiled = make(True, True)
    compiled(data[0])                          # the first compile
    compile_s = time.perf_counter() - t0
    eager = make(True, False)
    no_dropout = make(False, False)
    med = interleaved({"eager": eager, "compiled": compiled, "no dropout": no_dropout}, data, warmup)
    lengths = sorted({b.length for b in data})
    return {"step_s": med, "compile_first_s": compile_s, "batches": len(data) - warmup, "lengths": len(lengths),
            "compiled_vs_eager": med["compiled"] / med["eager"], "no_dropout_vs_eager": med["no dropout"] / med["eager"]}


def teacher_trials(cfg: SessionConfig, ids, labels, pad_id: int, warmup: int, steps: int) -> dict:
    batches = make_batches([len(x) for x in ids], cfg.teacher.finetune_batch_size, seed=0)[:warmup + steps]
    y = torch.tensor(labels)

    def make(bf16: bool, compiled: bool):
        torch.manual_seed(0)
        model, _ = load_classifier(cfg.teacher.source, 2)
        set_attention_backend(model, eager=False)
        opt = make_optimizer(model, [{"params": list(model.parameters())}], cfg.teacher.finetune_lr, 0.01,
                             torch.device("cpu"))
        fwd = torch.compile(model, dynamic=True) if compiled else model
        losses = []

        def step(index):
            model.train()
            input_ids, mask = collate(ids, index, pad_id)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = fwd(input_ids=input_ids, attention_mask=mask).logits
            loss = F.cross_entropy(logits.float(), y[index])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))
        step.losses = losses
        return step

    sides = {"float32": make(False, False), "bf16 autocast": make(True, False)}
    t0 = time.perf_counter()
    sides["compiled"] = make(False, True)
    sides["compiled"](batches[0])
    compile_s = time.perf_counter() - t0
    med = interleaved(sides, batches[1:], warmup)
    ref = sides["float32"].losses
    drift = {n: max(abs(a - b) for a, b in zip(ref, s.losses[-len(ref):])) for n, s in sides.items() if n != "float32"}
    return {"step_s": med, "compile_first_s": compile_s, "batches": len(batches) - 1 - warmup,
            "bf16_vs_float32": med["bf16 autocast"] / med["float32"],
            "compiled_vs_float32": med["compiled"] / med["float32"], "max_loss_difference": drift}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    res = {"machine": machine()}
    say(f"# compile trials | {res['machine']['cpu']} | {res['machine']['cores']} cores | torch {res['machine']['torch']}")
    cfg = SessionConfig()
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(cfg, RunStore(Path(tmp)).create(cfg.to_dict()))
        say("1. students' plain step: eager / torch.compile(dynamic=True) / no dropout")
        res["student"] = s = student_trials(setup, 5, args.steps)
        say(f"  {json.dumps({k: round(v * 1000, 1) for k, v in s['step_s'].items()})} ms; compiled/eager "
            f"{s['compiled_vs_eager']:.2f} (first compile {s['compile_first_s']:.0f} s, {s['lengths']} lengths); "
            f"no dropout/eager {s['no_dropout_vs_eager']:.2f}")
        m = setup.p.modality
        say("2. the teacher's fine-tune step: float32 / bf16 autocast / torch.compile")
        res["teacher"] = t = teacher_trials(cfg, m.ids["train"], m.labels["train"], m.pad_id, 3, max(10, args.steps // 2))
        say(f"  {json.dumps({k: round(v * 1000, 1) for k, v in t['step_s'].items()})} ms; bf16/float32 "
            f"{t['bf16_vs_float32']:.2f}, compiled/float32 {t['compiled_vs_float32']:.2f} (first compile "
            f"{t['compile_first_s']:.0f} s); largest loss difference from float32 on the same steps "
            f"{json.dumps({k: round(v, 4) for k, v in t['max_loss_difference'].items()})}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
