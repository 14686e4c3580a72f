"""Training an image model here, and the built-in image teachers ("cnn" and "vit" from scratch, "mobilenet" from its
ImageNet weights): trained on the session's training images (plus the labelled images no split took), the epoch
with the best validation accuracy kept, and saved
(safetensors) under cache_root()/image_teachers/<key>, the key naming everything that changes the result."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import fit_curve
from ...cache import CacheSlot, data_digest, get_or_build, image_teachers_dir, read_fit
from ...config import IMAGE_TEACHERS, MAX_FLOOR_EPOCHS, SessionConfig, floor_epochs
from ...errors import ConfigError, ModelError, NonFiniteLossError
from ...models import eval_mode, resolve_source, set_attention_backend
from ...optim import make_optimizer, warmup_cosine
from ...store import atomic_write_json
from ...teacher import PreparedTeacher, part_indices
from .data import ImageSplits, to_tensor
from .models import (build_cnn, build_vit, check_patch, load_image_model, load_image_model_info, model_family,
                     save_image_model, training_layout)
from .mobilenet import imagenet_mobilenet

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]   # (phase, done, total) -> None; may raise to stop


def _augment(images: torch.Tensor, gen: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random shifts of up to `shift` pixels in each direction with zero fill: uint8 (B, H, W, C) -> same shape."""
    b, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, shift, shift, shift, shift))                 # (B, H+2s, W+2s, C)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)                  # (B,)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    rows = torch.arange(h)[None, :] + dy[:, None]                              # (B, H)
    cols = torch.arange(w)[None, :] + dx[:, None]                              # (B, W)
    return padded[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]   # (B, H, W, C)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one example joins the one before (BatchNorm needs two)."""
    order = torch.randperm(n, generator=gen)
    out = list(torch.split(order, batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


@torch.inference_mode()
def predict_images(model, images: np.ndarray, device, batch_size: int = 256) -> torch.Tensor:
    """(N, C) float32 logits on the CPU of uint8 images (N, H, W, C), in eval mode."""
    device = torch.device(device)
    out = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = to_tensor(images[i:i + batch_size]).to(device)               # (b, C, H, W)
            out.append(model(pixel_values=x).logits.float().cpu())           # (b, num_labels)
    if not out:
        n = model.config.num_labels
        return torch.zeros((0, n))
    return torch.cat(out)


def _accuracy(model, images: np.ndarray, labels, device) -> float:
    logits = predict_images(model, images, device)
    return float((logits.argmax(-1) == torch.as_tensor(list(labels), dtype=torch.long)).double().mean())


def train_image_model(model, train: tuple[np.ndarray, list[int]], val: tuple[np.ndarray, list[int]], *, epochs: int,
                      lr: float, batch_size: int, device, seed: int, progress: Progress | None = None,
                      augment: bool = True) -> dict:
    """Train an image classifier in place: AdamW, a short linear warm-up then cosine decay, shuffled batches,
    optional random shifts of up to 2 pixels; after each epoch the validation accuracy, and at the end the weights
    of the epoch with the best one (the later of equal ones) are kept. Shifts help a CNN; a small ViT trained for
    a few epochs underfits with them (MNIST 5k, 10 epochs: 79% with shifts, 88% without), so the built-in ViT
    teacher trains without.

    Returns {"examples", "epochs": [{"epoch", "val_accuracy", "train_loss"}], "kept_epoch", "val_accuracy",
    "train_s"}. Deterministic for a seed on the CPU (the caller's global RNG is left as it was)."""
    device = torch.device(device)
    images, labels = train
    val_images, val_labels = val
    n = len(images)
    if n != len(labels):
        raise ValueError(f"{n} training images but {len(labels)} labels")
    if n < 2:
        raise ConfigError(f"an image model needs at least 2 training images, not {n}")
    is_vit = model_family(model) == "vit"
    run = _start_training(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size, device=device,
                          seed=seed, is_vit=is_vit, augment=augment, progress=progress)
    has_val = len(val_labels) > 0
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))                   # dropout
        curve, best, best_state = _train_epochs(run, epochs, val if has_val else None)
    if best_state is not None and best != curve[-1]["epoch"]:
        model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    if is_vit:
        set_attention_backend(model, eager=True)
    kept = best if best is not None else epochs
    if curve and has_val:
        val_acc = curve[kept - 1]["val_accuracy"]
    else:
        val_acc = _accuracy(model, val_images, val_labels, device) if has_val else None
    return {"examples": n, "epochs": curve, "kept_epoch": kept, "val_accuracy": val_acc,
            "train_s": round(time.time() - t0, 2)}


@dataclass
class _ImageTraining:
    """What one image model trains with: its data, optimiser, schedule, shuffling generator and step count."""
    model: nn.Module
    x_all: torch.Tensor                # (N, H, W, C) uint8
    y_all: torch.Tensor                # (N,)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator               # shuffles and shifts
    batch_size: int
    total: int                         # steps of the whole training
    layout: torch.memory_format
    device: torch.device
    lr: float
    augment: bool
    progress: Progress | None
    step: int = 0

    def train_epoch(self, epoch: int) -> list[float]:
        """One pass over the shuffled training images; each batch's loss."""
        self.model.train()
        losses = []
        for index in _batches(len(self.y_all), self.batch_size, self.gen):
            xb = self.x_all[index]                                             # (B, H, W, C) uint8
            if self.augment:
                xb = _augment(xb, self.gen)
            x = xb.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)                  # (B, C, H, W), as to_tensor
            x = x.to(self.device, memory_format=self.layout)
            logits = self.model(pixel_values=x).logits                         # (B, num_labels)
            loss = F.cross_entropy(logits.float(), self.y_all[index].to(self.device))
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"the image model's training loss became {loss.item()} in epoch "
                                         f"{epoch}; lower the learning rate (now {self.lr})")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            self.step += 1
            if self.progress:
                self.progress("train teacher", self.step, self.total)
        return losses


def _start_training(model, images: np.ndarray, labels, *, epochs: int, lr: float, batch_size: int, device,
                    seed: int, is_vit: bool, augment: bool, progress: Progress | None) -> _ImageTraining:
    """Move the model to `device` in its training layout and make its optimiser and schedule."""
    model.to(device)
    if is_vit:
        set_attention_backend(model, eager=False)      # attention is not read here: the fast path
    layout = training_layout(device, is_vit)
    model.to(memory_format=layout)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = make_optimizer(None, [{"params": decay, "weight_decay": 0.05 if is_vit else 5e-4},
                                {"params": no_decay, "weight_decay": 0.0}], lr, 0.0, device)
    gen = torch.Generator().manual_seed(int(seed))
    steps_per_epoch = len(_batches(len(images), batch_size, torch.Generator().manual_seed(0)))
    total = steps_per_epoch * epochs
    # a ViT from scratch learns faster with a longer warm-up (MNIST 5k, 5 epochs: 65% against 59% with 5%)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, 0.15 if is_vit else 0.05))
    x_all = torch.from_numpy(np.ascontiguousarray(images))                     # (N, H, W, C) uint8
    y_all = torch.as_tensor(list(labels), dtype=torch.long)                    # (N,)
    return _ImageTraining(model, x_all, y_all, opt, sched, gen, batch_size, total, layout, device, lr, augment,
                          progress)


def _train_epochs(run: _ImageTraining, epochs: int, val: tuple[np.ndarray, list[int]] | None):
    """Train `epochs` epochs; (the curve, the epoch of the best validation accuracy, its weights), the last two
    None without validation images."""
    curve, best, best_state = [], None, None
    for epoch in range(1, epochs + 1):
        losses = run.train_epoch(epoch)
        acc = _accuracy(run.model, val[0], val[1], run.device) if val is not None else None
        curve.append({"epoch": epoch, "val_accuracy": acc, "train_loss": round(float(np.mean(losses)), 5)})
        fit_curve.point(**curve[-1])              # drawn live while the class waits
        if val is not None and (best is None or acc >= curve[best - 1]["val_accuracy"]):   # ties: the later, annealed one
            best, best_state = epoch, copy.deepcopy(run.model.state_dict())
    return curve, best, best_state


# ---- the built-in image teachers ----------------------------------------------------------------------------------

IMAGE_TEACHER_VERSION = 3      # bump when the teacher recipe changes what it produces


def _teacher_extra(cfg: SessionConfig, splits: ImageSplits) -> tuple[np.ndarray | None, list[int]]:
    """The labelled images outside the splits a built-in teacher also learns from: all of them with
    teacher.finetune_on "all", none with "train" (the students' training split only)."""
    if cfg.teacher.finetune_on != "all" or splits.extra_images is None:
        return None, []
    return splits.extra_images, list(splits.extra_labels)


def learned_from(cfg: SessionConfig, splits: ImageSplits) -> str:
    """What a built-in image teacher learns from, as teacher.learned_from: its images and labels in the order it
    reads them, the validation split that picks its epoch, and the class names."""
    images, labels = _teacher_training_data(cfg, splits)
    return data_digest(splits.label_names, np.ascontiguousarray(images), labels,
                       np.ascontiguousarray(splits.val_images), list(splits.val_labels))


def image_teacher_key(cfg: SessionConfig, splits: ImageSplits) -> str:
    """sha256[:16] of everything that changes a built-in teacher: the recipe version, teacher.source, the image
    section's teacher_* settings (and image.patch for a ViT), the data and split, the image size and channels, the
    number of labels and teacher.seed."""
    im = cfg.image
    teacher_fields = {f.name: (list(v) if isinstance(v := getattr(im, f.name), tuple) else v)
                      for f in dataclasses.fields(im) if f.name.startswith("teacher_")}
    if cfg.teacher.source in IMAGE_TEACHERS:         # 0 and the teacher's own value alike
        teacher_fields["teacher_epochs"] = image_teacher_epochs(cfg, splits)
        teacher_fields["teacher_lr"] = im.lr_for(cfg.teacher.source)
    if cfg.teacher.source == "mobilenet":
        teacher_fields["teacher_input_size"] = im.input_size_for(splits.size)
    else:
        teacher_fields.pop("teacher_input_size", None)   # only the mobilenet reads it
    ident = {"version": IMAGE_TEACHER_VERSION, "source": cfg.teacher.source, "image": teacher_fields,
             "patch": im.patch if cfg.teacher.source == "vit" else None, "data": learned_from(cfg, splits),
             "size": list(splits.size), "channels": splits.channels, "num_labels": splits.num_labels,
             "seed": cfg.teacher.seed,
             **({"part": list(cfg.teacher.part)} if cfg.teacher.part != (1, 1) else {})}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def build_image_teacher(cfg: SessionConfig, splits: ImageSplits) -> nn.Module:
    """The built-in teacher named by teacher.source before its training on the session's data: a CNN or ViT from
    scratch, or the ImageNet MobileNetV2 with a new classifier; seeded by teacher.seed."""
    im, source = cfg.image, cfg.teacher.source
    if source == "vit":
        check_patch(splits.size, im.patch)
    torch.manual_seed(cfg.teacher.seed)
    if source == "mobilenet":
        return imagenet_mobilenet(splits.channels, splits.num_labels, im.input_size_for(splits.size))
    if source == "cnn":
        return build_cnn(splits.channels, splits.num_labels, im.teacher_widths, im.teacher_blocks)
    if source == "vit":
        return build_vit(channels=splits.channels, image_size=splits.size, patch=im.patch, layers=im.teacher_layers,
                         heads=im.teacher_heads, hidden=im.teacher_hidden, num_labels=splits.num_labels)
    raise ConfigError(f"teacher.source {source!r} is not a built-in image teacher ({', '.join(IMAGE_TEACHERS)})")


def prepare_image_teacher(cfg: SessionConfig, splits: ImageSplits, device, progress: Progress | None = None):
    """The session's image teacher: a built-in one ("cnn", "vit") trained once on the training images (plus the
    labelled images no split took) and cached, or a saved image classifier loaded as it is."""
    device = torch.device(device)
    source = cfg.teacher.source
    if source not in IMAGE_TEACHERS:
        model, head_new = load_image_model_info(source, splits.num_labels)
        return PreparedTeacher(model.to(device).eval(), None, resolve_source(source)[0], False, False,
                               head_new=head_new)
    if source == "vit":
        check_patch(splits.size, cfg.image.patch)     # refused before any training
    slot = CacheSlot(image_teachers_dir(), image_teacher_key(cfg, splits))
    target = slot.path

    def build():
        log.info("training the %s teacher (one time, cached in %s)", source, target)
        return _train_image_teacher(cfg, splits, device, progress)

    def write(built, tmp: Path) -> None:
        model, fit = built
        save_image_model(model.cpu(), tmp)
        atomic_write_json(tmp / "distill_fit.json", {"source": source, "key": slot.key, "data": splits.fingerprint,
                                                     "fit": fit})

    def write_failed(e: BaseException):
        raise ModelError(f"could not save the trained image teacher in {slot.folder}: {e}; free disk space or "
                         f"set ADS_CACHE_DIR to a writable folder") from None
    model, cached = get_or_build(slot, lambda repair: _load_cached_image_teacher(target), build, write,
                                 write_errors=(OSError,), write_failed=write_failed,
                                 reread=lambda: load_image_model(str(target)))   # what a later session loads, exactly
    return PreparedTeacher(model.to(device).eval(), None, str(target), True, cached, head_new=False,
                           fit=read_fit(target / "distill_fit.json"))


def _load_cached_image_teacher(target: Path) -> nn.Module | None:
    """The built-in teacher cached in `target`, or None when there is none (a damaged one is deleted)."""
    if not (target / "config.json").is_file():
        return None
    try:
        return load_image_model(str(target))
    except ModelError as e:
        log.warning("the cached image teacher in %s is damaged and is trained again: %s", target, e)
        shutil.rmtree(target, ignore_errors=True)
        return None


def _teacher_training_data(cfg: SessionConfig, splits: ImageSplits) -> tuple[np.ndarray, list[int]]:
    """The images a built-in teacher trains on: the training split, plus the labelled images no split took when
    teacher.finetune_on is "all", then teacher.part's share of them."""
    images, labels = splits.train_images, list(splits.train_labels)
    extra_images, extra_labels = _teacher_extra(cfg, splits)
    if len(extra_labels):
        order = splits.teacher_order
        images = np.concatenate([images, extra_images])
        labels = labels + extra_labels
        if order is not None:
            images, labels = images[order], [labels[i] for i in order]
    keep = part_indices(len(labels), cfg.teacher.part)
    return images[keep], [labels[i] for i in keep]


def image_teacher_epochs(cfg: SessionConfig, splits: ImageSplits) -> int:
    """The epochs a built-in teacher trains: image.teacher_epochs (or the teacher's own), or more on small data so
    that it takes at least teacher.finetune_min_steps optimisation steps, as a text teacher's fine-tune does (at
    most MAX_FLOOR_EPOCHS["teacher"] epochs in all)."""
    asked = cfg.image.epochs_for(cfg.teacher.source)
    n = len(_teacher_training_data(cfg, splits)[1])
    steps = len(_batches(n, cfg.image.teacher_batch_size, torch.Generator().manual_seed(0))) if n else 0
    return floor_epochs(asked, steps, cfg.teacher.finetune_min_steps, MAX_FLOOR_EPOCHS["teacher"])


def _train_image_teacher(cfg: SessionConfig, splits: ImageSplits, device, progress: Progress | None):
    """(the built-in teacher trained on _teacher_training_data for image_teacher_epochs, the fit record)."""
    source, im = cfg.teacher.source, cfg.image
    model = build_image_teacher(cfg, splits)
    images, labels = _teacher_training_data(cfg, splits)
    epochs = image_teacher_epochs(cfg, splits)
    fit = train_image_model(model, (images, labels), (splits.val_images, list(splits.val_labels)),
                            epochs=epochs, lr=im.lr_for(source), batch_size=im.teacher_batch_size,
                            device=device, seed=cfg.teacher.seed, progress=progress, augment=source != "vit")
    if epochs != im.epochs_for(source):
        fit["epochs_asked"] = im.epochs_for(source)
    if source == "mobilenet":
        fit["pretrained"] = {"model": "MobileNetV2", "on": "ImageNet", "input_size": model.config.input_size}
    return model, fit
