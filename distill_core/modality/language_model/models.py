"""Causal (GPT-style) language models: GPT-2 shapes built from a config (the built-in teacher and every student),
students started from alternate teacher layers as DistilGPT2 was, and causal models loaded from a folder or the hub,
with encoder-only and encoder-decoder models refused.

    model = build_gpt2(tokenizer, layers=4, heads=4, hidden=128, context=64)
    student = student_from(model, layers=2, heads=4, hidden=128)
    copy_teacher_layers(student, model, [0, 2])     # embeddings, final norm and teacher layers 1 and 3
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, GPT2Config, GPT2LMHeadModel

from ...errors import ConfigError, ModelError
from ...models import set_attention_backend

# model types that read text in both directions: their attention is not causal, so they cannot be the teacher of a
# language model that predicts the next token from the earlier ones
ENCODER_ONLY = ("bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta",
                "mpnet", "camembert", "modernbert", "xlm", "flaubert", "ernie", "mobilebert", "squeezebert",
                "convbert", "funnel", "layoutlm", "longformer", "big_bird", "canine", "roformer", "nezha", "vit")


def build_gpt2(tokenizer, layers: int, heads: int, hidden: int, context: int, intermediate: int | None = None,
               dropout: float = 0.1, seed: int | None = None) -> GPT2LMHeadModel:
    """A GPT-2 model over the tokenizer's vocabulary (input and output embeddings tied), `context` positions, eager
    attention, seeded when `seed` is given."""
    if hidden % heads:
        raise ConfigError(f"the hidden size ({hidden}) must be divisible by the heads ({heads}); try hidden="
                          f"{heads * max(1, round(hidden / heads))}")
    conf = GPT2Config(vocab_size=len(tokenizer), n_positions=context, n_embd=hidden, n_layer=layers, n_head=heads,
                      n_inner=intermediate, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=0.0,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    if seed is not None:
        torch.manual_seed(seed)
    model = GPT2LMHeadModel._from_config(conf, attn_implementation="eager")
    set_generation(model)
    set_attention_backend(model, eager=True)
    return model.eval()


def set_generation(model) -> None:
    c = model.config
    model.generation_config = GenerationConfig(eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
                                               bos_token_id=c.bos_token_id, do_sample=False, num_beams=1)


def shape_of(model) -> dict:
    """layers, heads, hidden, intermediate and context of a causal model's config."""
    c = model.config
    hidden = int(getattr(c, "hidden_size", None) or c.n_embd)
    inner = getattr(c, "n_inner", None) or getattr(c, "intermediate_size", None) or 4 * hidden
    return {"layers": int(c.num_hidden_layers), "heads": int(c.num_attention_heads), "hidden": hidden,
            "intermediate": int(inner), "context": int(getattr(c, "n_positions", None)
                                                      or getattr(c, "max_position_embeddings", 0) or 0)}


def student_from(teacher, layers: int, heads: int, hidden: int, intermediate: int | None, dropout: float):
    """A smaller model of the teacher's family, vocabulary, special tokens and context."""
    if hidden % heads:
        raise ConfigError(f"student.hidden ({hidden}) must be divisible by student.heads ({heads}); try hidden="
                          f"{heads * max(1, round(hidden / heads))}")
    conf = copy.deepcopy(teacher.config)
    if not isinstance(conf, GPT2Config):
        raise ConfigError(f"a student of a shape is built as a GPT-2 model, and the teacher is a "
                          f"{conf.model_type} model: name a student of the teacher's family as student.source (for "
                          f"a hub teacher, e.g. its smaller sibling), or use a GPT-2 teacher")
    conf.n_embd, conf.n_layer, conf.n_head, conf.n_inner = hidden, layers, heads, intermediate
    conf.resid_pdrop = conf.embd_pdrop = dropout
    conf.attn_pdrop = 0.0
    model = GPT2LMHeadModel._from_config(conf, attn_implementation="eager")
    set_generation(model)
    set_attention_backend(model, eager=True)
    return model


def check_causal(conf, source: str) -> None:
    """Refuse a model that is not a causal (decoder-only) language model, with the fix."""
    kind = getattr(conf, "model_type", "?")
    if getattr(conf, "is_encoder_decoder", False):
        raise ConfigError(f"{source} is an encoder-decoder ({kind}): a language-model session distils a causal "
                          f"(GPT-style) model that predicts the next token from the earlier ones. For an "
                          f"encoder-decoder use the translation task; for a language model name a causal model such "
                          f"as gpt2 or distilgpt2, or leave teacher.source at default")
    if kind in ENCODER_ONLY:
        raise ConfigError(f"{source} is an encoder-only model ({kind}): its attention reads the whole text in both "
                          f"directions, so it cannot predict the next token. A language-model teacher is a causal "
                          f"(GPT-style) model such as gpt2; leave teacher.source at default to train one here")


def load_causal_lm(source: str, local_only: bool = True) -> nn.Module:
    """A causal language model from a folder (or, online, a hub id) with eager attention: safetensors weights only,
    never remote code; on the CPU in eval mode. Encoder-only and encoder-decoder models are refused."""
    try:
        conf = AutoConfig.from_pretrained(str(source), local_files_only=local_only, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        raise ModelError(f"cannot read the config of {source}: {e}") from None
    check_causal(conf, str(source))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source), attn_implementation="eager",
                                                     local_files_only=local_only, trust_remote_code=False,
                                                     use_safetensors=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load a causal language model from {source}: {e}. A language-model teacher or "
                         f"student is a causal model (e.g. gpt2) saved with safetensors weights") from None
    if model.generation_config is None:
        set_generation(model)
    set_attention_backend(model, eager=True)
    return model.to("cpu").eval()


def blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a GPT-2 model."""
    try:
        return model.transformer.h
    except AttributeError:
        raise ModelError(f"{type(model).__name__} does not name its layers like GPT-2 (transformer.h.<i>); "
                         f"initialising from teacher layers needs a GPT-2 teacher and student") from None


@torch.no_grad()
def copy_teacher_layers(student, teacher, teacher_layers: list[int]) -> None:
    """DistilGPT2's start: the teacher's token and position embeddings, final layer norm and, for each student
    layer, the teacher layer it is mapped to (the widths must be equal)."""
    s, t = student.transformer, teacher.transformer
    s.wte.weight.copy_(t.wte.weight)
    s.wpe.weight.copy_(t.wpe.weight[:s.wpe.weight.shape[0]])
    s.ln_f.load_state_dict(t.ln_f.state_dict())
    for j, i in enumerate(teacher_layers):
        s.h[j].load_state_dict(t.h[i].state_dict())
