"""Images: the three splits as uint8 arrays, fixed-size shuffled batches, and what an attention map is for each
model family.

    CNN  (Zagoruyko & Komodakis)  a stage's activation attention: the channel mean of |A|^2 over its (h, w) grid.
         Recorded per probe image as (S, 1, 1, H*W): one "head", one "query row", a distribution over the image's
         pixels (each stage's map bilinearly upsampled to the image size).
    ViT  the self-attention of every layer, (L, H, T, T) with T = 1 + patches (the [CLS] token first), like text.
"""
from __future__ import annotations

import numpy as np
import torch

from ... import mapping
from ...activation import activation_attention, activation_map
from ...capture import AttentionCapture
from ...config import image_session_problem, image_teacher_family
from ...errors import ConfigError
from ...evaluate import accuracy_and_loss, autocast_for
from ...models import set_attention_backend
from ...objectives import ACTIVATION, ATTENTION, ATTENTION_INPUTS, ATTENTION_SCORES, HIDDEN, TEACHER_LOGITS
from ...store import atomic_write_json
from ..base import Batch, TeacherBatch
from .data import ImageSplits, to_tensor
from .models import check_patch, model_family, num_maps

SPLITS = ("train", "val", "test", "extra")


def check_image_session(cfg, image_size: tuple[int, int], teacher_family: str | None = None,
                        student_family: str | None = None) -> None:
    """Refuse what cannot train, before any work: a ViT patch that does not divide the images (for the ViTs built
    here), and losses that compare maps the teacher and student do not both have (config.image_session_problem)."""
    t = teacher_family or image_teacher_family(cfg.teacher.source)
    s = student_family or cfg.image.student_family or t
    builds_vit = cfg.teacher.source == "vit" or (s == "vit" and not cfg.student.source)
    if builds_vit:
        check_patch(image_size, cfg.image.patch)
    problem = image_session_problem(cfg.variants, t, s)
    if problem:
        raise ConfigError(problem)


def describe_maps(model, image_size: tuple[int, int]) -> dict:
    """What the positions of a model's recorded maps are: a CNN's stages and their sizes, or a ViT's layers, heads,
    patch grid and token names ([CLS] first, then the patches row by row)."""
    family = model_family(model)
    count, heads = num_maps(model)
    if family == "cnn":
        return {"family": "cnn", "stages": count, "sizes": [list(x) for x in model.stage_sizes(image_size)]}
    patch = int(model.config.patch_size)
    grid = [image_size[0] // patch, image_size[1] // patch]
    return {"family": "vit", "layers": count, "heads": heads, "patch": patch, "grid": grid,
            "tokens": ["[CLS]"] + [f"r{r}c{c}" for r in range(grid[0]) for c in range(grid[1])]}


class ImageModality:
    """The splits' images, each batch made on demand; every variant is fed the same batches."""
    kind = "image"
    saved_as = "preprocess"     # the folder under a run's models/ that save() fills

    def __init__(self, splits: ImageSplits, tokens: int = 1):
        self.splits = splits
        empty = np.zeros((0, *splits.train_images.shape[1:]), dtype=np.uint8)
        self.images = {"train": splits.train_images, "val": splits.val_images, "test": splits.test_images,
                       "extra": splits.extra_images if splits.extra_images is not None else empty}
        self.labels = {"train": list(splits.train_labels), "val": list(splits.val_labels),
                       "test": list(splits.test_labels), "extra": list(splits.extra_labels)}
        self.notices = list(splits.notices)
        self.tokens = tokens            # positions an attention row has (ViT: 1 + patches; CNN: 1)
        self.probe_images = splits.val_images[splits.probe_indices]

    def size(self, split: str) -> int:
        return len(self.images[split])

    def batches(self, split: str, batch_size: int, seed: int | None, buckets: bool = True) -> list:
        """Index batches of a split: shuffled with `seed` (None: in order). Images have no lengths to bucket."""
        n = self.size(split)
        order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]

    def _batch(self, images: np.ndarray, labels, index, device) -> Batch:
        nb = device.type == "cuda"
        x = to_tensor(images).to(device, non_blocking=nb)                  # (B, C, H, W)
        mask = torch.ones((len(images), self.tokens), dtype=torch.long, device=device)   # every patch is real
        y = torch.tensor(labels, dtype=torch.long).to(device, non_blocking=nb)
        return Batch({"pixel_values": x}, mask, y, list(index))

    def batch(self, split: str, index, device: torch.device) -> Batch:
        index = np.asarray(index, dtype=int)
        return self._batch(self.images[split][index], [self.labels[split][i] for i in index], index, device)

    def probe_batch(self, device: torch.device) -> Batch:
        n = len(self.probe_images)
        return self._batch(self.probe_images, [0] * n, range(n), device)

    def probe_lengths(self) -> list[int]:
        return [self.tokens] * len(self.probe_images)

    def probe_record(self) -> dict:
        """What the pages show about the probe images: the pixels as the models see them (H, W) or (H, W, C), their
        labels and captions."""
        s = self.splits
        imgs = self.probe_images
        pixels = [(im[..., 0] if im.shape[-1] == 1 else im).tolist() for im in imgs]
        return {"texts": [f"validation image {i} ({s.label_names[s.val_labels[i]]})" for i in s.probe_indices],
                "labels": [s.val_labels[i] for i in s.probe_indices], "label_names": s.label_names,
                "images": pixels, "image_size": list(s.size), "channels": s.channels}

    # ---- attention maps of one model on the probe images ------------------------------------------------------
    @torch.inference_mode()
    def probe_maps(self, model, device: torch.device) -> list[np.ndarray]:
        """Per probe image: (S, 1, 1, H*W) activation attention of a CNN's stages, or (L, H, T, T) of a ViT."""
        model.eval()
        x = self.probe_batch(device).inputs["pixel_values"]
        if model_family(model) == "cnn":
            feats = model(pixel_values=x, output_hidden_states=True).hidden_states
            maps = torch.stack([activation_map(f, self.splits.size) for f in feats], 1)    # (B, S, H*W)
            maps = maps[:, :, None, None, :].float().cpu()                                  # (B, S, 1, 1, H*W)
        else:
            set_attention_backend(model, eager=True)
            with AttentionCapture(model) as cap:
                model(pixel_values=x)
                maps = cap.pop_stacked().float().cpu()                                     # (B, L, H, T, T)
        return [m.numpy() for m in maps]

    # ---- accuracy and speed -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, model, split: str, device, mixed_precision: bool = True, batch_size: int = 256) -> torch.Tensor:
        """(N, C) float32 logits of a split, in split order."""
        model.eval()
        images = self.images[split]
        out = []
        for i in range(0, len(images), batch_size):
            with autocast_for(device, mixed_precision):
                out.append(model(pixel_values=to_tensor(images[i:i + batch_size]).to(device)).logits.float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def evaluate(self, model, split: str, device, mixed_precision: bool = True) -> tuple[float, float]:
        """(accuracy, cross-entropy) of a classifier on a split."""
        return accuracy_and_loss(self.logits(model, split, device, mixed_precision), self.labels[split])

    def predict(self, model, split: str, device, mixed_precision: bool = True) -> dict:
        logits = self.logits(model, split, device, mixed_precision)
        acc, loss = accuracy_and_loss(logits, self.labels[split])
        return {"accuracy": acc, "loss": loss, "predictions": logits.argmax(-1).tolist()}

    def latency_examples(self, device) -> list[dict]:
        """Each probe image alone (a batch of 1) as a model's keyword arguments, pixel_values (1, C, H, W), on
        `device`: what latency.measure_latency times."""
        x = self.probe_batch(device).inputs["pixel_values"]                # (P, C, H, W)
        return [{"pixel_values": x[i][None]} for i in range(len(x))]

    def save(self, folder) -> None:
        """What a run keeps to read images again: preprocess.json (size, channels, scaling, label names)."""
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / "preprocess.json", {
            "modality": "image", "image_size": list(self.splits.size), "channels": self.splits.channels,
            "scale": "pixel / 127.5 - 1", "label_names": self.splits.label_names})


class ImageTeacherOutputs:
    """The teacher's outputs on each batch, computed when the batch is made (images are cheap to run; augmented
    copies differ every time): logits, mapped ViT attention (probabilities, scores before the softmax) reduced to the
    compared heads, or the mapped CNN stages' activation attention."""

    def __init__(self, model, needs: frozenset, teacher_layers: list[int], head_rule: str, student_heads: int,
                 device, mixed_precision: bool):
        self.model, self.needs, self.layers = model, needs, teacher_layers
        self.head_rule, self.student_heads = head_rule, student_heads
        self.device, self.mixed_precision = device, mixed_precision
        self.family = model_family(model)

    @torch.no_grad()
    def __call__(self, batch: Batch):
        self.model.eval()
        x = batch.inputs["pixel_values"]
        out = TeacherBatch()
        hidden = HIDDEN in self.needs
        with autocast_for(self.device, self.mixed_precision):
            if self.family == "cnn":
                res = self.model(pixel_values=x, output_hidden_states=ACTIVATION in self.needs)
                if ACTIVATION in self.needs:
                    out.activation = [activation_attention(res.hidden_states[t]) for t in self.layers]  # (B, h*w)
            elif self.needs & ATTENTION_INPUTS:
                set_attention_backend(self.model, eager=True)
                scores = ATTENTION_SCORES in self.needs
                with AttentionCapture(self.model, self.layers, scores=scores) as cap:
                    res = self.model(pixel_values=x, output_hidden_states=hidden)
                    att = cap.pop_stacked().float()                                    # (B, P, H, T, T)
                    raw = cap.pop_scores_stacked().float() if scores else None         # (B, P, H, T, T)
                if ATTENTION in self.needs:
                    out.attention = mapping.adapt_teacher(att, self.head_rule, self.student_heads)
                if scores:
                    out.scores = mapping.adapt_teacher(raw, self.head_rule, self.student_heads)
            else:
                set_attention_backend(self.model, eager=False)
                res = self.model(pixel_values=x, output_hidden_states=hidden)
            if hidden and self.family != "cnn":
                out.hidden = torch.stack([res.hidden_states[t + 1] for t in self.layers], 1).float()  # (B, P, T, D)
        if TEACHER_LOGITS in self.needs:
            out.logits = res.logits.float()
        return out
