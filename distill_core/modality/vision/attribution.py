"""Which pixels an image classifier's decision rests on, and whether a student looks where its teacher looks.

Two methods, both from Captum:

    ig       Integrated Gradients on the pixels (model space, after images.to_tensor) of the target class's
             probability, summed over the colour channels: an (H, W) map whose sum is f(x) - f(baseline) up to the
             convergence delta. The baseline is the picture's background: every pixel set to the per-channel median
             of the image's one-pixel border (black for MNIST-like digits, i.e. to_tensor(0) = -1 everywhere; white
             for dark drawings on white paper). Pixels that already have the background colour have a path of
             length zero and get exactly 0, like the special tokens of a text (attribution.py).
    gradcam  Grad-CAM (LayerGradCam, ReLU applied) on the last stage of a CNN (model.last_stage) for the target
             class's logit (as in Selvaraju et al.), bilinearly upsampled to (H, W) with
             LayerAttribution.interpolate. CNNs only: a ViT has no spatial feature map to weigh, so a ViT is
             explained with Integrated Gradients only.

Teacher and students are explained towards the same class, the teacher's prediction, so that their maps compare.

    attr = image_attributions(model, image)                      # image: uint8 (H, W, C)
    attr.scores                                                  # (H, W), unit L2 norm
    cmp = compare_attributions(teacher_attr, student_attr, teacher_att, student_att)
    cmp["spearman"], cmp["attention_agreement"]

Attention is compared as a distribution over the image's pixels: a CNN's activation attention of its last stage
(vision_models.activation_map), or a ViT's last layer, heads averaged, [CLS] row over the patches, each patch's
weight spread evenly over its pixels (nearest upsampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...activation import activation_map
from ...capture import AttentionCapture
from ...errors import ModelError
from ...metrics import JS_MAX, row_metric
from ...models import eval_mode, set_attention_backend
from ..text.attribution import TOP_K, rank_correlation
from .data import to_tensor
from .models import model_family

METHODS = {"ig": "Integrated Gradients", "gradcam": "Grad-CAM"}
BASELINES = ("background", "black")
TEACHER = "teacher"


@dataclass
class ImageAttribution:
    """Attributions of one image towards one class, by one method."""
    method: str                     # "ig" or "gradcam"
    scores: np.ndarray              # (H, W), normalised by the L2 norm
    target: int                     # the class attributed to
    delta: float                    # IG: sum(raw_scores) - (f(x) - f(baseline)); Grad-CAM: nan (no such sum)
    probs: np.ndarray               # (C,) class probabilities of the image
    raw_scores: np.ndarray | None = None          # (H, W) before normalisation
    background_mask: np.ndarray | None = None     # (H, W) True where the pixel equals the IG baseline

    def content_mask(self) -> np.ndarray:
        """(H, W) True for the pixels that can carry an attribution (all of them for Grad-CAM)."""
        if self.background_mask is None:
            return np.ones(self.scores.shape, dtype=bool)
        return ~np.asarray(self.background_mask, dtype=bool)


# ---------------------------------------------------------------------------------------------------------
# inputs


def _family(model) -> str:
    return model_family(model)


def methods_for(*families: str) -> list[str]:
    """The methods that explain every one of these model families ("cnn", "vit") alike: IG always, Grad-CAM when
    all are CNNs."""
    return ["ig", "gradcam"] if families and all(f == "cnn" for f in families) else ["ig"]


def _as_image(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3) or arr.dtype != np.uint8:
        raise ValueError(f"an image must be uint8 pixels (H, W, C) with 1 or 3 channels, got {arr.dtype} "
                         f"{arr.shape}")
    return arr


def baseline_image(image, kind: str = "background") -> np.ndarray:
    """The IG baseline for one uint8 image (H, W, C): "background" fills it with the per-channel median of its
    one-pixel border, "black" with zeros. Returns uint8 (H, W, C)."""
    arr = _as_image(image)
    if kind == "black":
        return np.zeros_like(arr)
    if kind != "background":
        raise ValueError(f"unknown baseline {kind!r}; use one of {', '.join(BASELINES)}")
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])        # (2H + 2W, C)
    colour = np.median(border, axis=0).round().astype(np.uint8)               # (C,)
    return np.broadcast_to(colour, arr.shape).copy()


def _pixels(model, image: np.ndarray) -> torch.Tensor:
    device = next(model.parameters()).device
    return to_tensor(image[None]).to(device)                                  # (1, C, H, W)


def _logits(model, x: torch.Tensor) -> torch.Tensor:
    return model(pixel_values=x).logits.float()                               # (B, C)


def class_probs(model, image) -> np.ndarray:
    """(C,) class probabilities of one uint8 image (H, W, C), in eval mode."""
    arr = _as_image(image)
    with torch.inference_mode(), eval_mode(model, frozen=True):
        return torch.softmax(_logits(model, _pixels(model, arr)), -1)[0].cpu().numpy()


def _check_target(target: int | None, probs: np.ndarray) -> int:
    n = probs.shape[0]
    target = int(probs.argmax()) if target is None else int(target)
    if not 0 <= target < n:
        raise ValueError(f"target class {target} does not exist: the model has {n} classes (0..{n - 1})")
    return target


# ---------------------------------------------------------------------------------------------------------
# attributions


def _integrated_gradients(model, x: torch.Tensor, base: torch.Tensor, target: int, n_steps: int):
    """(1, C, H, W) image and baseline -> ((H, W) attributions summed over channels, convergence delta)."""
    from captum.attr import IntegratedGradients  # deferred: captum is heavy, only attributions need it

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(_logits(model, pixels), -1)[:, target]           # (B,)

    attributions, delta = IntegratedGradients(forward).attribute(
        x, baselines=base, n_steps=n_steps, return_convergence_delta=True)      # (1, C, H, W), (1,)
    return attributions[0].sum(0).detach().float().cpu().numpy(), float(delta.reshape(-1)[0])


def _grad_cam(model, x: torch.Tensor, target: int) -> np.ndarray:
    """(1, C, H, W) image -> (H, W) Grad-CAM of the last stage, ReLU applied, upsampled."""
    from captum.attr import LayerAttribution, LayerGradCam  # deferred: as above

    cam = LayerGradCam(lambda pixels: _logits(model, pixels), model.last_stage)
    maps = cam.attribute(x, target=target, relu_attributions=True)             # (1, 1, h, w)
    up = LayerAttribution.interpolate(maps, tuple(x.shape[-2:]), interpolate_mode="bilinear")   # (1, 1, H, W)
    return up[0, 0].detach().float().clamp_min(0.0).cpu().numpy()


def image_attributions(model, image, method: str = "ig", target: int | None = None, n_steps: int = 32,
                       baseline: str = "background") -> ImageAttribution:
    """Attributions of one uint8 image (H, W, C) towards `target` (default: the model's predicted class).

    method "ig" (any image model; `n_steps` and `baseline` apply) or "gradcam" (CNNs only)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; use one of {', '.join(METHODS)}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    arr = _as_image(image)
    family = _family(model)
    if method == "gradcam" and family != "cnn":
        raise ModelError("Grad-CAM weighs the feature maps of a CNN's last stage, which a vision transformer "
                         "does not have: explain a ViT with Integrated Gradients (ig)")
    x = _pixels(model, arr)
    # callers may sit inside torch.inference_mode() (e.g. an app view); attributions need autograd
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model, frozen=True):
        with torch.no_grad():
            probs = torch.softmax(_logits(model, x), -1)[0].cpu().numpy()          # (C,)
        target = _check_target(target, probs)
        if method == "ig":
            base_img = baseline_image(arr, baseline)
            raw, delta = _integrated_gradients(model, x, _pixels(model, base_img), target, n_steps)
            background = (arr == base_img).all(-1)                                 # (H, W)
        else:
            raw, delta, background = _grad_cam(model, x, target), float("nan"), None
    norm = float(np.linalg.norm(raw))
    return ImageAttribution(method=method, scores=raw / norm if norm > 0 else raw.copy(), target=target,
                            delta=delta, probs=probs, raw_scores=raw, background_mask=background)


# ---------------------------------------------------------------------------------------------------------
# attention as a distribution over pixels


def _vit_cls_map(layer: np.ndarray, grid, patch: int) -> np.ndarray:
    """One ViT layer (H, T, T) -> (gh * patch, gw * patch): the heads' mean [CLS] row over the patches,
    renormalised, each patch's weight spread evenly over its patch*patch pixels."""
    gh, gw = int(grid[0]), int(grid[1])
    row = np.asarray(layer, dtype=np.float64).mean(0)[0, 1:]                    # (gh * gw,)
    if row.shape[0] != gh * gw:
        raise ValueError(f"the attention covers {row.shape[0]} patches, not the {gh}×{gw} grid")
    row = row / row.sum() if row.sum() > 0 else np.full_like(row, 1.0 / row.size)
    return np.kron(row.reshape(gh, gw), np.ones((patch, patch))) / (patch * patch)


def recorded_spatial_attention(maps, desc: dict, image_size) -> np.ndarray:
    """A recorded probe image's attention (run.read_attention: CNN (S, 1, 1, H*W), ViT (L, H, T, T)) as an (H, W)
    distribution over pixels: the last stage / last layer. desc is probe.json's maps[role]."""
    arr = np.asarray(maps, dtype=np.float64)
    h, w = int(image_size[0]), int(image_size[1])
    if desc.get("family") == "cnn":
        if arr.ndim != 4 or arr.shape[-1] != h * w:
            raise ValueError(f"a CNN's recorded maps must be (stages, 1, 1, {h * w}), got {arr.shape}")
        out = arr[-1, 0, 0].reshape(h, w)
    elif desc.get("family") == "vit":
        if arr.ndim != 4:
            raise ValueError(f"a ViT's recorded maps must be (layers, heads, T, T), got {arr.shape}")
        out = _vit_cls_map(arr[-1], desc["grid"], int(desc["patch"]))
    else:
        raise ValueError(f"unknown model family {desc.get('family')!r} in the run's maps")
    if out.shape != (h, w):
        raise ValueError(f"the attention covers {out.shape[0]}×{out.shape[1]} pixels, not the image's {h}×{w}")
    return out / out.sum() if out.sum() > 0 else np.full((h, w), 1.0 / (h * w))


def live_spatial_attention(model, image) -> np.ndarray:
    """The model's attention on one uint8 image (H, W, C) as an (H, W) distribution over pixels, computed now the
    way a run records it (for images outside the probe set)."""
    arr = _as_image(image)
    size = arr.shape[:2]
    x = _pixels(model, arr)
    with torch.inference_mode(), eval_mode(model, frozen=True):
        if _family(model) == "cnn":
            feats = model(pixel_values=x, output_hidden_states=True).hidden_states[-1]    # (1, C_S, h, w)
            return recorded_spatial_attention(activation_map(feats, size).cpu().numpy()[None, None],
                                              {"family": "cnn"}, size)
        set_attention_backend(model, eager=True)
        last = int(model.config.num_hidden_layers) - 1
        with AttentionCapture(model, [last]) as cap:
            model(pixel_values=x)
            layer = cap.pop()[0][0].float().cpu().numpy()                             # (H, T, T)
    patch = int(model.config.patch_size)
    return recorded_spatial_attention(layer[None], {"family": "vit", "patch": patch,
                                                    "grid": [size[0] // patch, size[1] // patch]}, size)


def attention_agreement(teacher_map, student_map) -> float:
    """1 - Jensen-Shannon divergence / ln 2 of two (H, W) attention distributions over the same pixels: 1 means
    identical, 0 maximally different."""
    p = np.asarray(teacher_map, dtype=np.float32).reshape(1, 1, 1, -1)
    q = np.asarray(student_map, dtype=np.float32).reshape(1, 1, 1, -1)
    if p.shape != q.shape:
        raise ValueError(f"the teacher's attention covers {p.size} pixels but the student's {q.size}")
    js, _ = row_metric("js", torch.from_numpy(p), torch.from_numpy(q))              # (1, 1, 1)
    return float(1.0 - js.mean().item() / JS_MAX)


# ---------------------------------------------------------------------------------------------------------
# teacher vs student


def top_pixels(attribution: ImageAttribution, k: int = TOP_K, absolute: bool = True) -> list[int]:
    """Flat positions (row * W + col) of the k most important content pixels, most important first."""
    scores = np.abs(attribution.scores) if absolute else np.asarray(attribution.scores)
    candidates = np.flatnonzero(attribution.content_mask().reshape(-1))
    order = np.argsort(-scores.reshape(-1)[candidates], kind="stable")
    return [int(i) for i in candidates[order[:k]]]


def compare_attributions(teacher_attr: ImageAttribution, student_attr: ImageAttribution, teacher_attention=None,
                         student_attention=None, k: int | None = None) -> dict:
    """How far a student's pixel attributions follow the teacher's on the same image, by the same method.

    Returns spearman (rank correlation over the pixels both can attribute, nan when undefined), top_k_overlap
    (share of the k largest-magnitude pixels in common; k defaults to a tenth of those pixels, at least 1), k,
    teacher_top / student_top (flat pixel positions), same_target, and attention_agreement
    (attention_agreement of the two (H, W) attention maps when both are given, else nan)."""
    if teacher_attr.method != student_attr.method:
        raise ValueError(f"the teacher was explained by {METHODS[teacher_attr.method]} and the student by "
                         f"{METHODS[student_attr.method]}: compare attributions of one method")
    if teacher_attr.scores.shape != student_attr.scores.shape:
        raise ModelError(f"the teacher's attributions cover {teacher_attr.scores.shape} pixels and the "
                         f"student's {student_attr.scores.shape}: explain the same image")
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    mask = teacher_attr.content_mask() & student_attr.content_mask()                     # (H, W)
    n = int(mask.sum())
    k_used = min(max(1, round(n / 10)) if k is None else int(k), n)
    t_top, s_top = top_pixels(teacher_attr, k_used), top_pixels(student_attr, k_used)
    overlap = len(set(t_top) & set(s_top)) / k_used if k_used else float("nan")
    agree = (attention_agreement(teacher_attention, student_attention)
             if teacher_attention is not None and student_attention is not None else float("nan"))
    return {"spearman": rank_correlation(teacher_attr.scores, student_attr.scores, mask.reshape(-1)),
            "top_k_overlap": float(overlap), "k": k_used, "teacher_top": t_top, "student_top": s_top,
            "same_target": teacher_attr.target == student_attr.target, "attention_agreement": agree}


@dataclass
class TeacherStudentAttributions:
    """The teacher and its students explained on one image towards the teacher's predicted class."""
    method: str
    target: int
    attributions: dict[str, ImageAttribution]      # "teacher" and each student
    comparisons: dict[str, dict]                   # each student -> compare_attributions with the teacher


def explain_teacher_and_students(teacher, students: dict, image, method: str = "ig", n_steps: int = 32,
                                 attention: dict | None = None) -> TeacherStudentAttributions:
    """Attribute one uint8 image (H, W, C) with the teacher and each student (name -> model), all towards the
    teacher's predicted class, and compare each student with the teacher. `attention` (optional): "teacher" and
    student names -> (H, W) attention distributions (recorded_spatial_attention or live_spatial_attention)."""
    target = int(class_probs(teacher, image).argmax())
    attrs = {TEACHER: image_attributions(teacher, image, method, target, n_steps)}
    for name, model in students.items():
        attrs[name] = image_attributions(model, image, method, target, n_steps)
    attention = attention or {}
    comparisons = {name: compare_attributions(attrs[TEACHER], attrs[name], attention.get(TEACHER),
                                              attention.get(name)) for name in students}
    return TeacherStudentAttributions(method, target, attrs, comparisons)
