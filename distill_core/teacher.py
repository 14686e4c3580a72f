"""Preparing the teacher (a seeded fine-tune, cached on disk once per machine) and caching its outputs.

The default teacher is a sentence encoder with a new, untrained classifier head, so it is fine-tuned on
the session's training split first. The result is saved (safetensors) under the cache folder keyed by
everything that affects it, so every later session with the same teacher and data reuses it. A local teacher
is identified by the sha256 of its files, not by where it lives, so a second copy of the project (or a new
virtualenv holding the same default teacher) finds the same cached fine-tune.

The teacher's outputs on the training set (logits, mapped attention, its scores before the softmax, hidden states)
are cached the same way under cache_root()/teacher_outputs, keyed by the teacher's content, the token ids, the
mapping settings and which of them were asked for.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from . import fit_curve, mapping
from .batching import collate, make_batches, pad_square, pad_tokens
from .cache import CacheSlot, data_digest, get_or_build, outputs_dir, read_fit, teachers_dir
from .capture import AttentionCapture
from .config import MAX_FLOOR_EPOCHS, SessionConfig, TeacherConfig, floor_epochs
from .errors import ModelError
from .evaluate import accuracy_and_loss, autocast_for, predict_logits
from .modality.splits import teacher_rows
from .modality.text.data import Splits
from .models import (SAFE_WEIGHTS, TOKENIZER_FILES, check_attention, load_classifier, load_tokenizer, preflight,
                     resolve_source, set_attention_backend)
from .optim import clip_grad_norm_, make_optimizer
from .store import atomic_write_json

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]   # (phase, done, total) -> None; may raise to stop


@dataclass
class PreparedTeacher:
    model: torch.nn.Module
    tokenizer: object
    path: str          # folder the weights were loaded from (cache folder after fine-tuning), or a hub id
    finetuned: bool
    cached: bool       # True when the fine-tuned teacher came from the cache
    head_new: bool = False  # the classifier head is freshly initialised (not fine-tuned): its outputs are random
    fit: dict | None = None  # how the fine-tune went (finetune's record): examples, epochs, validation curve, kept epoch


TEACHER_RECIPE_VERSION = 3     # bump when the fine-tune recipe changes what it produces
OUTPUTS_VERSION = 2            # bump when compute_teacher_outputs changes what it produces

# Files whose bytes define a model folder; shards named by model.safetensors.index.json are added to them.
MODEL_FILES = ("config.json",) + SAFE_WEIGHTS + TOKENIZER_FILES + (
    "special_tokens_map.json", "added_tokens.json", "merges.txt")

_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, remembered in this process by (path, size, mtime_ns)."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _DIGESTS_LOCK:
        known = _DIGESTS.get(memo)
    if known is not None:
        return known
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    with _DIGESTS_LOCK:
        _DIGESTS[memo] = digest
    return digest


def model_files(folder: Path) -> list[str]:
    """Names of the files in a model folder that define it: config, weights (index + shards), tokenizer."""
    names = [n for n in MODEL_FILES if (folder / n).is_file()]
    index = folder / SAFE_WEIGHTS[1]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{index} is not a valid safetensors index ({e}); save the model again with "
                             f"model.save_pretrained(folder)") from None
        names += [str(n) for n in shards if n not in names]
    return names


def model_content_digest(folder: str | Path) -> str:
    """sha256 over the names and contents of a model folder's defining files (not its path)."""
    folder = Path(folder)
    parts = [[name, file_digest(folder / name) if (folder / name).is_file() else "missing"]
             for name in model_files(folder)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def teacher_identity(source: str) -> dict:
    """What a teacher is: its files' content when local, else the hub id."""
    path, local = resolve_source(source)
    if local:
        return {"content": model_content_digest(path)}
    return {"hub": path}


def learned_from(cfg: TeacherConfig, splits: Splits) -> str:
    """sha256[:16] of what a text teacher learns from, in the order it reads it: its examples (the training split,
    and every other example outside validation and test with finetune_on "all"), the validation split that picks its
    epoch, and the label names. Not the test split, nor how the students' training split was cut from those
    examples: a session with fewer training examples reuses the teacher."""
    texts, labels = teacher_examples(cfg, splits, splits.train_texts, splits.extra_texts)
    return data_digest(splits.label_names, texts, labels, splits.val_texts, splits.val_labels)


def teacher_examples(cfg: TeacherConfig, splits: Splits, train: list, extra: list) -> tuple[list, list[int]]:
    """(the teacher's examples, their labels), from `train` and `extra` (texts or their ids) as it reads them."""
    rows = functools.partial(teacher_rows, cfg.finetune_on, order=splits.teacher_order)
    return rows(train, extra), rows(splits.train_labels, splits.extra_labels)


def teacher_cache_key(cfg: TeacherConfig, splits: Splits, max_length: int) -> str:
    ident = [teacher_identity(cfg.source), cfg.finetune_epochs, cfg.finetune_lr, cfg.finetune_batch_size,
             cfg.finetune_on, cfg.finetune_min_steps, cfg.finetune_patience, learned_from(cfg, splits), max_length,
             cfg.seed, TEACHER_RECIPE_VERSION]
    if cfg.part != (1, 1):           # keys of teachers that learn from every example stay as they were
        ident.append(list(cfg.part))
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:20]


PART_SEED = 0     # one shuffle for every teacher, so the parts k/n of one n never overlap


def part_indices(n: int, part: tuple[int, int]) -> list[int]:
    """The examples (of n) in part (k, n_parts) of teacher.finetune_part: the k-th of n_parts near-equal slices of a
    fixed shuffle, in their original order."""
    k, parts = part
    if parts == 1:
        return list(range(n))
    order = np.random.default_rng(PART_SEED).permutation(n)
    return sorted(int(i) for i in np.array_split(order, parts)[k - 1])


def prepare_teacher(config: SessionConfig, splits: Splits, train_ids: list[list[int]], device: torch.device,
                    progress: Progress | None = None, tokenizer=None, val_ids: list[list[int]] | None = None,
                    extra_ids: list[list[int]] | None = None) -> PreparedTeacher:
    """Load the teacher; fine-tune it when its head is new (or when asked), with caching.

    It learns from the training split, plus the labelled examples no split took (`extra_ids`) when
    teacher.finetune_on is "all"; with `val_ids` it keeps its best epoch by validation accuracy.
    Everything that can be refused without training (attention that cannot be read, a student that does not fit
    the teacher) is refused here, before the fine-tune."""
    tcfg = config.teacher
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(tcfg.source)   # the caller's, if it has one
    model, head_new = load_classifier(tcfg.source, splits.num_labels)
    check_attention(model, tokenizer, f"teacher {tcfg.source}")
    preflight(config, model, tokenizer)
    needs_ft = tcfg.finetune == "always" or (tcfg.finetune == "auto" and head_new)
    if not needs_ft or tcfg.finetune_epochs == 0:
        return PreparedTeacher(model.to(device), tokenizer, resolve_source(tcfg.source)[0], False, False, head_new)

    slot = CacheSlot(teachers_dir(), teacher_cache_key(tcfg, splits, config.data.max_length))
    target = slot.path

    def load(repair: bool):
        return _load_cached_teacher(target, splits.num_labels)

    def build():
        log.info("fine-tuning the teacher (one time, cached in %s)", target)
        return _finetune_fresh(config, splits, train_ids, tokenizer.pad_token_id, device, progress, val_ids,
                               extra_ids)

    def write(built, tmp: Path) -> None:
        model, fit = built
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "distill_meta.json").write_text(json.dumps({"source": tcfg.source, "key": slot.key,
                                                           "data": splits.fingerprint, "fit": fit}))

    def write_failed(e: BaseException):
        raise ModelError(f"could not save the fine-tuned teacher in {slot.folder}: {e}; free disk space or set "
                         f"ADS_CACHE_DIR to a writable folder") from None
    model, cached = get_or_build(slot, load, build, write, write_errors=(OSError,), write_failed=write_failed,
                                 reread=lambda: load_classifier(str(target), splits.num_labels)[0])
    check_attention(model, tokenizer, f"teacher {tcfg.source}")
    return PreparedTeacher(model.to(device), tokenizer, str(target), True, cached, fit=read_fit(target / "distill_meta.json"))


def _load_cached_teacher(target: Path, num_labels: int):
    """The fine-tuned teacher cached in `target`, or None when there is none (a damaged one is deleted)."""
    if not (target / "config.json").is_file():
        return None
    try:
        return load_classifier(str(target), num_labels)[0]
    except ModelError as e:
        log.warning("the cached teacher in %s is damaged and is fine-tuned again: %s", target, e)
        shutil.rmtree(target, ignore_errors=True)
        return None


def _finetune_fresh(config: SessionConfig, splits: Splits, train_ids, pad_id: int, device, progress, val_ids,
                    extra_ids):
    """(the teacher fine-tuned from its fresh, seeded head, the fit record)."""
    tcfg = config.teacher
    torch.manual_seed(tcfg.seed)
    model, _ = load_classifier(tcfg.source, splits.num_labels)  # the same fresh head every time
    model.to(device)
    fit_curve.before_training(model)                           # its attention as loaded, shown while it fine-tunes
    ids, labels = teacher_examples(tcfg, splits, train_ids, extra_ids or [])
    keep = part_indices(len(ids), tcfg.part)
    ids, labels = [ids[i] for i in keep], [labels[i] for i in keep]
    val = (val_ids, splits.val_labels) if val_ids else None
    return model, finetune(model, ids, labels, val, pad_id, tcfg, device,
                           config.train.mixed_precision, progress)


def finetune(model, ids, labels, val, pad_id, tcfg: TeacherConfig, device, mixed_precision: bool,
             progress: Progress | None) -> dict:
    """Fine-tune a classifier in place; with `val` = (ids, labels), keep the epoch of best validation accuracy and
    stop after tcfg.finetune_patience epochs without a better one. Returns what happened (the `fit` record)."""
    y = torch.tensor(labels, dtype=torch.long)

    def validate(m) -> dict:
        acc, vloss = accuracy_and_loss(predict_logits(m, val[0], pad_id, device, mixed_precision=mixed_precision),
                                       val[1])
        return {"val_accuracy": acc, "val_loss": vloss}
    return finetune_loop(model, ids, pad_id, tcfg, device, mixed_precision, progress,
                         lambda logits, index: F.cross_entropy(logits.float(), y[index].to(logits.device)),
                         validate if val is not None else None)


def finetune_loop(model, ids, pad_id, tcfg: TeacherConfig, device, mixed_precision: bool, progress: Progress | None,
                  batch_loss, validate) -> dict:
    """The teacher's fine-tune, whatever its head: AdamW at tcfg.finetune_lr with linear warm-up and decay over
    tcfg.finetune_epochs (more for small data: finetune_min_steps), `batch_loss(logits, index)` on each batch of
    `ids`; after each epoch `validate(model)` (None: no validation) gives the epoch's record, whose val_accuracy
    picks the epoch kept; stops after tcfg.finetune_patience epochs without a better one. Returns the `fit` record."""
    set_attention_backend(model, eager=False)   # attention is not read here: fast path
    opt = make_optimizer(model, [{"params": list(model.parameters())}], tcfg.finetune_lr, 0.01, device)
    steps_per_epoch = (len(ids) + tcfg.finetune_batch_size - 1) // tcfg.finetune_batch_size
    epochs = floor_epochs(tcfg.finetune_epochs, steps_per_epoch, tcfg.finetune_min_steps, MAX_FLOOR_EPOCHS["teacher"])
    total = steps_per_epoch * epochs
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    curve, best, best_state, step, t0, epoch = [], None, None, 0, time.time(), 0
    every, losses, shown = (fit_curve.live_every(steps_per_epoch) if validate is not None else 0), [], fit_curve.wanted()
    for epoch in range(1, epochs + 1):
        model.train()
        for index in make_batches([len(x) for x in ids], tcfg.finetune_batch_size, seed=tcfg.seed * 1000 + epoch - 1):
            input_ids, mask = collate(ids, index, pad_id)
            with autocast_for(device, mixed_precision):
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            loss = batch_loss(logits, index)
            loss.backward()
            clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if shown:
                losses.append(float(loss.detach()))
            if every and step % steps_per_epoch and step % every == 0:     # shown live only: no epoch is kept here
                fit_curve.point(step=step, epoch=step / steps_per_epoch, train_loss=sum(losses) / len(losses),
                                **validate(model))
                losses = []
                model.train()
            if progress:
                progress("prepare teacher", step, total)
        if validate is None:
            continue
        curve.append({"epoch": epoch, **validate(model)})
        fit_curve.point(step=step, train_loss=sum(losses) / max(1, len(losses)), **curve[-1])
        losses = []
        if best is None or curve[-1]["val_accuracy"] > curve[best - 1]["val_accuracy"]:
            best, best_state = epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best >= tcfg.finetune_patience:
            break
    if best_state is not None and best != curve[-1]["epoch"]:
        model.load_state_dict(best_state)
    model.eval()
    set_attention_backend(model, eager=True)
    return {"examples": len(ids), "epochs_planned": epochs, "epochs_run": epoch, "kept_epoch": best or epoch,
            "curve": curve, "seconds": round(time.time() - t0, 1)}


@dataclass
class TeacherOutputs:
    """What the teacher says about each training example, computed once and reused every epoch.

    logits: (N, C) float32. attention[i]: (P, H', t_i, t_i) float16 for the mapped layers, already reduced to
    the heads the student is compared on. hidden[i]: (P, t_i, Dt) float16. scores[i]: (P, H', t_i, t_i) float16,
    the same layers' attention scores before the softmax (teacher heads averaged as the probabilities are).
    """
    logits: torch.Tensor
    attention: list[torch.Tensor] | None
    hidden: list[torch.Tensor] | None
    scores: list[torch.Tensor] | None = None

    def batch(self, index, t: int, device):
        pin = device.type == "cuda"     # pinned host memory lets the copy overlap with compute

        def move(x):
            return (x.pin_memory() if pin else x).to(device, non_blocking=True)
        logits = move(self.logits[index])
        att = move(pad_square([self.attention[i] for i in index], t)).float() if self.attention is not None else None
        hid = move(pad_tokens([self.hidden[i] for i in index], t)).float() if self.hidden is not None else None
        scores = move(pad_square([self.scores[i] for i in index], t)).float() if self.scores is not None else None
        return logits, att, hid, scores         # (B, C), (B, P, H', T, T), (B, P, T, Dt), (B, P, H', T, T)

    def nbytes(self) -> int:
        n = self.logits.numel() * 4
        for group in (self.attention, self.hidden, self.scores):
            if group is not None:
                n += sum(x.numel() * 2 for x in group)
        return n


@torch.inference_mode()
def compute_teacher_outputs(teacher, ids: list[list[int]], pad_id: int, device, pairs_teacher: list[int],
                            head_rule: str, student_heads: int, need_attention: bool, need_hidden: bool,
                            batch_size: int = 64, mixed_precision: bool = True,
                            progress: Progress | None = None, need_scores: bool = False) -> TeacherOutputs:
    """One inference pass of the teacher over `ids` (length-sorted batches); the attention scores before the
    softmax only with `need_scores` (they take as much memory as the probabilities)."""
    teacher.eval()
    # eager attention whatever is read: SDPA's logits differ from eager's in the last bits, and a logit-KD variant's
    # numbers must not change because another variant reads the teacher's attention
    set_attention_backend(teacher, eager=True)
    n = len(ids)
    logits = torch.zeros((n, teacher.config.num_labels))
    att = [None] * n if need_attention else None
    hid = [None] * n if need_hidden else None
    scores = [None] * n if need_scores else None
    batches = make_batches([len(x) for x in ids], batch_size, seed=None, buckets=True)
    capture = (AttentionCapture(teacher, pairs_teacher, scores=need_scores) if need_attention or need_scores
               else contextlib.nullcontext())
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
            if need_scores:   # group means of the scores, as of the probabilities; padded keys unmasked, cut below
                raw = mapping.adapt_teacher(capture.pop_scores_stacked().float(), head_rule, student_heads)
                raw = raw.to(torch.float16).cpu()                                               # (B,P,H',T,T)
            if need_hidden:
                hs = torch.stack([out.hidden_states[l + 1] for l in pairs_teacher], 1).to(torch.float16).cpu()
            for j, i in enumerate(index):
                t = len(ids[i])
                if need_attention:
                    att[i] = maps[j, :, :, :t, :t].clone()
                if need_hidden:
                    hid[i] = hs[j, :, :t].clone()
                if need_scores:
                    scores[i] = raw[j, :, :, :t, :t].clone()
            if progress:
                progress("teacher outputs", k + 1, len(batches))
    set_attention_backend(teacher, eager=True)
    return TeacherOutputs(logits, att, hid, scores)


def ids_digest(ids: list[list[int]]) -> str:
    """sha256 of the token ids and of each example's length (so [1, 2], [3] differs from [1], [2, 3])."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))                 # (N,)
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))      # (sum t_i,)
    h = hashlib.sha256(lengths.tobytes())
    h.update(flat.tobytes())
    return h.hexdigest()


def outputs_cacheable(prepared: PreparedTeacher) -> bool:
    """Only a teacher defined by a local folder (a cached fine-tune or a user's folder) has reusable outputs:
    a hub teacher is only known by name, and a new classifier head is random."""
    return not prepared.head_new and (Path(prepared.path) / "config.json").is_file()


def teacher_outputs_key(prepared: PreparedTeacher, ids: list[list[int]], pad_id: int, device, pairs_teacher,
                        head_rule: str, student_heads: int, need_attention: bool, need_hidden: bool,
                        key_parts: dict, mixed_precision: bool, need_scores: bool = False) -> str:
    """Everything that changes compute_teacher_outputs' result. The batch size only changes padding, which the
    attention mask hides, so it is left out. The scores enter the key only when asked for: outputs cached without
    them keep their key, and are never read where scores are wanted."""
    ident = {"teacher": model_content_digest(prepared.path), "num_labels": prepared.model.config.num_labels,
             "parts": key_parts, "ids": ids_digest(ids), "pad_id": pad_id, "pairs": list(pairs_teacher),
             "head_rule": head_rule, "student_heads": student_heads, "attention": need_attention,
             "hidden": need_hidden, "storage": "float16",
             "bf16_autocast": bool(mixed_precision and torch.device(device).type == "cuda"),
             "version": OUTPUTS_VERSION, **({"scores": True} if need_scores else {})}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _pack_outputs(out: TeacherOutputs, lengths: list[int]) -> dict[str, torch.Tensor]:
    """One flat float16 tensor per group: each example's tensor has its own t_i."""
    tensors = {"logits": out.logits.float().contiguous(),                    # (N, C)
               "lengths": torch.tensor(lengths, dtype=torch.int64)}          # (N,)
    if out.attention is not None:
        p, h = out.attention[0].shape[:2]                                    # attention[i]: (P, H', t_i, t_i)
        tensors["attention"] = torch.cat([x.reshape(-1) for x in out.attention])  # (sum P*H'*t_i^2,)
        tensors["attention_dims"] = torch.tensor([p, h], dtype=torch.int64)
    if out.hidden is not None:
        p, _, d = out.hidden[0].shape                                        # hidden[i]: (P, t_i, D)
        tensors["hidden"] = torch.cat([x.reshape(-1) for x in out.hidden])   # (sum P*t_i*D,)
        tensors["hidden_dims"] = torch.tensor([p, d], dtype=torch.int64)
    if out.scores is not None:
        p, h = out.scores[0].shape[:2]                                       # scores[i]: (P, H', t_i, t_i)
        tensors["scores"] = torch.cat([x.reshape(-1) for x in out.scores])   # (sum P*H'*t_i^2,)
        tensors["scores_dims"] = torch.tensor([p, h], dtype=torch.int64)
    return tensors


def _split_flat(flat: torch.Tensor, lengths: list[int], shape: Callable[[int], tuple]) -> list[torch.Tensor]:
    sizes = [int(np.prod(shape(t))) for t in lengths]
    if flat.dtype != torch.float16 or flat.dim() != 1 or flat.numel() != sum(sizes):
        raise ValueError(f"a float16 array of {sum(sizes)} values was expected, not {flat.dtype} {tuple(flat.shape)}")
    return [x.view(shape(t)) for x, t in zip(torch.split(flat, sizes), lengths)]


def _unpack_outputs(tensors: dict, lengths: list[int], num_labels: int, need_attention: bool,
                    need_hidden: bool, need_scores: bool = False) -> TeacherOutputs:
    if tensors["lengths"].tolist() != lengths:
        raise ValueError("its example lengths differ from the token ids'")
    logits = tensors["logits"]
    if logits.dtype != torch.float32 or tuple(logits.shape) != (len(lengths), num_labels):
        raise ValueError(f"logits are {logits.dtype} {tuple(logits.shape)}, not float32 ({len(lengths)}, {num_labels})")
    att = hid = scores = None
    if need_scores:
        if "scores" not in tensors:
            raise ValueError("it holds no attention scores")
        p, h = tensors["scores_dims"].tolist()
        scores = _split_flat(tensors["scores"], lengths, lambda t: (p, h, t, t))
    if need_attention:
        p, h = tensors["attention_dims"].tolist()
        att = _split_flat(tensors["attention"], lengths, lambda t: (p, h, t, t))
    if need_hidden:
        p, d = tensors["hidden_dims"].tolist()
        hid = _split_flat(tensors["hidden"], lengths, lambda t: (p, t, d))
    return TeacherOutputs(logits, att, hid, scores)


def _load_outputs(path: Path, key: str, lengths: list[int], num_labels: int, need_attention: bool,
                  need_hidden: bool, repair: bool, need_scores: bool = False) -> TeacherOutputs | None:
    """The cached outputs, or None when there are none; a damaged file is deleted when `repair` is set."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                raise ValueError("it was written for another key")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        return _unpack_outputs(tensors, lengths, num_labels, need_attention, need_hidden, need_scores)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a truncated file
        if repair:
            log.warning("the cached teacher outputs %s are damaged (%s); they are computed again", path, e)
            with contextlib.suppress(OSError):
                path.unlink()
        return None


def _save_outputs(tmp: Path, out: TeacherOutputs, lengths: list[int], meta: dict[str, str]) -> None:
    """Write the outputs file `tmp` (cache.get_or_build renames it into place)."""
    save_file(_pack_outputs(out, lengths), str(tmp), metadata=meta)


def _outputs_not_saved(e: BaseException) -> None:
    """A failed write only costs the next session the compute."""
    log.warning("could not save the teacher's outputs in %s: %s; they are computed again next session "
                "(free disk space or set ADS_CACHE_DIR to a writable folder)", outputs_dir(), e)


def cached_teacher_outputs(prepared: PreparedTeacher, ids: list[list[int]], pad_id: int, device,
                           pairs_teacher: list[int], head_rule: str, student_heads: int, need_attention: bool,
                           need_hidden: bool, key_parts: dict, batch_size: int = 64, mixed_precision: bool = True,
                           progress: Progress | None = None, need_scores: bool = False) -> tuple[TeacherOutputs, bool]:
    """compute_teacher_outputs, kept on disk for the next session with the same teacher, data and mapping.

    key_parts names what the ids were made from, e.g. {"data": splits.fingerprint + ":train", "max_length": 64}.
    Returns (outputs, hit). A hub teacher, a teacher with a new (random) head, or a cache folder that cannot be
    written only means the outputs are computed as before."""
    def compute() -> TeacherOutputs:
        return compute_teacher_outputs(prepared.model, ids, pad_id, device, pairs_teacher, head_rule, student_heads,
                                       need_attention, need_hidden, batch_size, mixed_precision, progress,
                                       need_scores)
    if not ids or not outputs_cacheable(prepared):
        return compute(), False
    key = teacher_outputs_key(prepared, ids, pad_id, device, pairs_teacher, head_rule, student_heads,
                              need_attention, need_hidden, key_parts, mixed_precision, need_scores)
    slot = CacheSlot(outputs_dir(), key, ".safetensors")
    lengths, num_labels = [len(x) for x in ids], prepared.model.config.num_labels
    meta = {"key": key, "teacher": prepared.path, "data": str(key_parts.get("data", "")),
            "parts": json.dumps(key_parts, sort_keys=True, default=str)}

    def load(repair: bool) -> TeacherOutputs | None:
        return _load_outputs(slot.path, key, lengths, num_labels, need_attention, need_hidden, repair, need_scores)

    def unlocked(e: Exception) -> TeacherOutputs:
        log.warning("the teacher's outputs are computed without caching: %s", e)
        return compute()
    # files are replaced in one rename, so a first read needs no lock
    out, hit = get_or_build(slot, load, compute, lambda value, tmp: _save_outputs(tmp, value, lengths, meta),
                            write_errors=(Exception,), write_failed=_outputs_not_saved, read_unlocked=True,
                            unlocked=unlocked)
    if hit and progress:
        progress("teacher outputs", 1, 1)
    return out, hit


def teacher_evaluation(prepared: PreparedTeacher, key: str, compute: Callable[[], dict]) -> dict:
    """The teacher's {"accuracy", "loss", "predictions"} on a split, computed once per cached teacher and split.

    A fine-tuned teacher's cache folder is keyed by its data split and max_length, so its answers on that
    split never change: they are kept in the folder's distill_eval.json. Other teachers are evaluated each time.
    """
    if not prepared.finetuned:
        return compute()
    path = Path(prepared.path) / "distill_eval.json"
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        known = {}
    if isinstance(known.get(key), dict) and {"accuracy", "loss", "predictions"} <= set(known[key]):
        return known[key]
    value = compute()
    try:
        atomic_write_json(path, {**known, key: value})
    except OSError as e:  # a read-only cache only costs the next session this evaluation
        log.warning("could not save the teacher's evaluation in %s: %s", path, e)
    return value


def teacher_logits(prepared: PreparedTeacher, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The teacher's (N, C) logits on a split, kept beside its evaluation (distill_eval.json) when it was fine-tuned
    here, like `teacher_evaluation`: an ensemble is judged on them without running its teachers again."""
    name = f"logits:{key}"
    if prepared.finetuned:
        try:
            known = json.loads((Path(prepared.path) / "distill_eval.json").read_text())
            return torch.tensor(known[name]["logits"], dtype=torch.float32)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    logits = compute().float().cpu()
    teacher_evaluation(prepared, name, lambda: {"accuracy": None, "loss": None, "predictions": [],
                                                "logits": logits.tolist()})
    return logits


def teacher_size_bytes(path: str) -> int:
    p = Path(path)
    files = list(p.glob("*.safetensors")) or list(p.glob("*.bin"))
    return int(sum(f.stat().st_size for f in files)) if files else 0

