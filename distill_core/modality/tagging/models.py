"""Token classifiers: a teacher loaded with a tagging head, students built from a shape, and a tokenizer that
reads sentences already split into words.

A loaded model's head answers with the data's tags, in their order (config.id2label): a teacher trained for the same
tags in another order has its head's rows put in the data's order, and one trained for other tags gets a new head
(and is fine-tuned, teacher.finetune auto)."""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForTokenClassification, AutoTokenizer

from ...config import StudentConfig
from ...errors import ModelError
from ...models import load_tokenizer, load_with_head, resolve_source, shaped_student


def load_word_tokenizer(source: str):
    """The model's tokenizer, able to read pre-split words (is_split_into_words) and say which word each sub-token
    belongs to (word_ids, fast tokenizers only). Byte-level BPE tokenizers (RoBERTa, GPT-2) are loaded with
    add_prefix_space, which reading words needs."""
    tokenizer = load_tokenizer(source)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"the tokenizer of {source} ({type(tokenizer).__name__}) is not a fast tokenizer: tagging "
                         f"needs to know which word each sub-token belongs to (word_ids), which only fast tokenizers "
                         f"tell; pick a model that ships tokenizer.json")
    try:
        tokenizer([["a", "b"]], is_split_into_words=True)
    except Exception:  # noqa: BLE001 - byte-level BPE: "add_prefix_space=True" is needed for pre-split words
        path, local = resolve_source(source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True, local_files_only=local)
            tokenizer([["a", "b"]], is_split_into_words=True)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"the tokenizer of {source} cannot read sentences split into words: {e}") from None
    return tokenizer


def tag_config(conf, tag_names: list[str]) -> None:
    """Name the head's outputs by the data's tags (saved with the model: a reopened run reads them)."""
    conf.num_labels = len(tag_names)
    conf.id2label = dict(enumerate(tag_names))
    conf.label2id = {t: i for i, t in enumerate(tag_names)}


def _head(model: nn.Module) -> nn.Linear | None:
    head = getattr(model, "classifier", None)
    return head if isinstance(head, nn.Linear) else None


@torch.no_grad()
def match_head(model: nn.Module, tag_names: list[str]) -> bool:
    """Make the head answer with `tag_names` in their order; True when it had to be made new (random) for that.

    A head trained for the same tags in another order keeps its rows, reordered; one whose tags differ (or whose
    names are the generic LABEL_k) is initialised afresh."""
    conf = model.config
    names = [str((conf.id2label or {}).get(i, f"LABEL_{i}")) for i in range(conf.num_labels)]
    head = _head(model)
    if names == list(tag_names):
        return False
    generic = all(n.upper() == f"LABEL_{i}" for i, n in enumerate(names))
    if head is not None and not generic and sorted(names) == sorted(tag_names):
        order = torch.tensor([names.index(t) for t in tag_names])
        head.weight.copy_(head.weight[order])
        if head.bias is not None:
            head.bias.copy_(head.bias[order])
        tag_config(conf, tag_names)
        return False
    if head is None:
        raise ModelError(f"the model's head names the tags {', '.join(names)}, not the data's, and it has no "
                         f"'classifier' layer that could be replaced; pick a token classifier of the BERT family")
    model._init_weights(head)
    tag_config(conf, tag_names)
    return True


def load_tagger(source: str, tag_names: list[str], eager: bool = True) -> tuple[nn.Module, bool]:
    """A token classifier answering with `tag_names`; returns (model, head_is_new). Safetensors weights only, never
    remote code; a hub id only when online."""
    model, head_new = load_with_head(AutoModelForTokenClassification, "a token classifier", source, len(tag_names),
                                     eager)
    if head_new:
        tag_config(model.config, tag_names)
    else:
        head_new = match_head(model, tag_names)
    return model, head_new


def build_tagging_student(cfg: StudentConfig, teacher: nn.Module, tag_names: list[str],
                          init_layers: list[int] | None, init: str | None = None) -> nn.Module:
    """A token classifier of the teacher's family with the configured shape (eager attention), built and initialised
    as models.shaped_student builds a sequence classifier; student.source loaded instead when given."""
    if cfg.source:
        return load_tagger(cfg.source, tag_names)[0]
    return shaped_student(cfg, teacher, AutoModelForTokenClassification, lambda conf: tag_config(conf, tag_names),
                          init_layers, init)


def load_tagging_model(folder) -> nn.Module:
    """A token classifier a session wrote (teacher or student), on the CPU in eval mode: eager attention, safetensors
    only, local files only, never remote code."""
    model = AutoModelForTokenClassification.from_pretrained(
        str(folder), attn_implementation="eager", local_files_only=True, trust_remote_code=False, use_safetensors=True)
    return model.to("cpu").eval()
