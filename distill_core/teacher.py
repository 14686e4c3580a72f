"""Preparing the teacher (a seeded fine-tune, cached on disk once per machine) and caching its outputs.

The default teacher is a sentence encoder with a new, untrained classifier head, so it is fine-tuned on
the session's training split first. The result is saved (safetensors) under the cache folder keyed by
everything that affects it, so every later session with the same teacher and data reuses it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import mapping
from .batching import collate, make_batches
from .capture import AttentionCapture
from .config import SessionConfig, TeacherConfig
from .data import Splits
from .evaluate import autocast_for
from .errors import ModelError
from .models import (check_attention, load_classifier, load_tokenizer, preflight, resolve_source,
                     set_attention_backend)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]   # (phase, done, total) -> None; may raise to stop


def cache_root() -> Path:
    return Path(os.environ.get("ADS_CACHE_DIR", Path.home() / ".cache" / "attention-distillation-studio"))


@dataclass
class PreparedTeacher:
    model: torch.nn.Module
    tokenizer: object
    path: str          # folder the weights were loaded from (cache folder after fine-tuning)
    finetuned: bool
    cached: bool       # True when the fine-tuned teacher came from the cache


def teacher_cache_key(cfg: TeacherConfig, splits: Splits, max_length: int) -> str:
    path, _ = resolve_source(cfg.source)
    ident = [path, cfg.finetune_epochs, cfg.finetune_lr, cfg.finetune_batch_size, splits.fingerprint, max_length,
             cfg.seed, 1]  # the last item is the version of this recipe
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock between threads and processes (flock is per open file, so threads block too)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "w")
    except OSError as e:
        raise ModelError(f"cannot write the teacher cache {path.parent}: {e}; set ADS_CACHE_DIR to a writable "
                         f"folder") from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare_teacher(config: SessionConfig, splits: Splits, train_ids: list[list[int]], device: torch.device,
                    progress: Progress | None = None, tokenizer=None) -> PreparedTeacher:
    """Load the teacher; fine-tune it on the training split when its head is new (or when asked), with caching.

    Everything that can be refused without training (attention that cannot be read, a student that does not fit
    the teacher) is refused here, before the fine-tune."""
    tcfg = config.teacher
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(tcfg.source)   # the caller's, if it has one
    model, head_new = load_classifier(tcfg.source, splits.num_labels)
    check_attention(model, tokenizer, f"teacher {tcfg.source}")
    preflight(config, model, tokenizer)
    needs_ft = tcfg.finetune == "always" or (tcfg.finetune == "auto" and head_new)
    if not needs_ft or tcfg.finetune_epochs == 0:
        return PreparedTeacher(model.to(device), tokenizer, resolve_source(tcfg.source)[0], False, False)

    key = teacher_cache_key(tcfg, splits, config.data.max_length)
    folder = cache_root() / "teachers"
    target = folder / key
    with _file_lock(folder / f"{key}.lock"):
        cached = None
        if (target / "config.json").is_file():
            try:
                cached, _ = load_classifier(str(target), splits.num_labels)
            except ModelError as e:
                log.warning("the cached teacher in %s is damaged and is fine-tuned again: %s", target, e)
                shutil.rmtree(target, ignore_errors=True)
        if cached is None:
            log.info("fine-tuning the teacher (one time, cached in %s)", target)
            torch.manual_seed(tcfg.seed)
            model, _ = load_classifier(tcfg.source, splits.num_labels)  # the same fresh head every time
            model.to(device)
            finetune(model, train_ids, splits.train_labels, tokenizer.pad_token_id, tcfg, tcfg.seed,
                     device, config.train.mixed_precision, progress)
            tmp = target.with_name(target.name + ".tmp")
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
                (tmp / "distill_meta.json").write_text(json.dumps({"source": tcfg.source, "key": key,
                                                                   "data": splits.fingerprint}))
                os.replace(tmp, target)
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                raise ModelError(f"could not save the fine-tuned teacher in {folder}: {e}; free disk space or set "
                                 f"ADS_CACHE_DIR to a writable folder") from None
            model, _ = load_classifier(str(target), splits.num_labels)
        else:
            model = cached
    check_attention(model, tokenizer, f"teacher {tcfg.source}")
    return PreparedTeacher(model.to(device), tokenizer, str(target), True, cached is not None)


def finetune(model, ids, labels, pad_id, tcfg: TeacherConfig, seed: int, device, mixed_precision: bool,
             progress: Progress | None) -> None:
    set_attention_backend(model, eager=False)   # attention is not read here: fast path
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.finetune_lr, weight_decay=0.01)
    steps_per_epoch = (len(ids) + tcfg.finetune_batch_size - 1) // tcfg.finetune_batch_size
    total = steps_per_epoch * tcfg.finetune_epochs
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    y = torch.tensor(labels, dtype=torch.long)
    model.train()
    step = 0
    for epoch in range(tcfg.finetune_epochs):
        for index in make_batches([len(x) for x in ids], tcfg.finetune_batch_size, seed=seed * 1000 + epoch):
            input_ids, mask = collate(ids, index, pad_id)
            with autocast_for(device, mixed_precision):
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            loss = F.cross_entropy(logits.float(), y[index].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if progress:
                progress("prepare teacher", step, total)
    model.eval()
    set_attention_backend(model, eager=True)


@dataclass
class TeacherOutputs:
    """What the teacher says about each training example, computed once and reused every epoch.

    logits: (N, C) float32. attention[i]: (P, H', t_i, t_i) float16 for the mapped layers, already reduced to
    the heads the student is compared on. hidden[i]: (P, t_i, Dt) float16.
    """
    logits: torch.Tensor
    attention: list[torch.Tensor] | None
    hidden: list[torch.Tensor] | None

    def batch(self, index, t: int, device):
        from .batching import pad_square, pad_tokens
        pin = device.type == "cuda"     # pinned host memory lets the copy overlap with compute

        def move(x):
            return (x.pin_memory() if pin else x).to(device, non_blocking=True)
        logits = move(self.logits[index])
        att = move(pad_square([self.attention[i] for i in index], t)).float() if self.attention is not None else None
        hid = move(pad_tokens([self.hidden[i] for i in index], t)).float() if self.hidden is not None else None
        return logits, att, hid

    def nbytes(self) -> int:
        n = self.logits.numel() * 4
        for group in (self.attention, self.hidden):
            if group is not None:
                n += sum(x.numel() * 2 for x in group)
        return n


@torch.inference_mode()
def compute_teacher_outputs(teacher, ids: list[list[int]], pad_id: int, device, pairs_teacher: list[int],
                            head_rule: str, student_heads: int, need_attention: bool, need_hidden: bool,
                            batch_size: int = 64, mixed_precision: bool = True,
                            progress: Progress | None = None) -> TeacherOutputs:
    """One inference pass of the teacher over `ids` (length-sorted batches)."""
    teacher.eval()
    set_attention_backend(teacher, eager=need_attention)
    n = len(ids)
    logits = torch.zeros((n, teacher.config.num_labels))
    att = [None] * n if need_attention else None
    hid = [None] * n if need_hidden else None
    batches = make_batches([len(x) for x in ids], batch_size, seed=None, buckets=True)
    capture = AttentionCapture(teacher, pairs_teacher) if need_attention else contextlib.nullcontext()
    with capture:
        for k, index in enumerate(batches):
            input_ids, mask = collate(ids, index, pad_id)
            with autocast_for(device, mixed_precision):
                out = teacher(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                              output_hidden_states=need_hidden)
            logits[torch.as_tensor(index)] = out.logits.float().cpu()
            if need_attention:
                maps = mapping.adapt_teacher(capture.pop_stacked().float(), head_rule, student_heads)  # (B,P,H',T,T)
                maps = maps.to(torch.float16).cpu()
            if need_hidden:
                hs = torch.stack([out.hidden_states[l + 1] for l in pairs_teacher], 1).to(torch.float16).cpu()
            for j, i in enumerate(index):
                t = len(ids[i])
                if need_attention:
                    att[i] = maps[j, :, :, :t, :t].clone()
                if need_hidden:
                    hid[i] = hs[j, :, :t].clone()
            if progress:
                progress("teacher outputs", k + 1, len(batches))
    set_attention_backend(teacher, eager=True)
    return TeacherOutputs(logits, att, hid)


def teacher_evaluation(prepared: PreparedTeacher, key: str, compute: Callable[[], tuple[float, float]]):
    """(accuracy, loss) of the teacher, computed once per cached teacher and split.

    A fine-tuned teacher's cache folder is keyed by its data split and max_length, so its accuracy on that
    split never changes: it is kept in the folder's distill_eval.json. Other teachers are evaluated each time.
    """
    if not prepared.finetuned:
        return compute()
    path = Path(prepared.path) / "distill_eval.json"
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        known = {}
    if isinstance(known.get(key), list) and len(known[key]) == 2:
        return tuple(known[key])
    value = compute()
    from .store import atomic_write_json
    try:
        atomic_write_json(path, {**known, key: list(value)})
    except OSError as e:  # a read-only cache only costs the next session this evaluation
        log.warning("could not save the teacher's evaluation in %s: %s", path, e)
    return value


def teacher_size_bytes(path: str) -> int:
    p = Path(path)
    files = list(p.glob("*.safetensors")) or list(p.glob("*.bin"))
    return int(sum(f.stat().st_size for f in files)) if files else 0

