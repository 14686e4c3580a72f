"""The tagging teacher: the teacher's encoder with a token-classification head, fine-tuned on the training sentences
once and cached by content, as distill_core/teacher.py does for text classification.

The default teacher (all-MiniLM-L6-v2) has no tagging head, so a new one is fine-tuned here, keeping the epoch of best
validation entity F1. The result is saved (safetensors) under cache_root()/teachers/<key>, the key naming the
teacher's files' content, the fine-tune's settings, the data's split and the tags, so every later session with the
same teacher and data reuses it. A token classifier that already answers with the data's tags is used as it is
(teacher.finetune auto).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from ...cache import CacheSlot, data_digest, get_or_build, read_fit, teachers_dir
from ...config import TeacherConfig
from ...errors import ConfigError, ModelError
from ..splits import teacher_rows
from ...models import check_attention, preflight, resolve_source, usable_positions
from ...teacher import PreparedTeacher, finetune_loop, part_indices, teacher_identity
from .modality import IGNORE, TaggingModality, pad_targets, score_tags, token_logits
from .models import load_tagger

log = logging.getLogger(__name__)

TAGGING_RECIPE_VERSION = 1     # bump when the fine-tune recipe changes what it produces


def tagging_teacher_config(config) -> TeacherConfig:
    """The teacher section a tagging session fine-tunes with: teacher.finetune_lr left at the text default becomes
    tagging.finetune_lr (a new tagging head learns slower than a classifier's)."""
    t = config.teacher
    if t.finetune_lr == TeacherConfig().finetune_lr:
        return dataclasses.replace(t, finetune_lr=config.tagging.finetune_lr)
    return t


def teacher_sentences(tcfg, splits, train: list, extra: list) -> tuple[list, list]:
    """(the tagger's sentences, their tags or targets) from `train` and `extra` as it reads them: the training
    split, and with finetune_on "all" every other sentence outside validation and test."""
    rows = functools.partial(teacher_rows, tcfg.finetune_on, order=splits.teacher_order)
    return rows(train[0], extra[0]), rows(train[1], extra[1])


def learned_from(tcfg, splits) -> str:
    """What a tagging teacher learns from, as teacher.learned_from: its sentences and tags in the order it reads
    them, and the validation split that picks its epoch."""
    words, tags = teacher_sentences(tcfg, splits, (splits.train_words, splits.train_tags),
                                    (splits.extra_words, splits.extra_tags))
    return data_digest(words, tags, splits.val_words, splits.val_tags)


def tagging_teacher_key(config, modality: TaggingModality) -> str:
    """Everything that changes the fine-tuned tagger: the teacher's identity, the fine-tune's settings, the split,
    the tags and how long a sentence may be."""
    t = tagging_teacher_config(config)
    ident = ["tagging", teacher_identity(t.source), t.finetune_epochs, t.finetune_lr, t.finetune_batch_size,
             t.finetune_on, t.finetune_min_steps, t.finetune_patience, t.seed, list(t.part),
             learned_from(t, modality.splits), modality.splits.tag_names, modality.max_length, TAGGING_RECIPE_VERSION]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:20]


def prepare_tagging_teacher(config, modality: TaggingModality, device, progress=None) -> PreparedTeacher:
    """Load the teacher as a tagger; fine-tune it when its head is new (or when asked), once, cached.

    It learns from the training sentences, plus the tagged sentences no split took when teacher.finetune_on is
    "all". Attention that cannot be read, or a student that does not fit the teacher, is refused before the
    fine-tune."""
    tcfg, tags = tagging_teacher_config(config), modality.splits.tag_names
    tokenizer = modality.tokenizer
    model, head_new = load_tagger(tcfg.source, tags)
    check_attention(model, tokenizer, f"teacher {tcfg.source}")
    preflight(config, model, tokenizer)
    usable = usable_positions(model.config)
    if usable is not None and modality.max_length > usable:
        raise ConfigError(f"a tagging session reads up to {modality.max_length} sub-tokens of a sentence "
                          f"(data.max_length, or tagging.max_length while data.max_length is left at 64), but the "
                          f"teacher reads at most {usable}; set data.max_length to {usable} or less")
    needs_ft = tcfg.finetune == "always" or (tcfg.finetune == "auto" and head_new)
    if not needs_ft or tcfg.finetune_epochs == 0:
        return PreparedTeacher(model.to(device), tokenizer, resolve_source(tcfg.source)[0], False, False, head_new)
    slot = CacheSlot(teachers_dir(), tagging_teacher_key(config, modality))
    target = slot.path

    def load(repair: bool):
        if not (target / "config.json").is_file():
            return None
        try:
            return load_tagger(str(target), tags)[0]
        except ModelError as e:
            if repair:
                log.warning("the cached tagging teacher in %s is damaged and is fine-tuned again: %s", target, e)
                shutil.rmtree(target, ignore_errors=True)
            return None

    def build():
        log.info("fine-tuning the tagging teacher (one time, cached in %s)", target)
        torch.manual_seed(tcfg.seed)
        fresh, _ = load_tagger(tcfg.source, tags)        # the same fresh head every time
        fresh.to(device)
        return fresh, finetune_tagger(fresh, modality, tcfg, device, config.train.mixed_precision, progress)

    def write(built, tmp: Path) -> None:
        fitted, fit = built
        fitted.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "distill_meta.json").write_text(json.dumps({"source": tcfg.source, "key": slot.key, "task": "tagging",
                                                           "data": modality.splits.fingerprint, "fit": fit}))

    def write_failed(e: BaseException):
        raise ModelError(f"could not save the fine-tuned tagging teacher in {slot.folder}: {e}; free disk space or "
                         f"set ADS_CACHE_DIR to a writable folder") from None
    model, cached = get_or_build(slot, load, build, write, write_errors=(OSError,), write_failed=write_failed,
                                 reread=lambda: load_tagger(str(target), tags)[0])
    check_attention(model, tokenizer, f"teacher {tcfg.source}")
    return PreparedTeacher(model.to(device), tokenizer, str(target), True, cached,
                           fit=read_fit(target / "distill_meta.json"))


def finetune_tagger(model, modality: TaggingModality, tcfg, device, mixed_precision: bool, progress=None) -> dict:
    """Fine-tune a tagger in place on the training sentences (and the extra ones with finetune_on "all"), with
    cross-entropy over each word's first sub-token; keep the epoch of best validation entity F1 and stop after
    tcfg.finetune_patience epochs without a better one. Returns what happened (the `fit` record; each epoch's
    val_accuracy is its entity F1, the score the pages show in accuracy's place)."""
    ids, targets = teacher_sentences(tcfg, modality.splits, (modality.ids["train"], modality.targets["train"]),
                                     (modality.ids["extra"], modality.targets["extra"]))
    keep = part_indices(len(ids), tcfg.part)
    ids, targets = [ids[i] for i in keep], [targets[i] for i in keep]

    def batch_loss(logits, index):
        labels = pad_targets(targets, index, logits.shape[1]).to(logits.device)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)

    def validate(m) -> dict:
        val = score_tags(token_logits(m, modality.ids["val"], modality.pad_id, device, mixed_precision=mixed_precision),
                         modality.targets["val"], modality.starts["val"], modality.labels["val"],
                         modality.splits.tag_names)
        return {"val_accuracy": val["accuracy"], "val_f1": val["accuracy"],
                "val_token_accuracy": val["details"]["token_accuracy"], "val_loss": val["loss"]}
    fit = finetune_loop(model, ids, modality.pad_id, tcfg, device, mixed_precision, progress, batch_loss,
                        validate if modality.ids["val"] else None)
    return {**fit, "unit": "sentences", "metric": "entity F1", "lr": tcfg.finetune_lr}
