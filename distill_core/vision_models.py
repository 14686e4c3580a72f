"""Image models for attention distillation: a small residual CNN with stages, small vision transformers built from a
config, and the built-in image teachers the engine trains once and caches.

    CNN  a stem and stages of residual blocks (every stage after the first halves the resolution). Its "attention"
         is the activation attention of Zagoruyko & Komodakis, "Paying more attention to attention" (2017): the
         channel mean of |A|^p of a stage's output A (B, C, h, w), a map over the stage's (h, w) grid.
    ViT  transformers' ViTForImageClassification with eager attention, so its self-attention (B, H, T, T) is read
         like a text model's (capture.AttentionCapture finds `vit.layers.<i>.attention`).

The built-in teachers ("cnn", "vit") are trained on the session's training images (plus the labelled images no
split took), the epoch with the best validation accuracy kept, and saved (safetensors) under
cache_root()/image_teachers/<key>, the key naming everything that changes the result.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import CacheSlot, get_or_build, image_teachers_dir, read_fit
from .capture import find_attention_modules
from .config import IMAGE_TEACHERS, SessionConfig
from .errors import ConfigError, ModelError, NonFiniteLossError
from .images import ImageSplits, to_tensor
from .models import _offline_kwargs, check_weight_files, resolve_source, set_attention_backend
from .optim import make_optimizer
from .store import atomic_write_json
from .teacher import PreparedTeacher, part_indices

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]   # (phase, done, total) -> None; may raise to stop

CNN_MODEL_TYPE = "distill_cnn"
CNN_WEIGHTS = "model.safetensors"


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


class ResidualCNN(nn.Module):
    """A stem (conv3x3 + BN + ReLU), `len(widths)` stages of `blocks` BasicBlocks (the first block of every stage
    after the first has stride 2), global average pooling, dropout and a linear classifier.

    Called like a transformers image classifier: model(pixel_values=x, labels=y, output_hidden_states=True)."""

    main_input_name = "pixel_values"

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

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, **kwargs):
        """pixel_values (B, C, H, W) -> ImageClassifierOutput: logits (B, num_labels); hidden_states, when asked,
        one (B, C_k, H_k, W_k) per stage; loss (cross-entropy) when labels are given. Other keyword arguments
        (output_attentions, return_dict, ...) are accepted and ignored."""
        from transformers.modeling_outputs import ImageClassifierOutput   # deferred: transformers is slow to import
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

    def save_pretrained(self, folder, safe_serialization: bool = True, **kwargs) -> None:
        """config.json and model.safetensors (always safetensors, whatever safe_serialization says)."""
        from safetensors.torch import save_file
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / CNN_WEIGHTS), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))

    @classmethod
    def from_pretrained(cls, folder) -> "ResidualCNN":
        """The CNN saved in `folder` by save_pretrained (safetensors only)."""
        folder = Path(folder)
        try:
            conf = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the CNN's config.json in {folder}: {e}") from None
        if not isinstance(conf, dict):
            raise ModelError(f"the config.json in {folder} is not a JSON object")
        model = cls(CNNConfig.from_dict(conf))
        check_weight_files(folder, str(folder))
        if not (folder / CNN_WEIGHTS).is_file():
            raise ModelError(f"{folder} has no {CNN_WEIGHTS}; save the CNN with save_pretrained(folder)")
        from safetensors.torch import load_file
        try:
            state = load_file(str(folder / CNN_WEIGHTS))
            model.load_state_dict(state, strict=True)
        except Exception as e:  # noqa: BLE001 - safetensors' own errors, or shapes that do not match the config
            raise ModelError(f"could not load the CNN in {folder}: {type(e).__name__}: {e}") from None
        return model


# ---- activation attention -----------------------------------------------------------------------------------------

def _channel_energy(features: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, h, w): mean over channels of |A|^p, in float32."""
    if features.dim() != 4:
        raise ValueError(f"features must be (batch, channels, height, width), not {tuple(features.shape)}")
    return features.float().abs().pow(p).mean(1)


def activation_attention(features: torch.Tensor, p: int = 2) -> torch.Tensor:
    """The paper's attention map for the loss: (B, C, h, w) -> (B, h*w), the channel mean of |A|^p, flattened and
    L2-normalised per example; float32."""
    return F.normalize(_channel_energy(features, p).flatten(1), dim=1)        # (B, h*w)


def activation_map(features: torch.Tensor, size: tuple[int, int], p: int = 2) -> torch.Tensor:
    """For records and pictures: (B, C, h, w) -> (B, H*W), the channel mean of |A|^p bilinearly upsampled to `size`
    (H, W) (align_corners=False), clamped at 0 and normalised to sum 1 per example: a distribution over the image's
    pixels. An example whose features are all zero gets the uniform distribution."""
    energy = _channel_energy(features, p)[:, None]                             # (B, 1, h, w)
    up = F.interpolate(energy, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    flat = up.clamp_min(0.0).flatten(1)                                        # (B, H*W)
    total = flat.sum(1, keepdim=True)                                          # (B, 1)
    uniform = torch.full_like(flat, 1.0 / flat.shape[1])
    return torch.where(total > 0, flat / total.clamp_min(1e-30), uniform)


def _grid_for(n: int, like: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) with h*w == n whose aspect ratio is closest to `like`'s (a square for a square `like`)."""
    ratio = like[0] / like[1]
    best = None
    for h in range(1, n + 1):
        if n % h == 0:
            score = abs(math.log((h / (n // h)) / ratio))
            if best is None or score < best[0]:
                best = (score, (h, n // h))
    return best[1]


def attention_transfer_loss(student_feats: list[torch.Tensor], teacher_maps: list[torch.Tensor], p: int = 2,
                            teacher_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis, 2017; their code: (at(x) - at(y)).pow(2).mean(), summed over the
    pairs, times beta/2): 0.5 * sum over pairs of mean((Q_s - Q_t)^2), with Q = activation_attention.

    student_feats: (B, C_s, h_s, w_s) stage outputs; teacher_maps: the teacher's activation_attention outputs
    (B, h_t*w_t), pair by pair. When a pair's spatial sizes differ, the student's features are bilinearly resized
    (align_corners=False) to the teacher's (h_t, w_t) before its map is taken; (h_t, w_t) come from `teacher_sizes`,
    else they are the factorisation of h_t*w_t with the student's aspect ratio (a square for square images).
    The weight beta (1000 in the paper) is the variant's loss weight and is not applied here."""
    if len(student_feats) != len(teacher_maps):
        raise ValueError(f"{len(student_feats)} student stages against {len(teacher_maps)} teacher maps")
    if not student_feats:
        raise ValueError("attention_transfer_loss needs at least one pair of stages")
    total = None
    for k, (s, t) in enumerate(zip(student_feats, teacher_maps)):
        hs, ws = int(s.shape[-2]), int(s.shape[-1])
        n_t = int(t.shape[-1])
        if teacher_sizes is not None:
            ht, wt = (int(v) for v in teacher_sizes[k])
            if ht * wt != n_t:
                raise ValueError(f"teacher map {k} has {n_t} entries, not {ht}×{wt}")
        else:
            ht, wt = (hs, ws) if hs * ws == n_t else _grid_for(n_t, (hs, ws))
        if (hs, ws) != (ht, wt):
            s = F.interpolate(s.float(), size=(ht, wt), mode="bilinear", align_corners=False)   # (B, C_s, h_t, w_t)
        q_s = activation_attention(s, p)                                     # (B, h_t*w_t)
        term = (q_s - t.to(q_s.device, torch.float32)).pow(2).mean()
        total = term if total is None else total + term
    return 0.5 * total


# ---- building, loading and saving ---------------------------------------------------------------------------------

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
    from transformers import AutoModelForImageClassification, ViTConfig   # deferred: transformers is slow to import
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


def model_family(model) -> str:
    """"cnn" for a ResidualCNN, "vit" for a transformers image model whose attention modules can be captured."""
    if isinstance(model, ResidualCNN):
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


def _replace_cnn_head(model: ResidualCNN, num_labels: int) -> None:
    model.config.num_labels = num_labels
    model.classifier = nn.Linear(model.classifier.in_features, num_labels)


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from None
    if not isinstance(d, dict):
        raise ModelError(f"{path} is not a JSON object")
    return d


def _hub_cnn_folder(repo: str) -> Path | None:
    """The local copy of a hub model when it is one of our CNNs (config.json says distill_cnn), else None."""
    from huggingface_hub import hf_hub_download
    try:
        conf = Path(hf_hub_download(repo, "config.json"))
    except Exception as e:  # noqa: BLE001 - hub errors (unknown repo, network)
        raise ModelError(f"could not read the config of hub model {repo}: {e}") from None
    if _read_json(conf).get("model_type") != CNN_MODEL_TYPE:
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
        if _read_json(Path(path) / "config.json").get("model_type") == CNN_MODEL_TYPE:
            cnn_folder = Path(path)
    else:
        cnn_folder = _hub_cnn_folder(path)
    if cnn_folder is not None:
        model = ResidualCNN.from_pretrained(cnn_folder)
        head_new = num_labels is not None and num_labels != model.config.num_labels
        if head_new:
            _replace_cnn_head(model, num_labels)
        return model, head_new

    from transformers import AutoConfig, AutoModelForImageClassification   # deferred: slow to import
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


# ---- training and inference ---------------------------------------------------------------------------------------

def _augment(images: torch.Tensor, gen: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random shifts of up to `shift` pixels in each direction with zero fill: uint8 (B, H, W, C) -> same shape."""
    b, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, shift, shift, shift, shift))                 # (B, H+2s, W+2s, C)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)                  # (B,)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    rows = torch.arange(h)[None, :] + dy[:, None]                              # (B, H)
    cols = torch.arange(w)[None, :] + dx[:, None]                              # (B, W)
    return padded[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]   # (B, H, W, C)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one example joins the one before (BatchNorm needs two)."""
    order = torch.randperm(n, generator=gen)
    out = list(torch.split(order, batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


@torch.inference_mode()
def predict_images(model, images: np.ndarray, device, batch_size: int = 256) -> torch.Tensor:
    """(N, C) float32 logits on the CPU of uint8 images (N, H, W, C), in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            x = to_tensor(images[i:i + batch_size]).to(device)               # (b, C, H, W)
            out.append(model(pixel_values=x).logits.float().cpu())           # (b, num_labels)
    finally:
        model.train(was_training)
    if not out:
        n = model.config.num_labels
        return torch.zeros((0, n))
    return torch.cat(out)


def _accuracy(model, images: np.ndarray, labels, device) -> float:
    logits = predict_images(model, images, device)
    return float((logits.argmax(-1) == torch.as_tensor(list(labels), dtype=torch.long)).double().mean())


def train_image_model(model, train: tuple[np.ndarray, list[int]], val: tuple[np.ndarray, list[int]], *, epochs: int,
                      lr: float, batch_size: int, device, seed: int, progress: Progress | None = None,
                      augment: bool = True) -> dict:
    """Train an image classifier in place: AdamW, a short linear warm-up then cosine decay, shuffled batches,
    optional random shifts of up to 2 pixels; after each epoch the validation accuracy, and at the end the weights
    of the epoch with the best one (the later of equal ones) are kept. Shifts help a CNN; a small ViT trained for
    a few epochs underfits with them (MNIST 5k, 10 epochs: 79% with shifts, 88% without), so the built-in ViT
    teacher trains without.

    Returns {"examples", "epochs": [{"epoch", "val_accuracy", "train_loss"}], "kept_epoch", "val_accuracy",
    "train_s"}. Deterministic for a seed on the CPU (the caller's global RNG is left as it was)."""
    device = torch.device(device)
    images, labels = train
    val_images, val_labels = val
    n = len(images)
    if n != len(labels):
        raise ValueError(f"{n} training images but {len(labels)} labels")
    if n < 2:
        raise ConfigError(f"an image model needs at least 2 training images, not {n}")
    is_vit = model_family(model) == "vit"
    run = _start_training(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size, device=device,
                          seed=seed, is_vit=is_vit, augment=augment, progress=progress)
    has_val = len(val_labels) > 0
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))                   # dropout
        curve, best, best_state = _train_epochs(run, epochs, val if has_val else None)
    if best_state is not None and best != curve[-1]["epoch"]:
        model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    if is_vit:
        set_attention_backend(model, eager=True)
    kept = best if best is not None else epochs
    if curve and has_val:
        val_acc = curve[kept - 1]["val_accuracy"]
    else:
        val_acc = _accuracy(model, val_images, val_labels, device) if has_val else None
    return {"examples": n, "epochs": curve, "kept_epoch": kept, "val_accuracy": val_acc,
            "train_s": round(time.time() - t0, 2)}


@dataclass
class _ImageTraining:
    """What one image model trains with: its data, optimiser, schedule, shuffling generator and step count."""
    model: nn.Module
    x_all: torch.Tensor                # (N, H, W, C) uint8
    y_all: torch.Tensor                # (N,)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator               # shuffles and shifts
    batch_size: int
    total: int                         # steps of the whole training
    layout: torch.memory_format
    device: torch.device
    lr: float
    augment: bool
    progress: Progress | None
    step: int = 0

    def train_epoch(self, epoch: int) -> list[float]:
        """One pass over the shuffled training images; each batch's loss."""
        self.model.train()
        losses = []
        for index in _batches(len(self.y_all), self.batch_size, self.gen):
            xb = self.x_all[index]                                             # (B, H, W, C) uint8
            if self.augment:
                xb = _augment(xb, self.gen)
            x = xb.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)                  # (B, C, H, W), as to_tensor
            x = x.to(self.device, memory_format=self.layout)
            logits = self.model(pixel_values=x).logits                         # (B, num_labels)
            loss = F.cross_entropy(logits.float(), self.y_all[index].to(self.device))
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"the image model's training loss became {loss.item()} in epoch "
                                         f"{epoch}; lower the learning rate (now {self.lr})")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            self.step += 1
            if self.progress:
                self.progress("train teacher", self.step, self.total)
        return losses


def _start_training(model, images: np.ndarray, labels, *, epochs: int, lr: float, batch_size: int, device,
                    seed: int, is_vit: bool, augment: bool, progress: Progress | None) -> _ImageTraining:
    """Move the model to `device` in its training layout and make its optimiser and schedule."""
    model.to(device)
    if is_vit:
        set_attention_backend(model, eager=False)      # attention is not read here: the fast path
    layout = torch.contiguous_format if is_vit else torch.channels_last    # convolutions run ~25% faster on the CPU
    model.to(memory_format=layout)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = make_optimizer(None, [{"params": decay, "weight_decay": 0.05 if is_vit else 5e-4},
                                {"params": no_decay, "weight_decay": 0.0}], lr, 0.0, device)
    gen = torch.Generator().manual_seed(int(seed))
    steps_per_epoch = len(_batches(len(images), batch_size, torch.Generator().manual_seed(0)))
    total = steps_per_epoch * epochs
    # a ViT from scratch learns faster with a longer warm-up (MNIST 5k, 5 epochs: 65% against 59% with 5%)
    warm = max(1, int((0.15 if is_vit else 0.05) * total))

    def lr_factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    x_all = torch.from_numpy(np.ascontiguousarray(images))                     # (N, H, W, C) uint8
    y_all = torch.as_tensor(list(labels), dtype=torch.long)                    # (N,)
    return _ImageTraining(model, x_all, y_all, opt, sched, gen, batch_size, total, layout, device, lr, augment,
                          progress)


def _train_epochs(run: _ImageTraining, epochs: int, val: tuple[np.ndarray, list[int]] | None):
    """Train `epochs` epochs; (the curve, the epoch of the best validation accuracy, its weights), the last two
    None without validation images."""
    curve, best, best_state = [], None, None
    for epoch in range(1, epochs + 1):
        losses = run.train_epoch(epoch)
        acc = _accuracy(run.model, val[0], val[1], run.device) if val is not None else None
        curve.append({"epoch": epoch, "val_accuracy": acc, "train_loss": round(float(np.mean(losses)), 5)})
        if val is not None and (best is None or acc >= curve[best - 1]["val_accuracy"]):   # ties: the later, annealed one
            best, best_state = epoch, copy.deepcopy(run.model.state_dict())
    return curve, best, best_state


# ---- the built-in image teachers ----------------------------------------------------------------------------------

IMAGE_TEACHER_VERSION = 3      # bump when the teacher recipe changes what it produces


def _teacher_extra(cfg: SessionConfig, splits: ImageSplits) -> tuple[np.ndarray | None, list[int]]:
    """The labelled images outside the splits a built-in teacher also learns from: all of them with
    teacher.finetune_on "all", none with "train" (the students' training split only)."""
    if cfg.teacher.finetune_on != "all" or splits.extra_images is None:
        return None, []
    return splits.extra_images, list(splits.extra_labels)


def image_teacher_key(cfg: SessionConfig, splits: ImageSplits) -> str:
    """sha256[:16] of everything that changes a built-in teacher: the recipe version, teacher.source, the image
    section's teacher_* settings (and image.patch for a ViT), the data and split, the image size and channels, the
    number of labels and teacher.seed."""
    im = cfg.image
    teacher_fields = {f.name: (list(v) if isinstance(v := getattr(im, f.name), tuple) else v)
                      for f in dataclasses.fields(im) if f.name.startswith("teacher_")}
    if cfg.teacher.source in ("cnn", "vit"):
        teacher_fields["teacher_epochs"] = im.epochs_for(cfg.teacher.source)     # 0 and the family's own alike
    ident = {"version": IMAGE_TEACHER_VERSION, "source": cfg.teacher.source, "image": teacher_fields,
             "patch": im.patch if cfg.teacher.source == "vit" else None, "data": splits.fingerprint,
             "size": list(splits.size), "channels": splits.channels, "num_labels": splits.num_labels,
             "extra": len(_teacher_extra(cfg, splits)[1]), "seed": cfg.teacher.seed,
             **({"part": list(cfg.teacher.part)} if cfg.teacher.part != (1, 1) else {})}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def build_image_teacher(cfg: SessionConfig, splits: ImageSplits) -> nn.Module:
    """The untrained built-in teacher named by teacher.source ("cnn" or "vit"), seeded by teacher.seed."""
    im, source = cfg.image, cfg.teacher.source
    if source == "vit":
        check_patch(splits.size, im.patch)
    torch.manual_seed(cfg.teacher.seed)
    if source == "cnn":
        return build_cnn(splits.channels, splits.num_labels, im.teacher_widths, im.teacher_blocks)
    if source == "vit":
        return build_vit(channels=splits.channels, image_size=splits.size, patch=im.patch, layers=im.teacher_layers,
                         heads=im.teacher_heads, hidden=im.teacher_hidden, num_labels=splits.num_labels)
    raise ConfigError(f"teacher.source {source!r} is not a built-in image teacher ({', '.join(IMAGE_TEACHERS)})")


def prepare_image_teacher(cfg: SessionConfig, splits: ImageSplits, device, progress: Progress | None = None):
    """The session's image teacher: a built-in one ("cnn", "vit") trained once on the training images (plus the
    labelled images no split took) and cached, or a saved image classifier loaded as it is."""
    device = torch.device(device)
    source = cfg.teacher.source
    if source not in IMAGE_TEACHERS:
        model, head_new = load_image_model_info(source, splits.num_labels)
        return PreparedTeacher(model.to(device).eval(), None, resolve_source(source)[0], False, False,
                               head_new=head_new)
    if source == "vit":
        check_patch(splits.size, cfg.image.patch)     # refused before any training
    slot = CacheSlot(image_teachers_dir(), image_teacher_key(cfg, splits))
    target = slot.path

    def build():
        log.info("training the %s teacher (one time, cached in %s)", source, target)
        return _train_image_teacher(cfg, splits, device, progress)

    def write(built, tmp: Path) -> None:
        model, fit = built
        save_image_model(model.cpu(), tmp)
        atomic_write_json(tmp / "distill_fit.json", {"source": source, "key": slot.key, "data": splits.fingerprint,
                                                     "fit": fit})

    def write_failed(e: BaseException):
        raise ModelError(f"could not save the trained image teacher in {slot.folder}: {e}; free disk space or "
                         f"set ADS_CACHE_DIR to a writable folder") from None
    model, cached = get_or_build(slot, lambda repair: _load_cached_image_teacher(target), build, write,
                                 write_errors=(OSError,), write_failed=write_failed,
                                 reread=lambda: load_image_model(str(target)))   # what a later session loads, exactly
    return PreparedTeacher(model.to(device).eval(), None, str(target), True, cached, head_new=False,
                           fit=read_fit(target / "distill_fit.json"))


def _load_cached_image_teacher(target: Path) -> nn.Module | None:
    """The built-in teacher cached in `target`, or None when there is none (a damaged one is deleted)."""
    if not (target / "config.json").is_file():
        return None
    try:
        return load_image_model(str(target))
    except ModelError as e:
        log.warning("the cached image teacher in %s is damaged and is trained again: %s", target, e)
        shutil.rmtree(target, ignore_errors=True)
        return None


def _train_image_teacher(cfg: SessionConfig, splits: ImageSplits, device, progress: Progress | None):
    """(the built-in teacher trained on the training images, plus the labelled images no split took when
    teacher.finetune_on is "all", the fit record)."""
    source = cfg.teacher.source
    model = build_image_teacher(cfg, splits)
    images, labels = splits.train_images, list(splits.train_labels)
    extra_images, extra_labels = _teacher_extra(cfg, splits)
    if len(extra_labels):
        images = np.concatenate([images, extra_images])
        labels = labels + extra_labels
    keep = part_indices(len(labels), cfg.teacher.part)
    images, labels = images[keep], [labels[i] for i in keep]
    im = cfg.image
    fit = train_image_model(model, (images, labels), (splits.val_images, list(splits.val_labels)),
                            epochs=im.epochs_for(source), lr=im.teacher_lr, batch_size=im.teacher_batch_size,
                            device=device, seed=cfg.teacher.seed, progress=progress, augment=source == "cnn")
    return model, fit
