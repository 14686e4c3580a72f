"""The language-model teacher: a GPT-2 model trained here once on the training passages (with a subword tokenizer
trained on them too) and cached by content, or a causal model folder or hub id with its own tokenizer (fine-tuned
on the passages only when asked); and the teacher's own continuations of the training blocks' openings for
sequence-level KD, sampled once (seeded) and cached beside it.

    cache_root()/teachers/<key>/                   the teacher trained here: config.json, model.safetensors, its
                                                   tokenizer, distill_meta.json (source, key, data, fit)
    cache_root()/teacher_outputs/<key>.safetensors its samples for one training split (sequence-level KD)
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...batching import make_batches
from ... import fit_curve
from ...cache import CacheSlot, data_digest, outputs_dir, read_fit, teachers_dir
from ...config import DEFAULT_TEACHER, MAX_FLOOR_EPOCHS, floor_epochs
from ...errors import ConfigError, ModelError, NonFiniteLossError
from ...evaluate import autocast_for
from ...hub import require_online
from ...models import resolve_source, set_attention_backend
from ...objectives import IGNORED
from ...optim import clip_grad_norm_, make_optimizer, warmup_cosine
from ...sources import source_kind
from ...teacher import PreparedTeacher, model_content_digest
from ..splits import teacher_rows
from ..trained_cache import cached_teacher, cached_token_rows
from ..translation.tokenizer import train_tokenizer
from .data import LMSplits
from .modality import block_inputs, encode_passages, passage_blocks, stream_blocks
from .models import build_gpt2, load_causal_lm, shape_of
from .sampling import sample

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

LM_TEACHER_VERSION = 1
SAMPLES_VERSION = 1
WARMUP = 0.05


def teacher_passages(cfg, splits: LMSplits) -> list[str]:
    """The passages a teacher learns from: the training split, plus the passages no split took with
    teacher.finetune_on "all", in the text's order."""
    return teacher_rows(cfg.teacher.finetune_on, splits.train, splits.extra, splits.teacher_order)


def train_language_model(model, tokenizer, train_blocks: list[list[int]], val_blocks: list[list[int]], *,
                         epochs: int, lr: float, batch_size: int, device, seed: int, patience: int | None = None,
                         progress: Progress | None = None, phase: str = "train teacher") -> dict:
    """Train a causal model in place on blocks of token ids (next-token cross-entropy): AdamW, a linear warm-up then
    cosine decay, shuffled batches. After each epoch the validation perplexity is measured; the weights of the best
    epoch are kept, and training stops after `patience` epochs without a better one. Deterministic for a seed on
    the CPU (the caller's global RNG is left as it was). Returns the fit record."""
    device = torch.device(device)
    if not train_blocks:
        raise ConfigError("a language model needs at least one training block of text")
    model.to(device)
    set_attention_backend(model, eager=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    opt = make_optimizer(model, [{"params": [p for p in model.parameters() if p.requires_grad]}], lr, 0.01, device)
    lengths = [len(b) for b in train_blocks]
    total = len(make_batches(lengths, batch_size, seed=0)) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, WARMUP))
    curve, best, best_state, step, t0 = [], None, None, 0, time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            for index in make_batches(lengths, batch_size, seed=int(seed) * 1000 + epoch):
                x = block_inputs([train_blocks[i] for i in index], pad, device)
                with autocast_for(device, True):
                    logits = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), x["labels"].flatten(), ignore_index=IGNORED)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"the language-model teacher's training loss became {loss.item()} in "
                                             f"epoch {epoch}; lower language_model.teacher_lr (now {lr})")
                loss.backward()
                clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
                step += 1
                if progress:
                    progress(phase, step, total)
            record = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5)}
            if val_blocks:
                nll = mean_nll(model, val_blocks, pad, device)
                record.update(val_perplexity=round(math.exp(nll), 3), val_loss=round(nll, 5))
                if best is None or nll <= curve[best - 1]["val_loss"]:
                    best, best_state = epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}
            curve.append(record)
            log.info("language model epoch %d: %s", epoch, record)
            fit_curve.point(**curve[-1])              # drawn live while the class waits
            if patience and best is not None and epoch - best >= patience:
                break
    if best_state is not None and best != curve[-1]["epoch"]:
        model.load_state_dict(best_state)
    model.eval()
    set_attention_backend(model, eager=True)
    return {"examples": len(train_blocks), "tokens": int(sum(len(b) - 1 for b in train_blocks)),
            "epochs_planned": epochs, "epochs_run": len(curve), "kept_epoch": best or len(curve), "curve": curve,
            "seconds": round(time.time() - t0, 1)}


@torch.no_grad()
def mean_nll(model, blocks: list[list[int]], pad: int, device, batch_size: int = 64) -> float:
    """The mean negative log-likelihood per predicted token of a model on blocks of token ids."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for index in make_batches([len(b) for b in blocks], batch_size, seed=None):
        x = block_inputs([blocks[i] for i in index], pad, device)
        logits = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits.float()
        total += float(F.cross_entropy(logits.flatten(0, 1), x["labels"].flatten(), ignore_index=IGNORED,
                                       reduction="sum"))
        count += int((x["labels"] != IGNORED).sum())
    model.train(was)
    return total / max(1, count)


# ---- the teacher -------------------------------------------------------------------------------------------------
def builtin_teacher_epochs(cfg, n_blocks: int) -> int:
    lm = cfg.language_model
    steps = math.ceil(n_blocks / lm.teacher_batch_size) if n_blocks else 0
    return floor_epochs(lm.teacher_epochs, steps, cfg.teacher.finetune_min_steps, MAX_FLOOR_EPOCHS["teacher"])


def learned_from(cfg, splits: LMSplits) -> str:
    """What a language-model teacher learns from (teacher_passages, in order) and the validation passages that pick
    its epoch: not the test split, nor where the students' training split was cut."""
    return data_digest(teacher_passages(cfg, splits), splits.val)


def teacher_key(cfg, splits: LMSplits) -> str:
    """sha256[:20] of everything that changes the built-in teacher (its tokenizer included)."""
    lm = cfg.language_model
    ident = {"version": LM_TEACHER_VERSION, "data": learned_from(cfg, splits), "context": cfg.data.max_length,
             "tokenizer": lm.tokenizer, "vocab_size": lm.vocab_size,
             "shape": [lm.teacher_layers, lm.teacher_heads, lm.teacher_hidden, lm.teacher_intermediate],
             "dropout": lm.teacher_dropout, "epochs": lm.teacher_epochs, "lr": lm.teacher_lr,
             "batch_size": lm.teacher_batch_size, "patience": cfg.teacher.finetune_patience,
             "finetune_on": cfg.teacher.finetune_on, "min_steps": cfg.teacher.finetune_min_steps,
             "seed": cfg.teacher.seed}
    return "lm-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def finetune_key(cfg, splits: LMSplits, identity: dict) -> str:
    t = cfg.teacher
    ident = {"version": LM_TEACHER_VERSION, "teacher": identity, "data": learned_from(cfg, splits),
             "context": cfg.data.max_length, "epochs": t.finetune_epochs, "lr": t.finetune_lr,
             "batch_size": t.finetune_batch_size, "patience": t.finetune_patience, "finetune_on": t.finetune_on,
             "seed": t.seed}
    return "lm-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def load_teacher_tokenizer(source: str, local: bool):
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(str(source), local_files_only=local, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load the tokenizer of {source}: {e}") from None
    if tok.pad_token_id is None:           # GPT-2's tokenizer has no padding token: its end token pads
        tok.pad_token = tok.eos_token
    return tok


def _load(path: str):
    """(model, tokenizer) of a teacher folder this module wrote."""
    return load_causal_lm(path), load_teacher_tokenizer(path, local=True)


def encoded_blocks(tokenizer, splits: LMSplits, passages: list[str], context: int):
    """(training blocks of `passages`, validation blocks) for the teacher's training."""
    train = stream_blocks(encode_passages(tokenizer, passages), context)
    val, _ = passage_blocks(encode_passages(tokenizer, splits.val), context)
    return train, val


def prepare_lm_teacher(cfg, splits: LMSplits, device, progress: Progress | None = None) -> PreparedTeacher:
    """The session's teacher as a PreparedTeacher (its tokenizer in .tokenizer): built and trained here once
    (teacher.source "default"), or a causal model folder / hub id used as it is, or fine-tuned on the passages once
    with teacher.finetune "always"."""
    device = torch.device(device)
    source = cfg.teacher.source
    context = cfg.data.max_length
    if source == DEFAULT_TEACHER:
        return _builtin_teacher(cfg, splits, device, progress)
    if source_kind(source, "model") == "hub":
        require_online(f"language-model teacher {source!r}")
    path, local = resolve_source(source)
    model = load_causal_lm(path, local_only=local)
    tokenizer = load_teacher_tokenizer(path, local)
    limit = shape_of(model)["context"]
    if limit and context > limit:
        raise ConfigError(f"data.max_length ({context}) is longer than teacher {source} reads ({limit} positions); "
                          f"set data.max_length to {limit} or less")
    if cfg.teacher.finetune != "always" or cfg.teacher.finetune_epochs == 0:
        return PreparedTeacher(model.to(device).eval(), tokenizer, str(path), False, False)
    identity = {"content": model_content_digest(path)} if local else {"hub": path}
    slot = CacheSlot(teachers_dir(), finetune_key(cfg, splits, identity))
    t = cfg.teacher

    def build():
        log.info("fine-tuning the language-model teacher (one time, cached in %s)", slot.path)
        train, val = encoded_blocks(tokenizer, splits, teacher_passages(cfg, splits), context)
        fit = train_language_model(model, tokenizer, train, val, epochs=t.finetune_epochs, lr=t.finetune_lr,
                                   batch_size=t.finetune_batch_size, device=device, seed=t.seed,
                                   patience=t.finetune_patience, progress=progress, phase="prepare teacher")
        return model.cpu(), tokenizer, {**fit, "finetuned_from": source}

    (model, tokenizer), cached = cached_teacher(slot, _load, build, source, splits.fingerprint,
                                                 "language-model teacher")
    return PreparedTeacher(model.to(device).eval(), tokenizer, str(slot.path), True, cached,
                           fit=read_fit(slot.path / "distill_meta.json"))


def _builtin_teacher(cfg, splits: LMSplits, device, progress: Progress | None) -> PreparedTeacher:
    """The built-in teacher: a tokenizer and a GPT-2 model of the language_model section's shape trained on the
    teacher's passages, the best validation epoch kept, cached under teachers/<key>."""
    lm = cfg.language_model
    slot = CacheSlot(teachers_dir(), teacher_key(cfg, splits))

    def build():
        log.info("training the language-model teacher (one time, cached in %s)", slot.path)
        passages = teacher_passages(cfg, splits)
        tokenizer = train_tokenizer(passages, lm.vocab_size, lm.tokenizer)
        model = build_gpt2(tokenizer, lm.teacher_layers, lm.teacher_heads, lm.teacher_hidden, cfg.data.max_length,
                           lm.teacher_intermediate, lm.teacher_dropout, seed=cfg.teacher.seed)
        train, val = encoded_blocks(tokenizer, splits, passages, cfg.data.max_length)
        epochs = builtin_teacher_epochs(cfg, len(train))
        fit = train_language_model(model, tokenizer, train, val, epochs=epochs, lr=lm.teacher_lr,
                                   batch_size=lm.teacher_batch_size, device=device, seed=cfg.teacher.seed,
                                   patience=cfg.teacher.finetune_patience + 1, progress=progress)
        fit["shape"] = {"layers": lm.teacher_layers, "heads": lm.teacher_heads, "hidden": lm.teacher_hidden,
                        "intermediate": lm.teacher_intermediate, "vocab": len(tokenizer), "tokenizer": lm.tokenizer,
                        "context": cfg.data.max_length}
        if epochs != lm.teacher_epochs:
            fit["epochs_asked"] = lm.teacher_epochs
        return model.cpu(), tokenizer, fit

    (model, tokenizer), cached = cached_teacher(slot, _load, build, "language-model teacher", splits.fingerprint,
                                                 "language-model teacher")
    return PreparedTeacher(model.to(device).eval(), tokenizer, str(slot.path), True, cached,
                           fit=read_fit(slot.path / "distill_meta.json"))


# ---- the teacher's samples for sequence-level KD -------------------------------------------------------------------
def samples_key(prepared: PreparedTeacher, blocks: list[list[int]], prompt: int, settings: dict) -> str:
    path = Path(prepared.path)
    teacher = model_content_digest(path) if (path / "config.json").is_file() else prepared.path
    h = hashlib.sha256(json.dumps({"version": SAMPLES_VERSION, "teacher": teacher, "prompt": prompt, **settings},
                                  sort_keys=True).encode())
    h.update(json.dumps([b[:prompt] for b in blocks]).encode())
    return "lmseq-" + h.hexdigest()[:24]


def teacher_samples(prepared: PreparedTeacher, blocks: list[list[int]], prompt: int, context: int, seed: int,
                    temperature: float, device, batch_size: int = 64,
                    progress: Progress | None = None) -> tuple[list[list[int]], bool]:
    """The teacher's continuation of each training block's first `prompt` tokens up to `context` tokens in all
    (prompt included), sampled with `seed` and cached where the teacher is a folder; (blocks, from the cache)."""
    eos = prepared.tokenizer.eos_token_id
    pad = prepared.tokenizer.pad_token_id or 0

    def compute() -> list[list[int]]:
        out: list[list[int]] = []
        step = max(1, batch_size * 8)
        for k in range(0, len(blocks), step):
            for j in range(k, min(len(blocks), k + step), batch_size):
                prompts = [b[:prompt] for b in blocks[j:j + batch_size]]
                rows = sample(prepared.model, prompts, context - prompt, seed=seed * 1_000_003 + j,
                              temperature=temperature, eos=eos, pad=pad, device=device)
                out += [p + r for p, r in zip(prompts, rows)]
            if progress:
                progress("teacher samples", min(len(blocks), k + step), len(blocks))
        return out
    if not (Path(prepared.path) / "config.json").is_file():
        return compute(), False
    key = samples_key(prepared, blocks, prompt, {"context": context, "seed": seed, "temperature": temperature})
    return cached_token_rows(CacheSlot(outputs_dir(), key, ".safetensors"), len(blocks), compute,
                             {"key": key, "teacher": prepared.path, "kind": "samples for sequence-level KD"}, "samples")
