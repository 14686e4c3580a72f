"""Attacks on a model, measured: accuracy under PGD at several strengths, and one text's attention under attack.

Text models are attacked on their word embeddings (strategies.adversarial): every token's perturbation is at most
epsilon times the norm of its own embedding, found against each model separately by maximising its cross-entropy
with the true labels, in eval mode (no dropout). Image models are attacked on their pixels (L-infinity, epsilon a
fraction of the pixel range). Every model answers the same examples, the first `limit` in split order.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .batching import collate, make_batches
from .capture import AttentionCapture
from .errors import ConfigError, DataError
from .modality.vision.data import to_tensor
from .models import eval_mode, set_attention_backend
from .strategies.adversarial import (attack, climb, forward_embeds, pixel_attack, random_start, token_norms,
                                     word_embeddings)

EPSILONS = (0.0, 0.02, 0.05, 0.1)    # relative to each token's embedding norm; 0 = clean accuracy
STEPS = 3                            # PGD steps per example and epsilon
LIMIT = 500                          # test examples used: the first LIMIT in split order
ATTACK = "PGD on word embeddings, epsilon relative to each token's embedding norm"


def step_size(epsilon: float, steps: int) -> float:
    """The PGD step, relative like epsilon: 2.5 * epsilon / steps (Madry et al.), as the training attack's default."""
    return 2.5 * epsilon / max(1, steps)


def check_settings(epsilons, steps, limit) -> None:
    """Raise ConfigError naming the fix when the attack's settings are out of range."""
    for e in epsilons:
        if not isinstance(e, (int, float)) or isinstance(e, bool) or not math.isfinite(e) or e < 0:
            raise ConfigError(f"epsilon must be a finite number of 0 or more (e.g. 0,0.02,0.05,0.1), not {e!r}")
    if not epsilons:
        raise ConfigError("give at least one epsilon (e.g. 0,0.02,0.05,0.1)")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"steps must be a whole number of at least 1 (e.g. 3), not {steps!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"limit must be a whole number of at least 1 (e.g. 500), not {limit!r}")


def correct_under_attack(model: nn.Module, inputs: dict, labels: torch.Tensor, epsilon: float, steps: int) -> int:
    """How many examples of one batch the model still classifies right after PGD at `epsilon`."""
    delta = attack(model, inputs, inputs["attention_mask"], lambda logits: F.cross_entropy(logits.float(), labels),
                   epsilon, steps, step_size(epsilon, steps))                           # (B, T, D)
    with torch.no_grad():
        emb = word_embeddings(model, inputs["input_ids"])
        logits = forward_embeds(model, inputs, emb + delta).logits                      # (B, C)
    return int((logits.argmax(-1) == labels).sum())


def robust_accuracy(model: nn.Module, ids: list[list[int]], labels: list[int], pad_id: int, device,
                    epsilons=EPSILONS, steps: int = STEPS, batch_size: int = 64, limit: int = LIMIT) -> list[float]:
    """Accuracy at each epsilon on the first `limit` examples of `ids` (in their order), the model in eval mode
    (restored afterwards). Epsilon 0 gives the plain accuracy."""
    ids, labels = ids[:limit], labels[:limit]
    if not ids:
        raise DataError("no examples to measure robustness on")
    device = torch.device(device)
    correct = [0] * len(epsilons)
    with eval_mode(model):
        for index in make_batches([len(x) for x in ids], batch_size, seed=None):
            input_ids, mask = collate(ids, index, pad_id)                                # (B, T), (B, T)
            inputs = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
            y = torch.tensor([labels[i] for i in index], dtype=torch.long, device=device)
            for k, eps in enumerate(epsilons):
                correct[k] += correct_under_attack(model, inputs, y, float(eps), steps)
    return [c / len(ids) for c in correct]


def _curves(models: dict[str, nn.Module], measure: Callable[[nn.Module], list[float]], n: int, epsilons, steps: int,
            attack: str, progress: Callable[[str, int, int], None] | None) -> dict:
    """The robustness.json record: `measure(model)` (accuracy per epsilon) of every model, in turn."""
    t0 = time.perf_counter()
    accuracy = {}
    for k, (name, model) in enumerate(models.items()):
        if progress:
            progress(f"robustness: {name}", k, len(models))
        accuracy[name] = measure(model)
    if progress:
        progress("robustness", len(models), len(models))
    return {"epsilons": [float(e) for e in epsilons], "steps": steps, "n": n, "split": "test",
            "attack": attack, "accuracy": accuracy, "seconds": round(time.perf_counter() - t0, 2)}


def robustness_curves(models: dict[str, nn.Module], ids: list[list[int]], labels: list[int], pad_id: int, device,
                      epsilons=EPSILONS, steps: int = STEPS, limit: int = LIMIT,
                      progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The robustness.json record: accuracy per epsilon of every model on the first `limit` examples.
    `progress(phase, done, total)` hears after each model."""
    check_settings(epsilons, steps, limit)
    return _curves(models, lambda m: robust_accuracy(m, ids, labels, pad_id, device, epsilons, steps, limit=limit),
                   len(ids[:limit]), epsilons, steps, ATTACK, progress)


IMAGE_EPSILONS = (0.0, 0.05, 0.1, 0.2)      # fractions of the pixel range (L-infinity); 0 = clean accuracy
IMAGE_ATTACK = "PGD on pixels, epsilon a fraction of the pixel range (L-infinity)"


def robust_image_accuracy(model: nn.Module, images: np.ndarray, labels: list[int], device, epsilons=IMAGE_EPSILONS,
                          steps: int = STEPS, batch_size: int = 128, limit: int = LIMIT) -> list[float]:
    """Accuracy at each epsilon on the first `limit` images (N, H, W, C) uint8, under pixel-space PGD against the
    model's cross-entropy with the true labels, in eval mode (restored afterwards)."""
    images, labels = images[:limit], labels[:limit]
    if not len(images):
        raise DataError("no images to measure robustness on")
    device = torch.device(device)
    correct = [0] * len(epsilons)
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = to_tensor(images[i:i + batch_size]).to(device)                          # (B, C, H, W)
            y = torch.tensor(labels[i:i + batch_size], dtype=torch.long, device=device)
            for k, eps in enumerate(epsilons):
                delta = pixel_attack(model, x, lambda logits: F.cross_entropy(logits.float(), y), float(eps), steps,
                                     step_size(float(eps), steps))
                with torch.no_grad():
                    correct[k] += int((model(pixel_values=x + delta).logits.argmax(-1) == y).sum())
    return [c / len(images) for c in correct]


def image_robustness_curves(models: dict[str, nn.Module], images: np.ndarray, labels: list[int], device,
                            epsilons=IMAGE_EPSILONS, steps: int = STEPS, limit: int = LIMIT,
                            progress: Callable[[str, int, int], None] | None = None) -> dict:
    """robustness.json of an image run: as robustness_curves, with the attack on the pixels."""
    check_settings(epsilons, steps, limit)
    return _curves(models, lambda m: robust_image_accuracy(m, images, labels, device, epsilons, steps, limit=limit),
                   len(images[:limit]), epsilons, steps, IMAGE_ATTACK, progress)


def attention_under_attack(model: nn.Module, input_ids: torch.Tensor, epsilon: float, steps: int = STEPS) -> dict:
    """One text's attention, clean and under PGD at `epsilon`, with the class probabilities before and after.

    The attack pushes the model away from its own clean prediction (maximises KL(clean || attacked)), so no label
    is needed. KL has no gradient at delta = 0, so it starts from a small random delta (a fixed seed: the same
    text gives the same result). input_ids: (1, T). Returns "clean" and "attacked" (L, H, T, T) float32,
    "probs_clean" and "probs_attacked" (C,), "delta_norm" (T,): each token's ||delta|| / ||e||."""
    set_attention_backend(model, eager=True)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    mask = inputs["attention_mask"]
    with torch.no_grad():
        emb = word_embeddings(model, input_ids).detach()                                # (1, T, D)
    clean_maps, clean_logits = _attend(model, inputs, emb)
    delta = torch.zeros_like(emb)
    if epsilon > 0:
        p_clean = torch.softmax(clean_logits.float(), -1)                               # (1, C)

        def away(logits):
            return F.kl_div(F.log_softmax(logits.float(), -1), p_clean, reduction="batchmean")

        start = random_start(emb, token_norms(emb), 0.1 * epsilon, mask, torch.Generator().manual_seed(0))
        delta = climb(model, inputs, emb, start, mask, away, epsilon, steps, step_size(epsilon, steps))
    attacked_maps, attacked_logits = _attend(model, inputs, emb + delta)
    ratio = (delta.norm(dim=-1) / token_norms(emb)[..., 0].clamp_min(1e-12))[0]        # (T,)
    return {"clean": clean_maps, "attacked": attacked_maps,
            "probs_clean": torch.softmax(clean_logits[0].float(), -1).numpy(),
            "probs_attacked": torch.softmax(attacked_logits[0].float(), -1).numpy(),
            "delta_norm": ratio.numpy().astype(np.float32)}


@torch.no_grad()
def _attend(model: nn.Module, inputs: dict, embeds: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Attention (L, H, T, T) and logits (1, C) of one example given its word embeddings."""
    with AttentionCapture(model) as cap:
        logits = forward_embeds(model, inputs, embeds).logits
        maps = cap.pop_stacked()[0].float().numpy()                                     # (L, H, T, T)
    return maps.astype(np.float32), logits
