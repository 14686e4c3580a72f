"""Attention capture over forward hooks, as a context manager (torchdistill-style, without hooks that live forever).

    with AttentionCapture(model, layers=[1, 3, 5]) as cap:
        model(**batch)
        maps = cap.pop()        # list of (B, H, T, T), one per requested layer, in order

The hooks sit on each layer's self-attention module, which returns (attn_output, attn_weights)
under eager attention; only the requested layers are kept.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from .errors import ModelError

# <prefix>.layer.<i>.attention.self  (BERT, RoBERTa, ELECTRA, XLM-R, MiniLM)
# <prefix>.layer.<i>.attention       (DistilBERT's MultiHeadSelfAttention)
_PATTERNS = (re.compile(r"(?:^|\.)layer\.(\d+)\.attention\.self$"),
             re.compile(r"(?:^|\.)layer\.(\d+)\.attention$"),
             re.compile(r"(?:^|\.)layers?\.(\d+)\.(?:self_attn|attn|attention)$"))


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
                     f"'...layer.<i>.attention.self' (BERT-like) or '...layer.<i>.attention' (DistilBERT)")


class AttentionCapture:
    """Records the attention probabilities of chosen layers during forward passes."""

    def __init__(self, model: nn.Module, layers: list[int] | None = None):
        self.modules = find_attention_modules(model)
        self.layers = list(range(len(self.modules))) if layers is None else list(layers)
        bad = [i for i in self.layers if not 0 <= i < len(self.modules)]
        if bad:
            raise ModelError(f"layer {bad[0]} requested but the model has {len(self.modules)} layers")
        self._maps: dict[int, torch.Tensor] = {}
        self._handles = []

    def _hook(self, index: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise ModelError("the model returned no attention weights: load it with "
                                 "attn_implementation='eager' (SDPA and flash attention do not return them)")
            self._maps[index] = weights
        return hook

    def __enter__(self) -> "AttentionCapture":
        for i in self.layers:
            self._handles.append(self.modules[i].register_forward_hook(self._hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._maps.clear()

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
