"""Attention capture over forward hooks, as a context manager (torchdistill-style, without hooks that live forever).

    with AttentionCapture(model, layers=[1, 3, 5]) as cap:
        model(**batch)
        maps = cap.pop()        # list of (B, H, T, T), one per requested layer, in order

    with AttentionCapture(model, layers=[1, 3, 5], scores=True) as cap:
        model(**batch)
        scores = cap.pop_scores_stacked()   # (B, L, H, T, T) Q K^T / sqrt(d), before the mask and the softmax

The hooks sit on each layer's self-attention module, which returns (attn_output, attn_weights)
under eager attention; only the requested layers are kept.

transformers' own eager attention returns the weights *after* attention dropout, so in training mode they are
not probability rows (about p of them zeroed, the rest scaled by 1/(1-p)). Models whose attention is read are
switched to `PROBS_IMPL`, the same computation that returns the probabilities before dropout while the layer's
output still uses the dropped-out weights: training is unchanged, and what the losses compare sums to 1.

The same function hands the unnormalised scores (Q K^T / sqrt(d), before the attention mask is added) to a capture
that asks for them (`scores=True`): the modules it hooks, and their submodules, carry a sink for the length of the
`with` block. The scores are finite everywhere, padded keys included, so whoever reads them masks the padding.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import eager_mask

from .errors import ModelError

PROBS_IMPL = "distill_eager"
SCORES_SINK = "_distill_scores_sink"      # attribute of an attention module whose scores a capture records


def eager_attention_probs(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                          **kwargs):
    """BERT's eager attention, returning the attention probabilities before dropout.

    query, key, value: (B, H, T, d); attention_mask: additive (B, 1, T, T) or None.
    Returns the output (B, T, H, d) and the probabilities (B, H, T, T). A module carrying a `SCORES_SINK` is
    handed the scores (B, H, T, T) before the mask is added."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling           # (B, H, T, T)
    sink = getattr(module, SCORES_SINK, None)
    if sink is not None:
        sink(scores)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1)
    dropped = F.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(dropped, value).transpose(1, 2).contiguous()     # (B, T, H, d)
    return output, probs


def _register() -> None:
    AttentionInterface.register(PROBS_IMPL, eager_attention_probs)
    AttentionMaskInterface.register(PROBS_IMPL, eager_mask)


_register()

# <prefix>.layer.<i>.attention.self  (BERT, RoBERTa, ELECTRA, XLM-R, MiniLM)
# <prefix>.layer.<i>.attention       (DistilBERT's MultiHeadSelfAttention)
# <prefix>.h.<i>.attn                  (GPT-2)
_PATTERNS = (re.compile(r"(?:^|\.)layer\.(\d+)\.attention\.self$"),
             re.compile(r"(?:^|\.)layer\.(\d+)\.attention$"),
             re.compile(r"(?:^|\.)layers?\.(\d+)\.(?:self_attn|attn|attention)$"),
             re.compile(r"(?:^|\.)h\.(\d+)\.attn$"))


def find_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every layer, in layer order."""
    for pattern in _PATTERNS:
        found = {}
        for name, module in model.named_modules():
            m = pattern.search(name)
            if m:
                found[int(m.group(1))] = module
        if found and sorted(found) == list(range(len(found))):
            return [found[i] for i in range(len(found))]
    raise ModelError(f"cannot find the attention layers of {type(model).__name__}; supported families name them "
                     f"'...layer.<i>.attention.self' (BERT-like), '...layer.<i>.attention' (DistilBERT) or "
                     f"'...h.<i>.attn' (GPT-2)")


class AttentionCapture:
    """Records the attention probabilities of chosen layers during forward passes, and with `scores=True` their
    scores before the softmax (the model must run `PROBS_IMPL`, which hands them over)."""

    def __init__(self, model: nn.Module, layers: list[int] | None = None, scores: bool = False):
        self.modules = find_attention_modules(model)
        self.layers = list(range(len(self.modules))) if layers is None else list(layers)
        bad = [i for i in self.layers if not 0 <= i < len(self.modules)]
        if bad:
            raise ModelError(f"layer {bad[0]} requested but the model has {len(self.modules)} layers")
        self.scores = scores
        self._maps: dict[int, torch.Tensor] = {}
        self._scores: dict[int, torch.Tensor] = {}
        self._handles = []
        self._sinks: list[nn.Module] = []

    def _hook(self, index: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise ModelError("the model returned no attention weights: load it with "
                                 "attn_implementation='eager' (SDPA and flash attention do not return them)")
            self._maps[index] = weights
        return hook

    def _sink(self, index: int):
        def sink(scores: torch.Tensor) -> None:
            self._scores[index] = scores
        return sink

    def __enter__(self) -> "AttentionCapture":
        for i in self.layers:
            self._handles.append(self.modules[i].register_forward_hook(self._hook(i)))
            if self.scores:
                # the attention function receives the hooked module or one of its children (ViT's self-attention)
                for sub in self.modules[i].modules():
                    object.__setattr__(sub, SCORES_SINK, self._sink(i))
                    self._sinks.append(sub)
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for sub in self._sinks:
            sub.__dict__.pop(SCORES_SINK, None)
        self._handles.clear()
        self._sinks.clear()
        self._maps.clear()
        self._scores.clear()

    def pop(self) -> list[torch.Tensor]:
        """The captured maps, one (B, H, T, T) per requested layer; clears them."""
        missing = [i for i in self.layers if i not in self._maps]
        if missing:
            raise ModelError(f"no attention captured for layer {missing[0]}; was the model run inside the context?")
        maps = [self._maps[i] for i in self.layers]
        self._maps.clear()
        return maps

    def pop_stacked(self) -> torch.Tensor:
        """(B, L, H, T, T) for the requested layers."""
        return torch.stack(self.pop(), dim=1)

    def pop_scores_stacked(self) -> torch.Tensor:
        """The captured scores before the mask and the softmax, (B, L, H, T, T) for the requested layers; clears
        them. Padded keys hold finite scores of no meaning: mask them."""
        if not self.scores:
            raise ModelError("this capture was not asked for the attention scores: open it with scores=True")
        missing = [i for i in self.layers if i not in self._scores]
        if missing:
            raise ModelError(f"no attention scores captured for layer {missing[0]}: the model must run the "
                             f"attention implementation {PROBS_IMPL!r} (models.set_attention_backend(model, "
                             f"eager=True)), inside the context")
        scores = [self._scores[i] for i in self.layers]
        self._scores.clear()
        return torch.stack(scores, dim=1)
