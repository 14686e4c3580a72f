"""Image models for attention distillation: a small residual CNN with stages, small vision transformers built from a
config, how to tell them apart, load and save them. Their activation attention is in distill_core/activation.py,
the built-in image teachers' training in teacher.py.

    CNN  a stem and stages of residual blocks (every stage after the first halves the resolution). Its "attention"
         is the activation attention of Zagoruyko & Komodakis, "Paying more attention to attention" (2017): the
         channel mean of |A|^p of a stage's output A (B, C, h, w), a map over the stage's (h, w) grid.
    ViT  transformers' ViTForImageClassification with eager attention, so its self-attention (B, H, T, T) is read
         like a text model's (capture.AttentionCapture finds `vit.layers.<i>.attention`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, ViTConfig
from transformers.modeling_outputs import ImageClassifierOutput

from ...capture import find_attention_modules
from ...config import IMAGE_TEACHERS
from ...errors import ConfigError, ModelError
from ...models import _offline_kwargs, check_weight_files, resolve_source
from .mobilenet import MOBILENET_MODEL_TYPE, MobileNetV2
from .staged import WEIGHTS, StagedCNN

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]   # (phase, done, total) -> None; may raise to stop

CNN_MODEL_TYPE = "distill_cnn"
CNN_WEIGHTS = WEIGHTS


# ---- memory layout ------------------------------------------------------------------------------------------------

def training_layout(device: torch.device | str, is_vit: bool) -> torch.memory_format:
    """The memory format image models train in: channels-last for a CNN on a GPU (faster there), contiguous
    everywhere else.

    On the CPU, torch 2.13's oneDNN backward of a strided 1x1 convolution (a residual block's shortcut) corrupts the
    heap when its input is channels-last, the batch size odd and torch uses more than one thread: the process dies
    with "free(): invalid next size" or a segmentation fault. Colour pictures are channels-last after the (N, H, W,
    C) -> (N, C, H, W) permute; grey ones are not (one channel is both layouts). Reproduction, 2 threads:

        conv = torch.nn.Conv2d(8, 16, 1, stride=2, bias=False)
        for _ in range(30):
            x = torch.randn(7, 8, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_(True)
            conv(x).sum().backward()                       # dies; fine with torch.backends.mkldnn.enabled = False,
                                                           # one thread, an even batch, or a contiguous x
    """
    return torch.channels_last if (torch.device(device).type == "cuda" and not is_vit) else torch.contiguous_format


# ---- the residual CNN ---------------------------------------------------------------------------------------------

@dataclass
class CNNConfig:
    channels: int = 1                       # input channels
    num_labels: int = 10
    widths: tuple[int, ...] = (16, 32, 64)  # channels of each stage; every stage after the first halves the resolution
    blocks: int = 1                         # residual blocks per stage
    dropout: float = 0.0                    # before the classifier
    model_type: str = field(default=CNN_MODEL_TYPE, init=False)

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or any(w < 1 for w in self.widths):
            raise ConfigError(f"a CNN needs at least one stage of positive width, not widths {list(self.widths)}")
        if int(self.blocks) < 1:
            raise ConfigError(f"a CNN needs at least 1 residual block per stage, not {self.blocks}")
        if int(self.channels) < 1 or int(self.num_labels) < 1:
            raise ConfigError(f"a CNN needs at least 1 input channel and 1 label (got {self.channels} channels, "
                              f"{self.num_labels} labels)")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"the CNN's dropout must be in [0, 1), not {self.dropout}")
        self.channels, self.num_labels, self.blocks = int(self.channels), int(self.num_labels), int(self.blocks)
        self.dropout = float(self.dropout)

    def to_dict(self) -> dict:
        return {"model_type": CNN_MODEL_TYPE, "channels": self.channels, "num_labels": self.num_labels,
                "widths": list(self.widths), "blocks": self.blocks, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: dict) -> "CNNConfig":
        if d.get("model_type", CNN_MODEL_TYPE) != CNN_MODEL_TYPE:
            raise ModelError(f"the config's model_type is {d.get('model_type')!r}, not {CNN_MODEL_TYPE!r}")
        try:
            return cls(channels=int(d["channels"]), num_labels=int(d["num_labels"]),
                       widths=tuple(int(w) for w in d["widths"]), blocks=int(d["blocks"]),
                       dropout=float(d.get("dropout", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"the CNN's config.json is incomplete or invalid ({type(e).__name__}: {e})") from None


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the input (through a 1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # (B, cin, h, w) -> (B, cout, h/s, w/s)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResidualCNN(StagedCNN):
    """A stem (conv3x3 + BN + ReLU), `len(widths)` stages of `blocks` BasicBlocks (the first block of every stage
    after the first has stride 2), global average pooling, dropout and a linear classifier.

    Called like a transformers image classifier: model(pixel_values=x, labels=y, output_hidden_states=True)."""

    config_class = CNNConfig

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Sequential(_conv3x3(config.channels, w[0]), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True))
        stages, cin = [], w[0]
        for k, cout in enumerate(w):
            blocks = [BasicBlock(cin if b == 0 else cout, cout, stride=2 if (k > 0 and b == 0) else 1)
                      for b in range(config.blocks)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(w[-1], config.num_labels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def last_stage(self) -> nn.Module:
        """The module whose output is the last stage (Grad-CAM's layer)."""
        return self.stages[-1]

    def replace_head(self, num_labels: int) -> None:
        self.config.num_labels = int(num_labels)
        self.classifier = nn.Linear(self.classifier.in_features, int(num_labels))

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, **kwargs):
        """pixel_values (B, C, H, W) -> ImageClassifierOutput: logits (B, num_labels); hidden_states, when asked,
        one (B, C_k, H_k, W_k) per stage; loss (cross-entropy) when labels are given. Other keyword arguments
        (output_attentions, return_dict, ...) are accepted and ignored."""
        if pixel_values.device.type == "cpu":
            pixel_values = pixel_values.contiguous()                 # never channels-last on the CPU: training_layout
        x = self.stem(pixel_values)                                  # (B, C_0, H, W)
        states = []
        for stage in self.stages:
            x = stage(x)                                             # (B, C_k, H_k, W_k)
            states.append(x)
        pooled = x.mean(dim=(2, 3))                                  # (B, C_last)
        logits = self.classifier(self.dropout(pooled))               # (B, num_labels)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits,
                                     hidden_states=tuple(states) if output_hidden_states else None)

    def stage_sizes(self, image_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of each stage's output for an input of `image_size` (H, W)."""
        h, w = int(image_size[0]), int(image_size[1])
        sizes = []
        for k in range(self.num_stages):
            if k > 0:                      # 3x3 conv, stride 2, padding 1: ceil(h / 2)
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            sizes.append((h, w))
        return sizes


def build_cnn(channels: int, num_labels: int, widths, blocks: int, dropout: float = 0.0) -> ResidualCNN:
    return ResidualCNN(CNNConfig(channels=channels, num_labels=num_labels, widths=tuple(widths), blocks=blocks,
                                 dropout=dropout))


def _hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def check_patch(image_size, patch: int) -> None:
    """Refuse a ViT patch size that does not divide the image size (H, W) (or an int for square images)."""
    h, w = _hw(image_size)
    if isinstance(patch, int) and patch >= 1 and h % patch == 0 and w % patch == 0:
        return
    size = f"{h}×{w}"
    fits = [d for d in range(2, min(h, w) + 1) if h % d == 0 and w % d == 0 and (d, d) != (h, w)]
    if fits:
        raise ConfigError(f"image.patch {patch} does not divide the image size {size}: use one of "
                          f"{', '.join(map(str, fits))}")
    raise ConfigError(f"image.patch {patch} does not divide the image size {size}, and only a patch of 1 pixel "
                      f"does; set image.patch to 1 or image.size to a size with divisors, e.g. 28 or 32")


def build_vit(*, channels: int, image_size, patch: int, layers: int, heads: int, hidden: int, num_labels: int,
              dropout: float = 0.0):
    """A ViTForImageClassification of `patch`-sized patches (the MLP twice as wide as `hidden`), eager attention.

    image_size: (H, W), or an int for square images; transformers' ViT takes both."""
    h, w = _hw(image_size)
    check_patch((h, w), patch)
    if hidden % heads:
        raise ConfigError(f"a ViT's hidden size ({hidden}) must be divisible by its heads ({heads}); try "
                          f"{heads * max(1, round(hidden / heads))}")
    conf = ViTConfig(image_size=h if h == w else [h, w], patch_size=patch, num_channels=channels,
                     num_hidden_layers=layers, num_attention_heads=heads, hidden_size=hidden,
                     intermediate_size=2 * hidden, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                     num_labels=num_labels)
    return AutoModelForImageClassification.from_config(conf, attn_implementation="eager")


# the CNNs whose stages give activation attention, by the model_type their config.json names
CNN_CLASSES = {CNN_MODEL_TYPE: ResidualCNN, MOBILENET_MODEL_TYPE: MobileNetV2}


def model_family(model) -> str:
    """"cnn" for the CNNs here (StagedCNN: ResidualCNN, MobileNetV2), "vit" for a transformers image model whose
    attention modules can be captured."""
    if isinstance(model, StagedCNN):
        return "cnn"
    conf = getattr(model, "config", None)
    if conf is None or getattr(model, "main_input_name", None) != "pixel_values":
        raise ModelError(f"{type(model).__name__} is not an image classifier (a CNN built here, or a transformers "
                         f"model that reads pixel_values)")
    try:
        find_attention_modules(model)
    except ModelError:
        raise ModelError(f"{type(model).__name__} is an image model whose attention layers cannot be found; "
                         f"supported: the CNNs built here and ViT-like transformers "
                         f"('...layer.<i>.attention')") from None
    if not hasattr(conf, "num_hidden_layers") or not hasattr(conf, "num_attention_heads"):
        raise ModelError(f"{type(model).__name__}'s config names no num_hidden_layers / num_attention_heads")
    return "vit"


def num_maps(model) -> tuple[int, int]:
    """(stages, 1) for a CNN; (layers, heads) for a ViT."""
    if model_family(model) == "cnn":
        return model.num_stages, 1
    return int(model.config.num_hidden_layers), int(model.config.num_attention_heads)


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from None
    if not isinstance(d, dict):
        raise ModelError(f"{path} is not a JSON object")
    return d


def _hub_cnn_folder(repo: str) -> Path | None:
    """The local copy of a hub model when it is one of our CNNs (config.json names one of CNN_CLASSES), else None."""
    from huggingface_hub import hf_hub_download  # deferred: only a hub model named by a user needs it
    try:
        conf = Path(hf_hub_download(repo, "config.json"))
    except Exception as e:  # noqa: BLE001 - hub errors (unknown repo, network)
        raise ModelError(f"could not read the config of hub model {repo}: {e}") from None
    if _read_json(conf).get("model_type") not in CNN_CLASSES:
        return None
    try:
        hf_hub_download(repo, CNN_WEIGHTS)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"hub model {repo} has no {CNN_WEIGHTS}: {e}") from None
    return conf.parent


def load_image_model_info(source: str, num_labels: int | None = None) -> tuple[nn.Module, bool]:
    """load_image_model, also saying whether the classifier head is new (num_labels differed from the saved one)."""
    if source.strip() in IMAGE_TEACHERS:
        raise ModelError(f"{source!r} names a built-in teacher that is trained for a session, not a saved model; "
                         f"give a model folder or hub id")
    if source.strip() == "default":
        raise ModelError("the default teacher is a text model; for images use teacher.source cnn or vit, or a "
                         "folder or hub id of an image classifier")
    path, local = resolve_source(source)
    cnn_folder = None
    if local:
        check_weight_files(Path(path), source)
        if _read_json(Path(path) / "config.json").get("model_type") in CNN_CLASSES:
            cnn_folder = Path(path)
    else:
        cnn_folder = _hub_cnn_folder(path)
    if cnn_folder is not None:
        model = CNN_CLASSES[_read_json(cnn_folder / "config.json")["model_type"]].from_pretrained(cnn_folder)
        head_new = num_labels is not None and num_labels != model.config.num_labels
        if head_new:
            model.replace_head(num_labels)
        return model, head_new

    try:
        conf = AutoConfig.from_pretrained(path, trust_remote_code=False, **_offline_kwargs(local))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"could not read the config of {source}: {e}") from None
    extra = {}
    if num_labels is not None and num_labels != getattr(conf, "num_labels", None):
        extra = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
    try:
        # safetensors only: pickle-based weight files (.bin, .pt) can run code when they are loaded
        model, info = AutoModelForImageClassification.from_pretrained(
            path, attn_implementation="eager", output_loading_info=True, trust_remote_code=False,
            use_safetensors=True, **extra, **_offline_kwargs(local))
    except ValueError as e:
        raise ModelError(f"{source} cannot be loaded as an image classifier with eager attention: {e}") from None
    except OSError as e:
        if "safetensors" in str(e) and not local:
            raise ModelError(f"hub model {source} has no model.safetensors weights; this tool loads safetensors "
                             f"only, because pickle weight files can run code when loaded") from None
        raise ModelError(f"could not load model {source}: {e}") from None
    except Exception as e:  # noqa: BLE001 - damaged weights, shapes that do not match the config, ...
        raise ModelError(f"could not load model {source}: {type(e).__name__}: {e}") from None
    try:
        model_family(model)
    except ModelError as e:
        raise ModelError(f"{source}: {e}") from None
    head_new = bool(info.get("missing_keys")) or bool(info.get("mismatched_keys"))
    return model, head_new


def load_image_model(source: str, num_labels: int | None = None) -> nn.Module:
    """An image classifier from a local folder (our CNN when its config.json says model_type distill_cnn, else a
    transformers image classifier with eager attention) or a hub id (online); safetensors weights only, never
    remote code. With `num_labels` different from the saved model's, the classifier head is new (random)."""
    return load_image_model_info(source, num_labels)[0]


def weight_bytes(folder) -> int:
    return int(sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")))


def save_image_model(model, folder) -> int:
    """Save either kind with safetensors weights (config.json beside them); returns the weights' size in bytes."""
    folder = Path(folder)
    model.save_pretrained(folder)            # ResidualCNN's, or transformers 5's (which writes model.safetensors)
    n = weight_bytes(folder)
    if n == 0:
        raise ModelError(f"saving the model in {folder} wrote no safetensors weights")
    return n
