"""Encoder-decoders for translation: Marian models built from a shape (the built-in teacher and every student),
loaded from a folder or the hub, and the three kinds of attention they have.

    model = build_marian(tokenizer, layers=3, heads=4, hidden=256, intermediate=1024)
    kinds_shape(model)   # {"cross": (decoder layers, heads), "encoder": (...), "decoder": (...)}
    attention_modules(model)["cross"][i]    # model.model.decoder.layers[i].encoder_attn

A kind's attention is (B, H, queries, keys): encoder self-attention source over source, decoder self-attention
target over earlier target (causal), cross-attention target over source.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import GenerationConfig, MarianConfig, MarianMTModel

from ...errors import ConfigError, ModelError
from ...models import set_attention_backend

KINDS = ("cross", "encoder", "decoder")     # the primary kind first: what the pages show as "the attention"
KIND_NAMES = {"cross": "cross-attention", "encoder": "encoder self-attention", "decoder": "decoder self-attention"}
# what a kind's map rows and columns are: (queries, keys)
KIND_AXES = {"cross": ("target", "source"), "encoder": ("source", "source"), "decoder": ("target", "target")}
MAX_POSITIONS = 512


def build_marian(tokenizer, layers: int, heads: int, hidden: int, intermediate: int, dropout: float = 0.1,
                 seed: int | None = None) -> MarianMTModel:
    """A Marian encoder-decoder of `layers` encoder and `layers` decoder layers over the tokenizer's shared
    vocabulary (one embedding matrix for source, target and output), eager attention, seeded when `seed` is given."""
    if hidden % heads:
        raise ConfigError(f"the hidden size ({hidden}) must be divisible by the heads ({heads}); try hidden="
                          f"{heads * max(1, round(hidden / heads))}")
    conf = MarianConfig(
        vocab_size=len(tokenizer), decoder_vocab_size=len(tokenizer), d_model=hidden,
        encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=intermediate, decoder_ffn_dim=intermediate, max_position_embeddings=MAX_POSITIONS,
        dropout=dropout, attention_dropout=0.0, activation_dropout=0.0, activation_function="gelu",
        scale_embedding=True, share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, decoder_start_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=None)
    if seed is not None:
        torch.manual_seed(seed)
    model = MarianMTModel._from_config(conf, attn_implementation="eager")
    set_generation(model)
    set_attention_backend(model, eager=True)
    return model.eval()


def set_generation(model) -> None:
    """Plain greedy decoding settings that follow the model's own config (no length penalty, no forced tokens),
    so the beam and length each call asks for are the only choices."""
    c = model.config
    model.generation_config = GenerationConfig(
        decoder_start_token_id=c.decoder_start_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
        bad_words_ids=[[c.pad_token_id]] if c.pad_token_id is not None else None, num_beams=1, do_sample=False,
        max_length=MAX_POSITIONS)


def student_from(teacher: MarianMTModel, layers: int, heads: int, hidden: int, intermediate: int,
                 dropout: float) -> MarianMTModel:
    """A smaller Marian model of the teacher's vocabulary and special tokens."""
    conf = copy.deepcopy(teacher.config)
    if hidden % heads:
        raise ConfigError(f"student.hidden ({hidden}) must be divisible by student.heads ({heads}); try hidden="
                          f"{heads * max(1, round(hidden / heads))}")
    conf.d_model = hidden
    conf.encoder_layers = conf.decoder_layers = layers
    conf.encoder_attention_heads = conf.decoder_attention_heads = heads
    conf.encoder_ffn_dim = conf.decoder_ffn_dim = intermediate
    conf.dropout = dropout
    conf.num_hidden_layers = layers
    model = MarianMTModel._from_config(conf, attn_implementation="eager")
    set_generation(model)
    set_attention_backend(model, eager=True)
    return model


def is_encoder_decoder(model) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def attention_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The attention modules of every layer per kind (cross, encoder, decoder), in layer order."""
    base = getattr(model, "model", model)
    try:
        enc, dec = base.encoder.layers, base.decoder.layers
        return {"cross": [layer.encoder_attn for layer in dec], "encoder": [layer.self_attn for layer in enc],
                "decoder": [layer.self_attn for layer in dec]}
    except AttributeError:
        raise ModelError(f"{type(model).__name__} is not an encoder-decoder whose layers are named like Marian's "
                         f"(model.encoder.layers.i.self_attn, model.decoder.layers.i.self_attn and "
                         f".encoder_attn); translation needs a Marian (opus-mt) model") from None


def kinds_shape(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(layers, heads) of each kind of attention."""
    c = model.config
    enc = (int(c.encoder_layers), int(c.encoder_attention_heads))
    dec = (int(c.decoder_layers), int(c.decoder_attention_heads))
    return {"cross": dec, "encoder": enc, "decoder": dec}


def load_marian(source: str, local_only: bool = True) -> MarianMTModel:
    """A Marian model from a folder (or, online, a hub id) with eager attention: safetensors weights only, never
    remote code; on the CPU in eval mode."""
    try:
        model = MarianMTModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=local_only,
                                              trust_remote_code=False, use_safetensors=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        raise ModelError(f"cannot load a Marian translation model from {source}: {e}. A translation teacher or "
                         f"student is a Marian encoder-decoder (e.g. Helsinki-NLP/opus-mt-en-fr) saved with "
                         f"safetensors weights") from None
    if model.generation_config is None or model.generation_config.decoder_start_token_id is None:
        set_generation(model)
    set_attention_backend(model, eager=True)
    return model.to("cpu").eval()


@torch.no_grad()
def copy_teacher_layers(student: MarianMTModel, teacher: MarianMTModel, encoder_layers: list[int],
                        decoder_layers: list[int]) -> None:
    """Start a student of the teacher's widths from the teacher: its embeddings, final layer norms and, for each
    student layer, the teacher layer it is mapped to (encoder and decoder separately)."""
    s, t = student.model, teacher.model
    s.shared.weight.copy_(t.shared.weight)
    student.final_logits_bias.copy_(teacher.final_logits_bias)
    for side, layers in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        for j, i in enumerate(layers):
            getattr(s, side).layers[j].load_state_dict(getattr(t, side).layers[i].state_dict())
