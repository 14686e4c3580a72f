"""Attention capture of an encoder-decoder's three kinds of attention, over forward hooks, as a context manager.

    with KindsCapture(model, {"cross": [1, 2], "encoder": [0, 2]}) as cap:
        model(input_ids=..., attention_mask=..., decoder_input_ids=..., decoder_attention_mask=...)
        maps = cap.pop()        # {"cross": (B, 2, H, Tt, Ts), "encoder": (B, 2, H, Ts, Ts)}

The hooks sit on each layer's attention module (model.encoder.layers.i.self_attn, model.decoder.layers.i.self_attn
and model.decoder.layers.i.encoder_attn), which return (output, weights) under eager attention. The model must run
capture.PROBS_IMPL (models.set_attention_backend(model, eager=True)) for the weights to be the probabilities before
dropout, as distill_core/capture.py explains for the text models. Keys that are padding (source padding for the
encoder and the cross-attention, target padding for the decoder) get probability 0 from the additive mask; the
decoder's rows give 0 to every later position (causal).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ModelError
from .models import KINDS, attention_modules


class KindsCapture:
    """Records the attention probabilities of chosen layers of each kind during forward passes."""

    def __init__(self, model: nn.Module, layers: dict[str, list[int] | None]):
        modules = attention_modules(model)
        self.layers: dict[str, list[int]] = {}
        for kind, chosen in layers.items():
            if kind not in KINDS:
                raise ModelError(f"unknown kind of attention {kind!r}; known: {', '.join(KINDS)}")
            chosen = list(range(len(modules[kind]))) if chosen is None else list(chosen)
            bad = [i for i in chosen if not 0 <= i < len(modules[kind])]
            if bad:
                raise ModelError(f"{kind} layer {bad[0]} requested but the model has {len(modules[kind])}")
            self.layers[kind] = chosen
        self.modules = modules
        self._maps: dict[tuple[str, int], torch.Tensor] = {}
        self._handles = []

    def _hook(self, kind: str, index: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise ModelError("the model returned no attention weights: load it with attn_implementation='eager' "
                                 "(SDPA and flash attention do not return them)")
            self._maps[(kind, index)] = weights
        return hook

    def __enter__(self) -> "KindsCapture":
        for kind, chosen in self.layers.items():
            for i in chosen:
                self._handles.append(self.modules[kind][i].register_forward_hook(self._hook(kind, i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._maps.clear()

    def pop(self) -> dict[str, torch.Tensor]:
        """{kind: (B, L, H, queries, keys)} for the requested layers of each kind; clears them."""
        out = {}
        for kind, chosen in self.layers.items():
            missing = [i for i in chosen if (kind, i) not in self._maps]
            if missing:
                raise ModelError(f"no {kind} attention captured for layer {missing[0]}; was the model run inside "
                                 f"the context?")
            if chosen:
                out[kind] = torch.stack([self._maps[(kind, i)] for i in chosen], dim=1)
        self._maps.clear()
        return out
