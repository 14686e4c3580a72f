"""Attention heads of a transformer student: masking them, their importance and which to prune.

Head pruning (Michel, Levy and Neubig 2019, "Are Sixteen Heads Really Better than One?"). A mask m (layers, heads)
multiplies each head's context vector before the layer's attention output projection (a forward pre-hook:
transformers 5 has no `prune_heads` or `head_mask`); m = 0 makes the head's contribution exactly zero. A head's
importance is the paper's E_x |dL(x)/dm|: the absolute gradient of one example's loss (its cross-entropy on its
true label, the model in eval mode), taken per example and then averaged over the examples, so that examples
pulling a head in opposite directions do not cancel; each layer's importances are then divided by their L2 norm, as
the paper does. `prune_mask` removes the least important heads across all layers but never a layer's last one;
`zero_pruned_heads` gives the masked model from plain weights; `kept_heads_js` compares a pruned model's attention
with the teacher's over the heads it keeps. distill_core/compress.py uses them to prune a finished run's students.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import DataError, ModelError
from .mapping import probe_metrics
from .models import eval_mode

# A layer's attention output projection: BERT, RoBERTa, ELECTRA, MiniLM ("...layer.<i>.attention.output.dense"),
# transformers 5's ViT ("...layers.<i>.attention.o_proj"), DistilBERT ("...layer.<i>.attention.out_lin") and others
# with o_proj / out_proj.
_OUT_PROJ = re.compile(r"(?:^|\.)layers?\.(\d+)\.(?:attention\.output\.dense|"
                       r"(?:attention|self_attn|attn)\.(?:o_proj|out_proj|out_lin))$")


def heads_shape(model: nn.Module) -> tuple[int, int, int]:
    """(layers, heads, head size) of a transformer from its config; ModelError when the config does not say."""
    conf = getattr(model, "config", None)
    layers, heads = getattr(conf, "num_hidden_layers", None), getattr(conf, "num_attention_heads", None)
    if not isinstance(layers, int) or not isinstance(heads, int) or heads < 1:
        raise ModelError(f"{type(model).__name__} has no attention heads (its config names no num_hidden_layers and "
                         f"num_attention_heads): head pruning applies to transformer students only")
    size = getattr(conf, "head_dim", None) or conf.hidden_size // heads
    return layers, heads, int(size)


def out_projections(model: nn.Module) -> list[nn.Module]:
    """Each layer's attention output projection, in layer order: the module whose input is the heads' contexts
    side by side, (B, T, heads x head size). ModelError for an architecture where they cannot all be found."""
    layers, heads, size = heads_shape(model)
    found: dict[int, list[nn.Module]] = {}
    for name, m in model.named_modules():
        match = _OUT_PROJ.search(name)
        if match:
            found.setdefault(int(match.group(1)), []).append(m)
    ok = (sorted(found) == list(range(layers)) and all(len(v) == 1 for v in found.values())
          and all(getattr(v[0], "in_features", None) == heads * size for v in found.values()))
    if not ok:
        raise ModelError(f"cannot find the attention output projection of each of the {layers} layers of "
                         f"{type(model).__name__} (a Linear layer of {heads} x {size} inputs named "
                         f"'...layer.<i>.attention.output.dense' or '...layers.<i>.attention.o_proj'); head pruning "
                         f"supports BERT-like text students and ViT image students")
    return [found[i][0] for i in range(layers)]


class HeadMask:
    """Forward pre-hooks that multiply each head's context by mask[layer, head] before each layer's attention output
    projection. The mask is (layers, heads), the same for every example, or (layers, B, heads), one gate per example
    of a batch of B. A context manager; or call remove(). A mask tensor that requires grad gets gradients through
    it."""

    def __init__(self, model: nn.Module, mask):
        layers, heads, size = heads_shape(model)
        modules = out_projections(model)
        self.mask = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask, dtype=np.float32))
        shape = tuple(self.mask.shape)
        if shape != (layers, heads) and not (len(shape) == 3 and shape[0] == layers and shape[2] == heads):
            raise ValueError(f"a head mask of this model is (layers, heads) = ({layers}, {heads}), or (layers, B, "
                             f"heads) with one row per example, not {shape}")
        self.heads, self.size = heads, size
        self.handles = [m.register_forward_pre_hook(self._hook(layer)) for layer, m in enumerate(modules)]

    def _hook(self, layer: int):
        def hook(module, args):
            x = args[0]                                                      # (B, T, heads * size)
            m = self.mask[layer].to(device=x.device, dtype=x.dtype)          # (heads,) or (B, heads)
            if m.dim() == 2:                                                 # one gate per example
                if m.shape[0] != x.shape[0]:
                    raise ValueError(f"a per-example head mask has {m.shape[0]} rows, but the batch holds "
                                     f"{x.shape[0]} examples")
                m = m.view(m.shape[0], *[1] * (x.dim() - 2), self.heads)    # (B, 1, heads)
            x = (x.unflatten(-1, (self.heads, self.size)) * m[..., None]).flatten(-2)
            return (x, *args[1:])
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> "HeadMask":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def apply_head_mask(model: nn.Module, mask) -> HeadMask:
    """Mask attention heads: mask (layers, heads), 1 keeps a head and 0 removes it (its context is multiplied by
    0, so its contribution to the layer's output is exactly zero); or (layers, B, heads), a mask per example of a
    batch of B. Use as `with apply_head_mask(model, m): ...`, or keep the returned HeadMask and call remove()."""
    return HeadMask(model, mask)


def _batch_parts(batch) -> tuple[dict, torch.Tensor]:
    if hasattr(batch, "inputs") and hasattr(batch, "labels"):
        return batch.inputs, batch.labels
    inputs, labels = batch
    return inputs, labels


def head_importance(model: nn.Module, batches: Iterable, normalize: bool = True) -> np.ndarray:
    """Michel et al. (2019)'s head importance, I_h = E_x |dL(x)/dm_h|: m a gate of ones on each head's context,
    L(x) one example's cross-entropy on its label, the model in eval mode; the absolute value is taken per example,
    then averaged over every example of `batches` (modality Batches, or (inputs, labels) pairs). Each batch of B
    gets its own gate per example, (layers, B, heads): example b's loss reads only row b, so one backward pass of
    the summed losses gives every example's gradient at once. With normalize, each layer's importances are divided
    by their L2 norm (as in the paper). The model's parameters and mode are left as they were.
    Returns (layers, heads) float64."""
    layers, heads, _ = heads_shape(model)
    total = torch.zeros((layers, heads), dtype=torch.float64)
    n = 0
    with eval_mode(model, frozen=True):
        with torch.inference_mode(False), torch.enable_grad():
            for batch in batches:
                inputs, labels = _batch_parts(batch)
                gate = torch.ones((layers, len(labels), heads), requires_grad=True)       # (L, B, H)
                with apply_head_mask(model, gate):
                    logits = model(**inputs).logits                                       # (B, classes)
                loss = F.cross_entropy(logits.float(), labels.to(logits.device), reduction="sum")
                (grad,) = torch.autograd.grad(loss, gate)          # (L, B, H): [:, b] = dL(x_b)/dm
                total += grad.detach().abs().sum(1).double()
                n += len(labels)
    if n == 0:
        raise DataError("no validation batches to measure head importance on")
    out = (total / n).numpy()
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.where(norms > 0, norms, 1.0)
    return out


def heads_to_remove(fraction: float, layers: int, heads: int) -> int:
    """round(fraction x layers x heads), halves up."""
    return int(math.floor(fraction * layers * heads + 0.5 + 1e-9))


def prune_mask(importance: np.ndarray, fraction: float) -> tuple[np.ndarray, int, int]:
    """The head mask (layers, heads) of 1 = kept / 0 = removed that removes `fraction` of the heads, least important
    first across all layers (ties: the earlier layer and head first), never a layer's last head.
    Returns (mask float32, heads removed, heads asked for)."""
    importance = np.asarray(importance, dtype=np.float64)
    layers, heads = importance.shape
    want = heads_to_remove(fraction, layers, heads)
    k = min(want, layers * (heads - 1))
    mask = np.ones((layers, heads), dtype=np.float32)
    left = [heads] * layers
    removed = 0
    for idx in np.lexsort((np.arange(importance.size), importance.ravel())):
        if removed >= k:
            break
        layer, head = divmod(int(idx), heads)
        if left[layer] > 1:
            mask[layer, head] = 0.0
            left[layer] -= 1
            removed += 1
    return mask, removed, want


@torch.no_grad()
def zero_pruned_heads(model: nn.Module, mask, copy_model: bool = True) -> nn.Module:
    """A copy of `model` (or, with copy_model=False, the model itself) whose output projections ignore the masked
    heads (their input columns set to zero): the same outputs as the model under apply_head_mask(mask), from plain
    weights."""
    mask = np.asarray(mask, dtype=np.float32)
    out = copy.deepcopy(model) if copy_model else model
    _, heads, size = heads_shape(out)
    for layer, proj in enumerate(out_projections(out)):
        if not isinstance(proj, nn.Linear):
            raise ModelError(f"zeroing pruned heads needs a float Linear output projection, not {type(proj).__name__}")
        for head in np.flatnonzero(mask[layer] == 0):
            proj.weight[:, head * size:(head + 1) * size] = 0.0
    return out


def kept_heads_js(teacher_maps: Sequence[np.ndarray], student_maps: Sequence[np.ndarray],
                  pairs: Sequence[Sequence[int]], head_rule: str, mask=None,
                  padded: bool = True) -> tuple[float, np.ndarray]:
    """A pruned student's attention JS to the teacher on the probe set, over the heads it keeps: (the mean over the
    examples, mapped pairs and kept compared heads; per compared head (P, H'), NaN where the head is removed).

    teacher_maps[i] (Lt, Ht, t_i, t_i) and student_maps[i] (Ls, Hs, t_i, t_i) as for mapping.probe_metrics; pairs
    (teacher layer, student layer); mask (Ls, Hs), 1 = kept, 0 = removed; None keeps every head. A removed head's
    attention is still computed, but its output is multiplied by zero, so its map says nothing of the pruned model:
    under the head rules "direct" and "group" its JS is NaN and left out of the mean; under "mean" the student side
    is each layer's map averaged over its kept heads only."""
    heads = int(student_maps[0].shape[1])
    kept = None if mask is None else np.asarray(mask) > 0                                     # (Ls, Hs)
    if kept is not None and head_rule == "mean":
        student_maps = [np.stack([m[layer][kept[layer]].mean(0) for layer in range(len(m))])[:, None]
                        for m in student_maps]                                                # (Ls, 1, t, t) each
    js = np.asarray(probe_metrics(teacher_maps, student_maps, pairs, head_rule, heads, padded=padded)["js"],
                    dtype=np.float64)                                                         # (P, H')
    if kept is not None and head_rule != "mean":
        js = np.where(kept[[s for _, s in pairs]], js, np.nan)
    return float(np.nanmean(js)), js
