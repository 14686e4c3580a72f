"""The translation teacher: a Marian encoder-decoder trained here once on the training pairs (with a subword
tokenizer trained on them too) and cached by content, or a Marian model folder or hub id with its own tokenizer
(fine-tuned on the pairs only when asked); and the teacher's own translations of the training sources for
sequence-level KD, computed once and cached beside it.

    cache_root()/teachers/<key>/                   the teacher trained here: config.json, model.safetensors, its
                                                   tokenizer, distill_meta.json (source, key, data, fit)
    cache_root()/teacher_outputs/<key>.safetensors its translations of one training split (sequence-level KD)

The key names everything that changes the result: the recipe version, the pairs it learns from and the validation
pairs (learned_from), the token limit, the tokenizer and teacher settings and teacher.seed.
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
from ...teacher import PreparedTeacher, model_content_digest, part_indices
from ..trained_cache import cached_teacher, cached_token_rows
from .data import TranslationSplits
from .decoding import decoder_rows, pad_rows, score, translate, translate_ids
from .models import build_marian, is_encoder_decoder, load_marian
from .tokenizer import encode_sources, encode_targets, train_tokenizer

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]   # (phase, done, total) -> None; may raise to stop

TRANSLATION_TEACHER_VERSION = 1     # bump when the recipe changes what it produces
SEQ_KD_VERSION = 1                  # bump when the teacher's translations for sequence-level KD change
LABEL_SMOOTHING = 0.1               # the teacher's training loss (Vaswani et al. 2017); the students train without
WARMUP = 0.1                        # share of the steps with a linear warm-up, then cosine decay to 0


# ---- training an encoder-decoder ----------------------------------------------------------------------------------
def teacher_pairs(cfg, splits: TranslationSplits) -> tuple[list[str], list[str]]:
    """The pairs a teacher learns from: the training split, plus the pairs no split took with teacher.finetune_on
    "all", then teacher.finetune_part's share of them."""
    sources, targets = list(splits.train_sources), list(splits.train_targets)
    if cfg.teacher.finetune_on == "all":
        sources += splits.extra_sources
        targets += splits.extra_targets
    keep = part_indices(len(sources), cfg.teacher.part)
    return [sources[i] for i in keep], [targets[i] for i in keep]


def train_translation_model(model, tokenizer, train: tuple[list, list], val: tuple[list, list[str]], *, epochs: int,
                            lr: float, batch_size: int, device, seed: int, max_length: int, patience: int | None = None,
                            progress: Progress | None = None, phase: str = "train teacher") -> dict:
    """Train an encoder-decoder in place on (source ids, target ids) with teacher forcing: AdamW, a linear warm-up
    over WARMUP of the steps then cosine decay, label-smoothed cross-entropy, length-bucketed shuffled batches.
    After each epoch the validation sources are translated greedily; the weights of the epoch with the best
    validation chrF are kept (ties: the later one), and training stops after `patience` epochs without a better one.

    Returns the fit record {"examples", "epochs_planned", "epochs_run", "kept_epoch", "curve": [{"epoch",
    "val_accuracy" (chrF / 100), "val_bleu", "train_loss"}], "seconds"}. Deterministic for a seed on the CPU (the
    caller's global RNG is left as it was)."""
    device = torch.device(device)
    sources, targets = train
    if len(sources) < 1:
        raise ConfigError("a translation model needs at least one training pair")
    start = int(model.config.decoder_start_token_id)
    pad = int(tokenizer.pad_token_id)
    model.to(device)
    set_attention_backend(model, eager=False)          # attention is not read while training: the fast path
    opt = make_optimizer(model, [{"params": [p for p in model.parameters() if p.requires_grad]}], lr, 0.01, device)
    lengths = [max(len(s), len(t)) for s, t in zip(sources, targets)]
    steps_per_epoch = len(make_batches(lengths, batch_size, seed=0))
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, WARMUP))
    curve, best, best_state, step, t0 = [], None, None, 0, time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))                   # dropout
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            for index in make_batches(lengths, batch_size, seed=int(seed) * 1000 + epoch):
                ids, mask = pad_rows([sources[i] for i in index], pad)
                dec, dec_mask = pad_rows(decoder_rows([targets[i] for i in index], start), pad)
                labels, _ = pad_rows([targets[i] for i in index], pad, fill=IGNORED)
                with autocast_for(device, True):
                    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                   decoder_input_ids=dec.to(device), decoder_attention_mask=dec_mask.to(device)).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), labels.to(device).flatten(),
                                       ignore_index=IGNORED, label_smoothing=LABEL_SMOOTHING)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"the translation teacher's training loss became {loss.item()} in "
                                             f"epoch {epoch}; lower translation.teacher_lr (now {lr})")
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
            if val[0]:
                hyps = translate(model, val[0], tokenizer, device, beam=1, max_length=max_length)
                s = score(hyps, val[1], sentences=False)
                record.update(val_accuracy=s["chrf"] / 100, val_bleu=s["bleu"])
                if best is None or record["val_accuracy"] >= curve[best - 1]["val_accuracy"]:
                    best, best_state = epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}
            curve.append(record)
            log.info("translation model epoch %d: %s", epoch, record)
            fit_curve.point(**curve[-1])              # drawn live while the class waits
            if patience and best is not None and epoch - best >= patience:
                break
    if best_state is not None and best != curve[-1]["epoch"]:
        model.load_state_dict(best_state)
    model.eval()
    set_attention_backend(model, eager=True)
    return {"examples": len(sources), "epochs_planned": epochs, "epochs_run": len(curve),
            "kept_epoch": best or len(curve), "curve": curve, "seconds": round(time.time() - t0, 1)}


# ---- the teacher -----------------------------------------------------------------------------------------------------
def builtin_teacher_epochs(cfg, n_pairs: int) -> int:
    """translation.teacher_epochs, or more on small data so that the teacher takes at least
    teacher.finetune_min_steps steps (at most MAX_FLOOR_EPOCHS["teacher"] epochs in all), as the other teachers."""
    tr = cfg.translation
    steps = math.ceil(n_pairs / tr.teacher_batch_size) if n_pairs else 0
    return floor_epochs(tr.teacher_epochs, steps, cfg.teacher.finetune_min_steps, MAX_FLOOR_EPOCHS["teacher"])


def learned_from(cfg, splits: TranslationSplits) -> str:
    """What a translation teacher learns from (teacher_pairs, in order), the validation pairs that pick its epoch and
    the languages: not the test split, nor where the students' training split was cut."""
    return data_digest(list(splits.languages), teacher_pairs(cfg, splits), splits.val_sources, splits.val_targets)


def teacher_key(cfg, splits: TranslationSplits) -> str:
    """sha256[:20] of everything that changes the built-in teacher (its tokenizer included)."""
    tr = cfg.translation
    ident = {"version": TRANSLATION_TEACHER_VERSION, "data": learned_from(cfg, splits),
             "max_length": cfg.data.max_length,
             "tokenizer": tr.tokenizer, "vocab_size": tr.vocab_size,
             "shape": [tr.teacher_layers, tr.teacher_heads, tr.teacher_hidden, tr.teacher_intermediate],
             "dropout": tr.teacher_dropout, "epochs": builtin_teacher_epochs(cfg, len(teacher_pairs(cfg, splits)[0])),
             "lr": tr.teacher_lr, "batch_size": tr.teacher_batch_size, "patience": cfg.teacher.finetune_patience,
             "finetune_on": cfg.teacher.finetune_on, "part": list(cfg.teacher.part), "seed": cfg.teacher.seed}
    return "mt-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def finetune_key(cfg, splits: TranslationSplits, identity: dict) -> str:
    """sha256[:20] of everything that changes a loaded teacher's fine-tune on the pairs."""
    t = cfg.teacher
    ident = {"version": TRANSLATION_TEACHER_VERSION, "teacher": identity, "data": learned_from(cfg, splits),
             "max_length": cfg.data.max_length, "epochs": t.finetune_epochs, "lr": t.finetune_lr,
             "batch_size": t.finetune_batch_size, "patience": t.finetune_patience, "finetune_on": t.finetune_on,
             "part": list(t.part), "seed": t.seed}
    return "mt-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def load_teacher_tokenizer(source: str, local: bool):
    """The tokenizer of a Marian model folder or hub id."""
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(source), local_files_only=local, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - tokenizers raise many kinds (a Marian one needs sentencepiece)
        raise ModelError(f"cannot load the tokenizer of {source}: {e}. A Marian (opus-mt) tokenizer needs the "
                         f"sentencepiece package (pip install sentencepiece)") from None


def _load(path: str):
    """(model, tokenizer) of a teacher folder this module wrote."""
    return load_marian(path), load_teacher_tokenizer(path, local=True)


def prepare_translation_teacher(cfg, splits: TranslationSplits, device, progress: Progress | None = None):
    """The session's translation teacher as a PreparedTeacher (its tokenizer in .tokenizer): built and trained
    here once (teacher.source "default"), or a Marian folder / hub id used as it is, or fine-tuned on the pairs once
    with teacher.finetune "always". `finetuned` is True only where the teacher's answers on a split are fixed by its
    cache folder and the decoding is greedy (the session then keeps its evaluation beside it)."""
    device = torch.device(device)
    source = cfg.teacher.source
    if source == DEFAULT_TEACHER:
        return _builtin_teacher(cfg, splits, device, progress)
    kind = source_kind(source, "model")
    if kind == "hub":
        require_online(f"translation teacher {source!r}")
    path, local = resolve_source(source)
    model = load_marian(path, local_only=local)
    if not is_encoder_decoder(model):
        raise ModelError(f"teacher {source} is not an encoder-decoder; a translation teacher is a Marian model")
    tokenizer = load_teacher_tokenizer(path, local)
    if cfg.teacher.finetune != "always" or cfg.teacher.finetune_epochs == 0:
        return PreparedTeacher(model.to(device).eval(), tokenizer, str(path), False, False)
    identity = {"content": model_content_digest(path)} if local else {"hub": path}
    slot = CacheSlot(teachers_dir(), finetune_key(cfg, splits, identity))
    t = cfg.teacher

    def build():
        log.info("fine-tuning the translation teacher (one time, cached in %s)", slot.path)
        sources, targets = teacher_pairs(cfg, splits)
        train = (encode_sources(tokenizer, sources, cfg.data.max_length)[0],
                 encode_targets(tokenizer, targets, cfg.data.max_length)[0])
        val = (encode_sources(tokenizer, splits.val_sources, cfg.data.max_length)[0], splits.val_targets)
        fit = train_translation_model(model, tokenizer, train, val, epochs=t.finetune_epochs, lr=t.finetune_lr,
                                      batch_size=t.finetune_batch_size, device=device, seed=t.seed,
                                      max_length=cfg.data.max_length, patience=t.finetune_patience,
                                      progress=progress, phase="prepare teacher")
        return model, tokenizer, {**fit, "finetuned_from": source}

    (model, tokenizer), cached = cached_teacher(slot, _load, build, source, splits.fingerprint,
                                                 "translation teacher")
    return PreparedTeacher(model.to(device).eval(), tokenizer, str(slot.path), cfg.translation.beam == 1, cached,
                           fit=read_fit(slot.path / "distill_meta.json"))


def _builtin_teacher(cfg, splits: TranslationSplits, device, progress: Progress | None) -> PreparedTeacher:
    """The built-in teacher: a tokenizer and a Marian model of the translation section's shape trained on the
    teacher's pairs, the best validation epoch kept, cached under teachers/<key>."""
    tr = cfg.translation
    slot = CacheSlot(teachers_dir(), teacher_key(cfg, splits))

    def build():
        log.info("training the translation teacher (one time, cached in %s)", slot.path)
        sources, targets = teacher_pairs(cfg, splits)
        tokenizer = train_tokenizer(sources + targets, tr.vocab_size, tr.tokenizer)
        model = build_marian(tokenizer, tr.teacher_layers, tr.teacher_heads, tr.teacher_hidden,
                             tr.teacher_intermediate, tr.teacher_dropout, seed=cfg.teacher.seed)
        train = (encode_sources(tokenizer, sources, cfg.data.max_length)[0],
                 encode_targets(tokenizer, targets, cfg.data.max_length)[0])
        val = (encode_sources(tokenizer, splits.val_sources, cfg.data.max_length)[0], splits.val_targets)
        epochs = builtin_teacher_epochs(cfg, len(sources))
        fit = train_translation_model(model, tokenizer, train, val, epochs=epochs, lr=tr.teacher_lr,
                                      batch_size=tr.teacher_batch_size, device=device, seed=cfg.teacher.seed,
                                      max_length=cfg.data.max_length, patience=cfg.teacher.finetune_patience + 2,
                                      progress=progress)
        fit["shape"] = {"layers": tr.teacher_layers, "heads": tr.teacher_heads, "hidden": tr.teacher_hidden,
                        "intermediate": tr.teacher_intermediate, "vocab": len(tokenizer), "tokenizer": tr.tokenizer}
        if epochs != tr.teacher_epochs:
            fit["epochs_asked"] = tr.teacher_epochs
        return model.cpu(), tokenizer, fit

    (model, tokenizer), cached = cached_teacher(slot, _load, build, "translation teacher", splits.fingerprint,
                                                 "translation teacher")
    return PreparedTeacher(model.to(device).eval(), tokenizer, str(slot.path), tr.beam == 1, cached,
                           fit=read_fit(slot.path / "distill_meta.json"))


# ---- the teacher's translations for sequence-level KD ---------------------------------------------------------------
def seq_kd_key(prepared: PreparedTeacher, sources: list[list[int]], data: str, max_length: int) -> str:
    """Everything that changes the teacher's greedy translations of the training sources."""
    path = Path(prepared.path)
    teacher = model_content_digest(path) if (path / "config.json").is_file() else prepared.path
    h = hashlib.sha256(json.dumps({"version": SEQ_KD_VERSION, "teacher": teacher, "data": data,
                                   "max_length": max_length}, sort_keys=True).encode())
    h.update(json.dumps(sources).encode())
    return "seqkd-" + h.hexdigest()[:24]


def teacher_translations(prepared: PreparedTeacher, sources: list[list[int]], data: str, device, max_length: int,
                         batch_size: int = 64, progress: Progress | None = None) -> tuple[list[list[int]], bool]:
    """The teacher's greedy translation of each source as target ids ending with the end token, computed once and
    cached (teacher_outputs/seqkd-<key>.safetensors) where the teacher is a folder; (translations, from the cache)."""
    eos = prepared.model.config.eos_token_id

    def compute() -> list[list[int]]:
        out: list[list[int]] = []
        step = max(1, batch_size * 8)
        for k in range(0, len(sources), step):
            part = translate_ids(prepared.model, sources[k:k + step], prepared.tokenizer.pad_token_id, device,
                                 beam=1, max_length=max_length - 1, batch_size=batch_size)
            out += [x + [eos] for x in part]
            if progress:
                progress("teacher translations", min(len(sources), k + step), len(sources))
        return out
    if not (Path(prepared.path) / "config.json").is_file():
        return compute(), False
    key = seq_kd_key(prepared, sources, data, max_length)
    return cached_token_rows(CacheSlot(outputs_dir(), key, ".safetensors"), len(sources), compute,
                             {"key": key, "teacher": prepared.path, "data": data,
                              "kind": "translations for sequence-level KD"}, "translations")
