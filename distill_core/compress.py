"""Compressing a finished student: int8 quantization and attention-head pruning, each version measured the way a
session measures its students (test accuracy, size on disk, median latency of one probe example, attention JS to
the teacher on the probe set, over the heads a version keeps), on the CPU, in seconds for the default student.

    record = compress_run(run)                       # every variant of a finished run
    record = compress_run(run, ["distilled"])        # one variant (and the run's reference, for the pruning curve)
    record = measure_again(run)                      # every saved version timed again now (compression.json)
    model, info = load_compressed(run.path / "compressed" / "distilled" / "int8_linear")

Versions of each variant (its final weights, as on the Accuracy page):

    fp32                    the student as trained
    int8_linear             every nn.Linear replaced by `Int8Linear` (dynamic int8: weights int8 with one symmetric
                            scale per output channel; each row of the input, one token, quantized symmetrically at
                            run time; the product taken in int32 by `torch._int_mm` and rescaled:
                            y = (x_q w_q^T) s_x s_w + b, what `quantize_dynamic` did). The word embeddings stay float32.
    int8_linear_embeddings  also the word embeddings, weight-only (`Int8Embedding`: an int8 table with one scale per
                            row; the rows a text uses are gathered and dequantised). For the default 3 x 4 x 192
                            student they are 23.4 of its 29.3 MB. Text students only: an image student has no word
                            embeddings.
    pruned_<percent>        the fp32 student with that share of its attention heads masked (below).

Why these kernels (torch 2.13, CPU). `torch.ao.quantization.quantize_dynamic` and quantized tensors
(`torch.quantize_per_channel`, the qint8 dtypes) are deprecated there and warn, so the modules here use plain int8
tensors and core ops. Measured on a 2-core CPU, one thread, for the student's shapes (192 -> 192 / 768 / 192):
`torch._int_mm` with the activations quantized at run time took about as long as the float32 matmul for one 30-token
text (0.1-0.25 ms each) and 1.4-2.3x as long for a batch of 64 texts (quantizing and rescaling the activations costs
more than the int8 product saves at this width); the weight-only kernel `torch.ops.aten._weight_int8pack_mm` took
1.7-7 ms for the same 30 tokens, 30-60x float32's, so it is not used. For the whole default student, the 2,500 test
examples took 5.4 s in int8_linear against 4.4 s in float32. Int8 here buys size, not speed, on a CPU like this one:
the record's latencies say what it costs. Convolutions (a CNN student's layers, a ViT's patch embedding) stay float32.

Head pruning (Michel, Levy and Neubig 2019, "Are Sixteen Heads Really Better than One?"; the masks, importances and
pruning order are in distill_core/head_pruning.py). A mask m (layers, heads)
multiplies each head's context vector before the layer's attention output projection (a forward pre-hook:
transformers 5 has no `prune_heads` or `head_mask`); m = 0 makes the head's contribution exactly zero. A head's
importance is the mean over the validation examples of |dL(x)/dm| (L(x): one example's cross-entropy on its true
label, the model in eval mode; the absolute value taken per example, so opposite pulls do not cancel), and each
layer's importances are divided by their L2 norm, as the paper does.
Heads are ranked once, on the whole student (the paper also re-estimates after each pruning step), so the masks of
growing fractions are nested. Removing a fraction f masks round(f x layers x heads) heads (halves round up) of least
importance across all layers, but never a layer's last head: at most layers x (heads - 1) go, and the notes say when
a fraction asked for more. Fraction 0 is always on the curve. A pruned version keeps every weight: its folder holds
the config and the head mask and reads the weights of its variant's fp32 folder (no second copy on disk), and
`load_compressed` sets the pruned heads' input columns of the output projection to zero, which gives exactly the
masked model without hooks. It is as large as fp32 and no faster (the masked heads are still computed). Its
attention JS to the teacher is averaged over the heads it keeps: a masked head's map, still computed, is left out.
A CNN student has no heads: pruning is not applicable and only its Linear layers (the classifier) are quantized.

The run's students and its test, validation and probe examples are reopened by distill_core/reopen.py; what differs
between text, ViT and CNN students here (which versions, the int8 note, rebuilding a saved version) is in FAMILIES.

Files (only new ones; nothing the run wrote is changed):

    <run>/compression.json      {"created", "device": "cpu", "test_size", "fractions",
                                 "variants": {<variant>: {"versions": [{"name", "kind": fp32|quantized|pruned,
                                   "fraction", "heads_removed", "size_bytes", "latency_ms", "test_accuracy", "js",
                                   "folder"}], "head_importance": (L, H) | None, "pruning_curve": [{"fraction",
                                   "heads_removed", "test_accuracy", "head_mask": (L, H) of 0/1}] | None,
                                   "family", "weights", "fractions", "notes": [...], "latency_conditions": what
                                   its versions' latencies were taken under (distill_core/latency.py; absent in
                                   records written before)}}}
    <run>/compressed/<variant>/<version>/   config.json, model.safetensors and compression.json (this version's
                                 info: kind, base variant, head mask, quantized modules, "weights": the file it
                                 reads, "../fp32/model.safetensors" for a pruned version, which has no copy of its
                                 own); `load_compressed` reads it.

Compressing some variants again replaces their entries and keeps the others'. Without a variant, every variant of
the run is compressed, so the baseline's and the distilled students' pruning curves share the same axes; with
variants named, the run's reference (the labels-only baseline) is compressed too unless the record already holds it
for the same fractions.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

from .errors import ConfigError, ModelError, RunStoreError
from .head_pruning import (apply_head_mask, head_importance, heads_shape, kept_heads_js, prune_mask,
                           zero_pruned_heads)
from .latency import measure_latency
from .modality.vision.models import CNNConfig, ResidualCNN, model_family
from .models import set_attention_backend
from .reopen import reopen
from .store import Run, atomic_write_json, now_iso
from .vocab import TEACHER, run_reference, run_variants

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75)
QUANT_VERSIONS = ("fp32", "int8_linear", "int8_linear_embeddings")
FILE = "compression.json"          # the run's record, and each version folder's info
FOLDER = "compressed"
WEIGHTS_FILE = "model.safetensors"
FORMAT = 1                         # of a version folder's compression.json
BATCH = 64                         # validation examples per batch of the head-importance pass
Progress = Callable[[str, int, int], None]


# ---- int8 modules -------------------------------------------------------------------------------------------------
def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: w (N, K) float -> (q int8 (N, K), scale float32 (N,)), w ~ q * scale.
    A row of zeros gets a tiny scale and zeros."""
    w = w.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) int8 @ b (K, N) int8 -> (M, N) int32. torch._int_mm on the CPU takes any shape; where a device
    refuses one (CUDA wants M > 16 and K, N multiples of 8) the product is taken in float32, exact while K <= 1040."""
    if a.shape[0] == 0:
        return torch.zeros((0, b.shape[1]), dtype=torch.int32, device=a.device)
    try:
        return torch._int_mm(a, b)
    except RuntimeError:
        if a.device.type == "cpu":
            raise
        return torch.round(a.float() @ b.float()).to(torch.int32)


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights (one symmetric scale per output channel) whose input is quantized per row at
    run time (dynamic quantization); the product is taken in int32 and rescaled to float32."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros((out_features, in_features), dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        m = cls(linear.in_features, linear.out_features, linear.bias is not None)
        m.weight_int8, m.weight_scale = quantize_rows(linear.weight)
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:                     # (..., K) -> (..., N)
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()                         # (M, K)
        s = x2.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(127.0)  # (M, 1)
        xq = (x2 / s).round_().to(torch.int8)               # |x / s| <= 127 by construction
        y = int8_matmul(xq, self.weight_int8.t()).float().mul_(s).mul_(self.weight_scale)   # (M, N)
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 with one symmetric scale per row (weight-only); rows are dequantised when
    they are gathered."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.register_buffer("weight_int8", torch.zeros((num_embeddings, embedding_dim), dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings))

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> "Int8Embedding":
        m = cls(emb.num_embeddings, emb.embedding_dim, emb.padding_idx)
        m.weight_int8, m.weight_scale = quantize_rows(emb.weight)
        return m

    def forward(self, ids: torch.Tensor) -> torch.Tensor:                   # (...) -> (..., D)
        return self.weight_int8[ids].float() * self.weight_scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}"


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _word_embeddings_name(model: nn.Module) -> str | None:
    """The module name of a text model's word embeddings (get_input_embeddings), None when it has none."""
    try:
        emb = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if not isinstance(emb, (nn.Embedding, Int8Embedding)):
        return None
    return next((n for n, m in model.named_modules() if m is emb), None)


def quantized_modules(model: nn.Module) -> dict[str, list[str]]:
    """The names of a model's int8 modules: {"linear": [...], "embedding": [...]}, in module order."""
    return {"linear": [n for n, m in model.named_modules() if isinstance(m, Int8Linear)],
            "embedding": [n for n, m in model.named_modules() if isinstance(m, Int8Embedding)]}


def quantize(model: nn.Module, embeddings: bool = False) -> nn.Module:
    """A copy of `model` (in eval mode; the original is not changed) with every nn.Linear as Int8Linear and, with
    embeddings=True, the word embeddings as Int8Embedding. Convolutions stay float32."""
    q = copy.deepcopy(model).eval()
    word = _word_embeddings_name(q) if embeddings else None
    if embeddings and word is None:
        raise ModelError(f"{type(model).__name__} has no word embeddings to quantize (an image model): quantize its "
                         f"linear layers only")
    for name, m in list(q.named_modules()):
        if isinstance(m, nn.Linear):
            _set_module(q, name, Int8Linear.from_linear(m))
    if word is not None:
        _set_module(q, word, Int8Embedding.from_embedding(q.get_submodule(word)))
    return q


def _swap_in_int8(model: nn.Module, names: dict) -> None:
    """Put empty int8 modules where `names` ({"linear", "embedding"}) says a saved version had them."""
    for name in names.get("linear") or []:
        m = model.get_submodule(name)
        if not isinstance(m, nn.Linear):
            raise ModelError(f"the saved version quantized {name}, which is a {type(m).__name__}, not a Linear layer")
        _set_module(model, name, Int8Linear(m.in_features, m.out_features, m.bias is not None))
    for name in names.get("embedding") or []:
        m = model.get_submodule(name)
        if not isinstance(m, nn.Embedding):
            raise ModelError(f"the saved version quantized {name}, which is a {type(m).__name__}, not an embedding")
        _set_module(model, name, Int8Embedding(m.num_embeddings, m.embedding_dim, m.padding_idx))


# ---- saving and loading one version --------------------------------------------------------------------------------
def model_kind(model: nn.Module) -> str:
    """"text" (a sequence classifier), "vit" or "cnn"."""
    if getattr(model, "main_input_name", None) == "pixel_values" or isinstance(model, ResidualCNN):
        return model_family(model)
    return "text"


def _text_int8_note(n_linear: int) -> str:
    return (f"int8_linear: {n_linear} linear layers in int8 (weights per output channel, each token's activations at "
            f"run time); the word embeddings stay float32. int8_linear_embeddings: also the word embeddings, "
            f"weight-only int8 with one scale per row.")


def _vit_int8_note(n_linear: int) -> str:
    return (f"int8_linear: {n_linear} linear layers in int8; the patch embedding (a convolution) stays float32. An "
            f"image student has no word embeddings, so there is no int8_linear_embeddings.")


def _cnn_int8_note(n_linear: int) -> str:
    return (f"int8_linear: the {n_linear} linear layer{'s' if n_linear != 1 else ''} (the classifier) in int8; the "
            f"convolutions stay float32, so most of the weights do. An image student has no word embeddings, so "
            f"there is no int8_linear_embeddings.")


def _rebuild_transformer(auto) -> Callable[[Path], nn.Module]:
    def rebuild(folder: Path) -> nn.Module:
        conf = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        return auto.from_config(conf, attn_implementation="eager")
    return rebuild


def _rebuild_cnn(folder: Path) -> nn.Module:
    return ResidualCNN(CNNConfig.from_dict(json.loads((folder / "config.json").read_text())))


def _write_transformer_config(model: nn.Module, folder: Path) -> None:
    model.config.to_json_file(str(folder / "config.json"))


def _write_cnn_config(model: nn.Module, folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))


@dataclass(frozen=True)
class Family:
    """What compressing differs in between kinds of student (model_kind)."""
    versions: tuple[str, ...]                       # the quantized versions it gets (fp32 first)
    int8_note: Callable[[int], str]                 # the record's note on int8_linear, given its Linear layers
    prunable: bool                                  # it has attention heads
    write_config: Callable[[nn.Module, Path], None]
    rebuild: Callable[[Path], nn.Module]            # an empty model from a version folder's config.json


FAMILIES = {
    "text": Family(QUANT_VERSIONS, _text_int8_note, True, _write_transformer_config,
                   _rebuild_transformer(AutoModelForSequenceClassification)),
    "vit": Family(QUANT_VERSIONS[:2], _vit_int8_note, True, _write_transformer_config,
                  _rebuild_transformer(AutoModelForImageClassification)),
    "cnn": Family(QUANT_VERSIONS[:2], _cnn_int8_note, False, _write_cnn_config, _rebuild_cnn),
}


def weights_bytes(folder) -> int:
    """Bytes of the safetensors files in a folder."""
    return int(sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")))


def _shared_weights(folder: Path, ref: str) -> Path:
    """The weights a pruned version reads from its float32 sibling: `ref` must be "../<sibling>/model.safetensors"."""
    parts = Path(ref).parts
    if len(parts) != 3 or parts[0] != ".." or parts[1] in ("", ".", "..") or parts[2] != WEIGHTS_FILE:
        raise ModelError(f"{folder / FILE} names weights at {ref!r}; a version reads its own {WEIGHTS_FILE} or a "
                         f"sibling's (../<version>/{WEIGHTS_FILE})")
    return folder.parent / parts[1] / WEIGHTS_FILE


def save_compressed(model: nn.Module, folder, info: dict, weights_from: str | None = None) -> int:
    """Write a (possibly quantized or pruned) student as a folder: config.json (the float architecture),
    model.safetensors (its state, int8 tensors as int8) and compression.json (`info` with the model's family, its
    quantized modules and the format). Returns the size in bytes of the weights it loads.

    weights_from="../fp32/model.safetensors" writes no weights: the folder reads its sibling's, which must hold this
    model's state (a pruned version: the float32 weights, its head mask in `info` applied when it is loaded)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    family = model_kind(model)
    FAMILIES[family].write_config(model, folder)
    if weights_from is None:
        # clones: tensors that share storage (tied weights) cannot be written by safetensors
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        size = weights_bytes(folder)
    else:
        shared = _shared_weights(folder, weights_from)
        if not shared.is_file():
            raise ModelError(f"{shared} is not there: write the version it names before this one")
        size = int(shared.stat().st_size)
    atomic_write_json(folder / FILE, {**info, "family": family, "quantized_modules": quantized_modules(model),
                                      "weights": weights_from or WEIGHTS_FILE, "format": FORMAT})
    return size


def _read_info(folder: Path) -> dict:
    try:
        info = json.loads((folder / FILE).read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{folder} is not a compressed student (its {FILE} cannot be read: {e})") from None
    if not isinstance(info, dict) or info.get("family") not in FAMILIES:
        raise ModelError(f"{folder / FILE} does not say which kind of model it holds")
    return info


def load_compressed(folder) -> tuple[nn.Module, dict]:
    """A version folder written by save_compressed, back as a model in eval mode on the CPU, and its info. A pruned
    version's masked heads are removed as it loads (their columns of the attention output projection set to zero),
    so the model needs no hooks. Reads safetensors only (no pickle) and never runs code from the folder."""
    folder = Path(folder)
    info = _read_info(folder)
    ref = info.get("weights") or WEIGHTS_FILE
    weights = folder / WEIGHTS_FILE if ref == WEIGHTS_FILE else _shared_weights(folder, ref)
    if not weights.is_file():
        raise ModelError(f"{weights} is not there: compress the run again")
    try:
        model = FAMILIES[info["family"]].rebuild(folder)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot rebuild the model in {folder} from its config.json: {e}") from None
    _swap_in_int8(model, info.get("quantized_modules") or {})
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as e:  # noqa: BLE001 - safetensors' errors, or tensors that do not fit the architecture
        raise ModelError(f"the weights in {weights} do not fit the config in {folder} ({type(e).__name__}: "
                         f"{e})") from None
    if info.get("head_mask") is not None:
        model = zero_pruned_heads(model, info["head_mask"], copy_model=False)
    return model.eval(), info


def _write_version(folder: Path, model: nn.Module, info: dict, weights_from: str | None = None) -> int:
    """save_compressed into a temporary folder beside `folder`, then put it in place (replacing an older one)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = folder.with_name(f".{folder.name}.{tag}.tmp")
    try:
        size = save_compressed(model, tmp, info, weights_from)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{tag}.old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return size


# ---- a run's data and models ----------------------------------------------------------------------------------------
def check_fractions(fractions) -> list[float]:
    """Pruning fractions, checked, rounded to 4 decimals, sorted, without repeats and with 0 added."""
    fix = "give fractions of the heads from 0 up to, not including, 1 (1 would remove every head), e.g. 0,0.25,0.5"
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Iterable):
        raise ConfigError(f"pruning fractions must be a list of numbers: {fix}")
    out = set()
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or not 0 <= f < 1:
            raise ConfigError(f"pruning fraction {f!r} is outside [0, 1): {fix}")
        out.add(round(float(f), 4))
    return sorted(out | {0.0})


def parse_fractions(text: str) -> list[float]:
    """--fractions "0,0.25,0.5" -> [0.0, 0.25, 0.5]; ConfigError naming the fix otherwise."""
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--fractions takes numbers from 0 up to, not including, 1, separated by commas (e.g. "
                          f"0,0.25,0.5), not {text!r}") from None
    if not values:
        raise ConfigError("--fractions needs at least one number, e.g. 0,0.25,0.5")
    return check_fractions(values)


def version_name(fraction: float) -> str:
    """pruned_<percent of heads>: 0.25 -> pruned_25, 0.125 -> pruned_12.5."""
    return f"pruned_{100 * fraction:.2f}".rstrip("0").rstrip(".")


class RunData:
    """What measuring a run's students needs: the run reopened (its test, validation and probe examples rebuilt from
    its config as a TextModality or ImageModality, checked against what it recorded), the teacher's recorded probe
    attention, the layer pairs and the head rule."""

    def __init__(self, run: Run):
        self.run = reopen(run)
        self.modality = self.run.task()
        self.pairs = [tuple(p) for p in self.run.probe.get("pairs") or []]
        self.head_rule = self.run.probe.get("head_rule") or "direct"
        self.teacher_maps = run.read_attention(TEACHER) if self.pairs else []

    def val_batches(self) -> list:
        cpu = torch.device("cpu")
        return [self.modality.batch("val", index, cpu) for index in self.modality.batches("val", BATCH, seed=None)]


@torch.inference_mode()
def probe_maps(model: nn.Module, modality) -> list[np.ndarray]:
    """The model's attention on the probe examples, as a session records it: (L, H, t_i, t_i) per text, or the
    image modality's maps."""
    return modality.probe_maps(model, torch.device("cpu"))


def measure(model: nn.Module, data: RunData, mask=None) -> dict:
    """Test accuracy and mean attention JS to the teacher on the probe set (None when no layers are mapped) of a
    model, under a head mask when one is given; on the CPU. Under a mask the JS is averaged over the heads it keeps
    (head_pruning.kept_heads_js): a removed head's map is left out. Latency: measure_versions, every version of a
    variant together."""
    cpu = torch.device("cpu")
    with apply_head_mask(model, mask) if mask is not None else nullcontext():
        set_attention_backend(model, eager=False)
        accuracy, _ = data.modality.evaluate(model, "test", cpu, False)
        js = None
        if data.pairs:
            maps = probe_maps(model, data.modality)
            js, _ = kept_heads_js(data.teacher_maps, maps, data.pairs, data.head_rule, mask,
                                  padded=data.run.kind.padded_maps)
    return {"test_accuracy": float(accuracy), "js": js}


def measure_versions(run: Run, variant: str, entry: dict, modality) -> dict:
    """Every saved version of a variant (its record `entry`) loaded back as load_compressed gives it and timed
    together, interleaved on one thread (distill_core/latency.py), on the CPU: sets each version's "latency_ms" and
    the entry's "latency_conditions"; returns the entry."""
    cpu = torch.device("cpu")
    models = {v["name"]: load_compressed(run.compressed_dir(variant) / v["name"])[0] for v in entry["versions"]}
    measured = measure_latency(models, modality.latency_examples(cpu), cpu)
    for v in entry["versions"]:
        v["latency_ms"] = measured.latency_ms[v["name"]]
    entry["latency_conditions"] = measured.conditions
    return entry


# ---- a run ---------------------------------------------------------------------------------------------------------
def read_compression(run: Run) -> dict | None:
    """The run's compression.json, or None when it was never compressed."""
    return run.read_json(FILE)


def pruned_heads(run: Run, variant: str, version: str) -> np.ndarray | None:
    """Which heads a compressed version of a variant removes: (layers, heads) bool, True = pruned. None when the run
    has no compression record, the variant or version is not in it, or the version masks no head (fp32, the
    quantized versions, a CNN)."""
    record = read_compression(run) or {}
    entry = (record.get("variants") or {}).get(variant) or {}
    found = next((v for v in entry.get("versions") or [] if v.get("name") == version), None)
    if found is None or found.get("kind") != "pruned":
        return None
    for point in entry.get("pruning_curve") or []:
        if point.get("fraction") == found.get("fraction"):
            return np.asarray(point["head_mask"]) == 0
    return None


class _Versions:
    """The versions of one variant as they are saved under compressed/<variant>/ and measured: the record's
    "versions" and "notes"."""

    def __init__(self, run: Run, name: str, step: Callable[[str], None]):
        self.run_id, self.name, self.step = run.id, name, step
        self.root = run.compressed_dir(name)
        self.versions: list[dict] = []
        self.notes: list[str] = []

    def add(self, version: str, kind: str, m: nn.Module, result: dict, **extra) -> None:
        info = {"run_id": self.run_id, "base_variant": self.name, "student_weights": "final", "version": version,
                "kind": kind, "fraction": extra.get("fraction"), "heads_removed": extra.get("heads_removed"),
                "head_mask": extra.get("head_mask")}
        # a pruned version is the float32 weights and a head mask: it reads its fp32 sibling's weights
        size = _write_version(self.root / version, m, info, f"../fp32/{WEIGHTS_FILE}" if kind == "pruned" else None)
        self.versions.append({"name": version, "kind": kind, "fraction": extra.get("fraction"),
                              "heads_removed": extra.get("heads_removed"), "size_bytes": size,
                              "latency_ms": None, "test_accuracy": result["test_accuracy"],
                              "js": result["js"], "folder": f"{FOLDER}/{self.name}/{version}"})
        self.step(f"{self.name}: {version}")

    def drop_others(self) -> None:
        """Remove the versions of an earlier compression that this one did not make."""
        keep = {v["name"] for v in self.versions}
        if self.root.is_dir():
            for old in self.root.iterdir():
                if old.is_dir() and old.name not in keep:
                    shutil.rmtree(old, ignore_errors=True)


def _quantized_versions(out: _Versions, model: nn.Module, family: Family, data: RunData) -> None:
    for version in family.versions:
        m = model if version == "fp32" else quantize(model, embeddings=version == "int8_linear_embeddings")
        out.add(version, "fp32" if version == "fp32" else "quantized", m, measure(m, data))
    out.notes.append(family.int8_note(sum(isinstance(m, nn.Linear) for m in model.modules())))


def _pruned_versions(out: _Versions, model: nn.Module, data: RunData,
                     fractions: list[float]) -> tuple[np.ndarray, list[dict]]:
    """The pruned versions of a transformer student, from its head importance: (importance, pruning curve)."""
    notes = out.notes
    layers, heads, _ = heads_shape(model)
    set_attention_backend(model, eager=False)
    importance = head_importance(model, data.val_batches())
    notes.append(f"head importance (Michel et al. 2019): |dL/dmask| of each of the {data.modality.size('val')} "
                 f"validation examples' loss, averaged over them, each layer normalised by its L2 norm; heads "
                 f"ranked once, least important removed first, at least one head kept in every layer.")
    if heads == 1:
        notes.append("each layer has a single head: no head can be removed without emptying a layer.")
    curve = []
    fp32 = out.versions[0]
    for f in fractions:
        mask, removed, want = prune_mask(importance, f)
        acc = fp32["test_accuracy"]
        if f > 0 and removed == 0:
            why = "rounds to none" if want == 0 else "would empty a layer"
            notes.append(f"removing {f:.0%} of {layers * heads} heads {why}: no {version_name(f)} version saved.")
        elif f > 0:
            result = measure(model, data, mask)
            acc = result["test_accuracy"]
            out.add(version_name(f), "pruned", model, result, fraction=f, heads_removed=removed,
                    head_mask=mask.astype(int).tolist())
            if want > removed:
                notes.append(f"{f:.0%} of {layers * heads} heads is {want}; {removed} were removed, since every "
                             f"layer keeps one head.")
        curve.append({"fraction": f, "heads_removed": removed, "test_accuracy": acc,
                      "head_mask": mask.astype(int).tolist()})
    if any(v["kind"] == "pruned" for v in out.versions):
        notes.append("pruned versions mask heads: every weight stays (a pruned version's folder holds its head "
                     "mask and reads the fp32 version's weights; load_compressed zeroes the pruned heads' columns "
                     "of the attention output projection), so they are as large as fp32 and no faster. Their "
                     "attention JS is the mean over the heads they keep.")
    return importance, curve


def _variant_entry(run: Run, name: str, data: RunData, fractions: list[float], step: Callable[[str], None]) -> dict:
    """Every version of one variant, saved under compressed/<name>/ and measured (their latencies together, once
    all are saved); the record's entry for it."""
    model = data.run.student(name)
    kind = model_kind(model)
    family = FAMILIES[kind]
    out = _Versions(run, name, step)
    _quantized_versions(out, model, family, data)
    importance = curve = None
    if family.prunable:
        importance, curve = _pruned_versions(out, model, data, fractions)
    else:
        out.notes.append("pruning: not applicable, a CNN student has no attention heads.")
    out.drop_others()
    entry = {"versions": out.versions, "head_importance": None if importance is None else importance.tolist(),
             "pruning_curve": curve, "family": kind, "weights": "final", "fractions": fractions, "notes": out.notes}
    return measure_versions(run, name, entry, data.modality)


def _chosen_variants(run: Run, probe: dict, variants: Sequence[str] | None, fractions: list[float],
                     existing: dict) -> list[str]:
    names = run_variants(probe, run.metrics())
    with_weights = [v for v in names if (run.model_dir(v) / "config.json").is_file()]
    if variants is None:
        if not with_weights:
            raise RunStoreError(f"run {run.id} kept no student weights to compress")
        return with_weights
    if isinstance(variants, str):
        variants = [variants]
    chosen = []
    for v in variants:
        if v not in names:
            raise RunStoreError(f"run {run.id} has no variant {v!r}; its variants are {', '.join(names)}")
        if v not in with_weights:
            raise RunStoreError(f"run {run.id} kept no weights for variant {v}: it stopped before saving them")
        if v not in chosen:
            chosen.append(v)
    ref = run_reference(probe, names)
    held = (existing.get("variants") or {}).get(ref) or {}
    if ref is not None and ref not in chosen and ref in with_weights and held.get("fractions") != fractions:
        chosen.append(ref)                 # the curve to compare with, on the same fractions
    return chosen


COMPRESSES_NOT = ("tagging", "translation", "language_model")    # kinds of task whose scores the versions are not measured with yet


def compress_run(run: Run, variants: Sequence[str] | None = None, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 progress: Progress | None = None) -> dict:
    """Compress variants of a finished run (default: all; a list: those, and the reference unless the record
    already has it for these fractions), measure every version on the CPU, write them under compressed/ and the
    record to compression.json, and return the record. Nothing the run wrote before is changed.

    Refuses a run that is not done, an unknown variant (listing the run's variants) and fractions outside [0, 1).
    `progress(phase, done, total)` hears after each version."""
    fractions = check_fractions(fractions)
    status = run.status().get("status", "unknown")
    if status != "done":
        raise RunStoreError(f"run {run.id} is {status}, not finished: compress it once it is done "
                            f"(`python -m distill_core runs` shows each run's status)")
    probe = run.probe()
    if not probe:
        raise RunStoreError(f"run {run.id} has no probe.json: it failed before its models were ready")
    if probe.get("modality") in COMPRESSES_NOT:
        raise ConfigError(f"run {run.id} is a {probe['modality']} run: compression (int8 weights, heads pruned by "
                          f"their importance to a classifier's loss) is built for text and image classification; "
                          f"the students' sizes and latencies are in the run's summary (python -m distill_core show "
                          f"{run.id})")
    try:
        existing = read_compression(run) or {}
    except RunStoreError as e:
        log.warning("%s; it is written again", e)
        existing = {}
    chosen = _chosen_variants(run, probe, variants, fractions, existing)
    data = RunData(run)
    per_variant = len(QUANT_VERSIONS) + len(fractions) - 1
    total, done = per_variant * len(chosen), 0

    def step(phase: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(f"compress {phase}", min(done, total), total)

    entries = {}
    for name in chosen:
        entries[name] = _variant_entry(run, name, data, fractions, step)
        done = per_variant * len(entries)
        if progress:
            progress(f"compress {name}", done, total)
    order = run_variants(probe, run.metrics())
    merged = {**(existing.get("variants") or {}), **entries}
    record = {"created": now_iso(), "device": "cpu", "test_size": data.modality.size("test"),
              "fractions": fractions,
              "variants": {v: merged[v] for v in [*order, *[v for v in merged if v not in order]] if v in merged}}
    run.write_json(FILE, record)
    return record


def measure_again(run: Run) -> dict:
    """Time every compressed version of the run again now, each variant's versions together (measure_versions), and
    write the new latencies and conditions into compression.json; nothing else in it changes. Returns the record.
    RunStoreError when the run has no compression record or a version's folder is gone."""
    record = read_compression(run)
    if not record or not record.get("variants"):
        raise RunStoreError(f"run {run.id} has not been compressed: compress it first")
    modality = reopen(run).task()                   # the probe examples only: no teacher maps, no models
    for name, entry in record["variants"].items():
        missing = [v["name"] for v in entry.get("versions") or [] if not (run.compressed_dir(name) / v["name"]).is_dir()]
        if missing:
            raise RunStoreError(f"run {run.id} no longer has the {name} versions {', '.join(missing)} under "
                                f"compressed/: compress it again")
        measure_versions(run, name, entry, modality)
    run.write_json(FILE, record)
    return record
