"""Reading a finished run back: its models for live inspection (distill_core.reopen loads them), attention views
assembled from the store, and a layer map suggested from its recorded attention.

Layouts follow BertViz: one example's attention is an array `(layers, heads, T, T)`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import mapping
from .capture import AttentionCapture
from .errors import ConfigError, RunStoreError
from .metrics import METRICS, map_metric
from .models import set_attention_backend
from .reopen import RunModels, reopen
from .store import Run, RunStore
from .vocab import TEACHER, run_reference, run_variants


def load_run_models(run: Run, weights: str = "final") -> RunModels:
    """The tokenizer, the teacher(s) (from the folders the run used) and the trained students (from the run folder):
    their final weights (the last finished epoch) or, with weights="best", their best epoch's by validation
    accuracy. reopen(run, weights).run_models()."""
    return reopen(run, weights).run_models()


@torch.inference_mode()
def attention_for_text(rm: RunModels, text: str) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Tokens, full attention per model (L, H, T, T) and class probabilities per model, for one text."""
    text = (text or "").strip()
    if not text:
        raise ValueError("type a sentence first")
    enc = rm.tokenizer([text], truncation=True, max_length=rm.max_length, return_tensors="pt")
    tokens = rm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    maps, probs = {}, {}
    for name, model in rm.models.items():
        set_attention_backend(model, eager=True)
        with AttentionCapture(model) as cap:
            out = model(**enc)
            maps[name] = cap.pop_stacked()[0].float().numpy()          # (L, H, T, T)
        probs[name] = torch.softmax(out.logits[0].float(), -1).numpy()
    return tokens, maps, probs


def compare_pair(teacher_map: np.ndarray, student_map: np.ndarray, head_rule: str, student_heads: int) -> dict:
    """Divergences of one teacher layer vs one student layer of one example.

    teacher_map (Ht, T, T), student_map (Hs, T, T) -> metric -> (H',) per compared head.
    """
    p = mapping.adapt_teacher(torch.tensor(np.asarray(teacher_map, np.float32)), head_rule, student_heads)
    q = mapping.adapt_student(torch.tensor(np.asarray(student_map, np.float32)), head_rule)
    return {m: map_metric(m, p.numpy(), q.numpy()) for m in METRICS}


def teacher_view(teacher_map: np.ndarray, head_rule: str, student_heads: int, head: int) -> np.ndarray:
    """The teacher map that student head `head` is compared with: (Ht, T, T) -> (T, T)."""
    p = mapping.adapt_teacher(torch.tensor(np.asarray(teacher_map, np.float32)), head_rule, student_heads)
    return p[min(head, p.shape[0] - 1)].numpy()


def teacher_heads_for(student_head: int, head_rule: str, teacher_heads: int, student_heads: int) -> list[int]:
    """Which teacher heads a student head is compared with under the run's head rule."""
    if head_rule == "direct":
        return [student_head]
    if head_rule == "mean":
        return list(range(teacher_heads))
    g = teacher_heads // student_heads
    return list(range(student_head * g, (student_head + 1) * g))


def divergence_table(run: Run, student: str) -> list[dict]:
    """Per epoch and mapped pair: mean of each metric over compared heads (rows for a table or chart)."""
    probe = run.probe() or {}
    rows = []
    for rec in run.metrics():
        if rec.get("student") != student:
            continue
        for k, (t, s) in enumerate(probe.get("pairs", [])):
            row = {"epoch": rec["epoch"], "teacher_layer": t, "student_layer": s}
            for m in METRICS:
                row[m] = float(np.mean(rec["attention"][m][k]))
            rows.append(row)
    return rows


# ---- a suggested layer map ----------------------------------------------------------------------------------------
SUGGEST_NONE = ("layer_map: suggested needs a finished run with the same teacher, data and student shape to suggest "
                "from; run one first (its baseline student is used), or give the layers as a list like 1,3,5")


def suggest_for_run(run: Run, variant: str | None = None) -> dict | None:
    """mapping.suggest_map on a run's probe maps: the teacher's against one variant's at its last recorded epoch.

    The variant is by default the run's reference (the labels-only baseline, else the first variant): a student
    that learnt on its own shows where its layers naturally resemble the teacher's. Adds "run_id", "variant",
    "epoch", the layers the run used ("used", teacher layer per student layer) and their mean JS ("used_cost").
    None when the variant has no trained epoch yet (epoch 0, before training, does not count)."""
    probe = run.probe()
    if not probe:
        return None
    variants = run_variants(probe, run.metrics())
    if variant is None:
        variant = run_reference(probe, variants) or (variants[0] if variants else None)
    elif variant not in variants:
        raise RunStoreError(f"run {run.id} has no variant {variant!r}; its variants are {', '.join(variants)}")
    epochs = [e for e in run.attention_epochs(variant) if e > 0] if variant else []
    if not epochs:
        return None
    teacher = run.read_attention(TEACHER)
    student = run.read_attention(f"{variant}_e{epochs[-1]}")
    out = mapping.suggest_map(teacher, student, probe["head_rule"], int(student[0].shape[1]))
    used = [t for t, _ in sorted(probe.get("pairs") or [], key=lambda pair: pair[1])]
    costs = np.asarray(out["costs"])
    used_cost = mapping.map_cost(costs, used) if len(used) == costs.shape[0] else None
    return {**out, "run_id": run.id, "variant": variant, "epoch": epochs[-1], "used": used, "used_cost": used_cost}


def _same_source(a, b) -> bool:
    """Two teacher or data sources name the same thing: equal as written, or the same file or folder."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _run_shape(run: Run) -> dict:
    """What a suggestion depends on: teacher and data source, teacher depth, student layers and heads."""
    cfg, probe = run.config(), run.probe() or {}
    return {"teacher": (cfg.get("teacher") or {}).get("source"), "data": (cfg.get("data") or {}).get("source"),
            "teacher_layers": probe.get("teacher_layers"), "student_layers": probe.get("student_layers"),
            "student_heads": probe.get("student_heads")}


def resolve_suggested(store: RunStore, teacher_source: str, teacher_layers: int, student_layers: int,
                      student_heads: int, data_source: str, run_id: str | None = None) -> tuple[list[int], str]:
    """`layer_map: suggested` as teacher layers (one per student layer), and the id of the run they come from.

    Without run_id: the newest finished run (status done) in the store with the same teacher source, data source,
    teacher depth and student layers and heads, suggested from by suggest_for_run. With run_id: that run, which must
    be finished and have the same teacher and student shape (it may have been trained on other data: naming it is a
    choice). ConfigError when there is none to suggest from, with what to do instead."""
    want = {"teacher_layers": teacher_layers, "student_layers": student_layers, "student_heads": student_heads}
    if run_id is not None:
        try:
            run = store.open(run_id)
            status, shape = run.status().get("status"), _run_shape(run)
        except RunStoreError as e:
            raise ConfigError(f"layer_map: suggested names run {run_id}, which cannot be read: {e}") from None
        if status != "done":
            raise ConfigError(f"layer_map: suggested names run {run_id}, which is {status}, not finished: wait for it "
                              f"or name a finished run")
        if not _same_source(shape["teacher"], teacher_source) or any(shape[k] != v for k, v in want.items()):
            raise ConfigError(
                f"layer_map: suggested names run {run_id}, whose teacher ({shape['teacher']}, "
                f"{shape['teacher_layers']} layers) or student ({shape['student_layers']} layers x "
                f"{shape['student_heads']} heads) differs from this session's ({teacher_source}, {teacher_layers} "
                f"layers; {student_layers} x {student_heads}): name a run with the same teacher and student shape")
        found = suggest_for_run(run)
        if found is None:
            raise ConfigError(f"layer_map: suggested names run {run_id}, which recorded no trained epoch: "
                              f"name another run, or give the layers as a list like 1,3,5")
        return found["layers"], run.id
    candidates = []
    for info in store.list():
        if info.status != "done":
            continue
        run = store.open(info.run_id)
        try:
            shape, ended = _run_shape(run), run.status().get("ended") or info.started or ""
        except RunStoreError:
            continue
        if (_same_source(shape["teacher"], teacher_source) and _same_source(shape["data"], data_source)
                and all(shape[k] == v for k, v in want.items())):
            candidates.append((str(ended), run.id, run))
    for _, _, run in sorted(candidates, key=lambda c: c[:2], reverse=True):     # newest first
        try:
            found = suggest_for_run(run)
        except RunStoreError:          # damaged maps: try the next run
            continue
        if found is not None:
            return found["layers"], run.id
    raise ConfigError(SUGGEST_NONE)
