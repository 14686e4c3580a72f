"""Where an image model looks: spatial maps from the recorded probe arrays, attention rollout, an uploaded picture
read the way the run's models read images, and both models of a run run live on it.

The recorded layouts (see modality/vision/modality.py) are

    CNN  (S, 1, 1, H*W)  each stage's activation attention upsampled to the image, a distribution over pixels
    ViT  (L, H, T, T)    self-attention, T = 1 + gh*gw: token 0 is [CLS], then the patches row by row

and `describe` is the run's probe["maps"]["teacher"] or ["student"]: {"family": "cnn", "stages", "sizes"} or
{"family": "vit", "layers", "heads", "patch", "grid": [gh, gw], "tokens"}.

No Streamlit here: the app's image explorer draws what these functions return.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from ...activation import activation_map
from ...capture import AttentionCapture
from ...errors import DataError
from ...models import set_attention_backend
from ...reopen import IMAGE, reopen
from ...store import Run
from .data import to_tensor
from .models import model_family

MAX_UPLOAD_MB = 20                     # an uploaded picture larger than this is refused
MAX_UPLOAD_PIXELS = 40_000_000         # and one that would decode to more pixels than this
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
MEAN_HEADS = -1                        # the `head` that averages a layer's heads


# ---- maps --------------------------------------------------------------------------------------------------
def _row_normalise(m: np.ndarray) -> np.ndarray:
    total = m.sum(-1, keepdims=True)
    return np.divide(m, total, out=np.full_like(m, 1.0 / m.shape[-1]), where=total > 0)


def attention_rollout(maps: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): (L, H, T, T) -> (L, T, T), float64.

    Each layer's heads are averaged, the residual connection is added as 0.5·A + 0.5·I, rows are renormalised, and
    the layers are multiplied through: rollout[l] = Â_l · Â_{l-1} ··· Â_0, how much each token's representation
    after layer l draws on each input token. Every row sums to 1."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"rollout needs (layers, heads, T, T) attention, got shape {maps.shape}")
    t = maps.shape[-1]
    a = _row_normalise(0.5 * maps.mean(1) + 0.5 * np.eye(t))              # (L, T, T)
    out = np.empty_like(a)
    acc = np.eye(t)
    for layer in range(a.shape[0]):
        acc = a[layer] @ acc                                               # (T, T)
        out[layer] = acc
    return out


def cls_map(row: np.ndarray, grid) -> np.ndarray:
    """The [CLS] token's attention over the patches: row (..., T) with T = 1 + gh*gw -> (..., gh, gw).

    Column 0 (the [CLS] token itself) is dropped and the rest renormalised to sum 1 (uniform when it is all 0)."""
    row = np.asarray(row, dtype=np.float64)
    gh, gw = int(grid[0]), int(grid[1])
    if row.shape[-1] != 1 + gh * gw:
        raise ValueError(f"a [CLS] row over a {gh}×{gw} patch grid has {1 + gh * gw} entries, not {row.shape[-1]}")
    patches = _row_normalise(np.clip(row[..., 1:], 0.0, None))             # (..., gh*gw)
    return patches.reshape(*row.shape[:-1], gh, gw)


def patches_to_pixels(grid_map: np.ndarray, image_size) -> np.ndarray:
    """A (gh, gw) distribution over patches as an (H, W) distribution over pixels: each patch's weight is spread
    evenly over the pixels it covers (nearest-neighbour upsampling, divided by the patch's pixel count), so that the
    map sums to 1 like a CNN's and the two can share a colour scale."""
    grid_map = np.asarray(grid_map, dtype=np.float64)
    gh, gw = grid_map.shape
    h, w = int(image_size[0]), int(image_size[1])
    rows = np.minimum(np.arange(h) * gh // h, gh - 1)                     # (H,) patch row of each pixel row
    cols = np.minimum(np.arange(w) * gw // w, gw - 1)                     # (W,)
    counts = np.bincount(rows, minlength=gh)[:, None] * np.bincount(cols, minlength=gw)[None, :]   # (gh, gw)
    per_pixel = np.divide(grid_map, counts, out=np.zeros_like(grid_map), where=counts > 0)
    return per_pixel[rows][:, cols]                                        # (H, W)


def layer_row(maps: np.ndarray, layer: int, head: int = MEAN_HEADS, rollout: bool = False) -> np.ndarray:
    """One layer's (T, T) ViT map: one head, the mean over heads (head -1), or the rollout up to that layer."""
    maps = np.asarray(maps, dtype=np.float64)                              # (L, H, T, T)
    if rollout:
        return attention_rollout(maps[: layer + 1])[layer]
    return maps[layer].mean(0) if head == MEAN_HEADS else maps[layer, head]


def spatial_map(maps: np.ndarray, layer: int, head: int, describe: dict, image_size,
                rollout: bool = False) -> np.ndarray:
    """Where one model looks on the picture: (H, W), summing to 1 over the pixels.

    CNN: stage `layer`'s recorded activation attention reshaped to the image (head is ignored).
    ViT: the [CLS] row of layer `layer` (head `head`, -1 = the mean over heads; `rollout`: the attention rollout up
    to that layer instead) over the patches, spread over each patch's pixels (patches_to_pixels)."""
    maps = np.asarray(maps)
    h, w = int(image_size[0]), int(image_size[1])
    if describe.get("family") == "cnn":
        return np.asarray(maps[layer, 0, 0], dtype=np.float64).reshape(h, w)
    grid = describe["grid"]
    return patches_to_pixels(cls_map(layer_row(maps, layer, head, rollout)[0], grid), (h, w))


def top_region(spatial: np.ndarray, rows: int = 3, cols: int = 3) -> tuple[str, float]:
    """The part of the picture (of a rows×cols division, e.g. "top left") holding the most of a (H, W) map, and the
    share of the map it holds."""
    spatial = np.asarray(spatial, dtype=np.float64)
    h, w = spatial.shape
    r_edges = np.linspace(0, h, rows + 1).round().astype(int)
    c_edges = np.linspace(0, w, cols + 1).round().astype(int)
    shares = np.array([[spatial[r_edges[i]:r_edges[i + 1], c_edges[j]:c_edges[j + 1]].sum() for j in range(cols)]
                       for i in range(rows)])
    total = spatial.sum() or 1.0
    i, j = np.unravel_index(int(np.argmax(shares)), shares.shape)
    vertical = ["top", "middle", "bottom"] if rows == 3 else [f"row {k}" for k in range(rows)]
    horizontal = ["left", "centre", "right"] if cols == 3 else [f"column {k}" for k in range(cols)]
    name = "centre" if (vertical[i], horizontal[j]) == ("middle", "centre") else f"{vertical[i]} {horizontal[j]}"
    return name, float(shares[i, j] / total)


def spatial_js(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (natural log) between two spatial maps, each taken as a distribution over pixels."""
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, None)
    q = np.clip(np.asarray(q, dtype=np.float64).ravel(), 0.0, None)
    p, q = p / (p.sum() or 1.0), q / (q.sum() or 1.0)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log(a[keep] / m[keep])))
    return 0.5 * kl(p) + 0.5 * kl(q)


# ---- an uploaded picture -----------------------------------------------------------------------------------
def read_image(data: bytes, image_size, channels: int) -> np.ndarray:
    """An uploaded PNG/JPEG (or any still image Pillow reads) as the run's models see images: uint8 (H, W, C).

    Turned upright (EXIF), transparency laid over white, converted to grayscale (channels 1) or RGB (3), resized
    bilinearly to image_size (H, W). Raises DataError naming the problem and the fix for an empty file, a file over
    MAX_UPLOAD_MB, or bytes that are not an image. Pillow decodes pixels only: nothing is unpickled."""
    if not data:
        raise DataError("the uploaded file is empty: choose a PNG or JPEG picture")
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        raise DataError(f"the uploaded file is {len(data) / 1024 / 1024:.1f} MB; pictures up to {MAX_UPLOAD_MB} MB "
                        f"are read: shrink it or save it as JPEG")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels!r}")
    h, w = int(image_size[0]), int(image_size[1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                    # palette and EXIF warnings
            with Image.open(io.BytesIO(data)) as im:
                if im.size[0] * im.size[1] > MAX_UPLOAD_PIXELS:
                    raise DataError(f"the uploaded picture is {im.size[0]}×{im.size[1]} pixels; pictures up to "
                                    f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels are read: shrink it first")
                im = ImageOps.exif_transpose(im)
                if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba)
                if im.mode in ("I", "I;16", "I;16L", "I;16B", "F"):       # deep grayscale: scale to 8 bits
                    a = np.asarray(im, dtype=np.float64)
                    top = a.max(initial=0.0)
                    im = Image.fromarray(np.clip(a * (255.0 / top if top > 255 else 1.0), 0, 255)
                                         .astype(np.uint8), "L")
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                pixels = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for bytes that are not an image
        raise DataError(f"the uploaded file is not a picture Pillow can read ({type(e).__name__}): upload a PNG or "
                        f"JPEG image") from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


# ---- a run's models, live ----------------------------------------------------------------------------------
def load_run_models(run: Run, variant: str, weights: str = "final") -> tuple[nn.Module, nn.Module]:
    """(teacher, student) of an image run, in eval mode on the CPU with attention that can be captured: the teacher
    at probe["teacher_path"] (relative paths are read from the run's folder) and the variant's final or best
    weights, as reopen(run, weights) loads them. ModelError for a run that is not an image run."""
    fr = reopen(run, weights)
    fr.require(IMAGE)
    teacher, student = fr.teacher(), fr.student(variant)
    for model in (teacher, student):
        set_attention_backend(model, eager=True)
    return teacher, student


@torch.inference_mode()
def maps_on_image(model, image: np.ndarray, image_size) -> tuple[np.ndarray, np.ndarray]:
    """One model on one picture, uint8 (H, W, C): (maps, class probabilities), maps laid out like the recorded
    probe maps: (S, 1, 1, H*W) for a CNN, (L, H, T, T) for a ViT; float32."""
    image = np.array(image, dtype=np.uint8)                               # a writable copy for torch
    if image.ndim == 2:
        image = image[..., None]
    x = to_tensor(image[None])                                             # (1, C, H, W)
    model.eval()
    if model_family(model) == "cnn":
        out = model(pixel_values=x, output_hidden_states=True)
        size = (int(image_size[0]), int(image_size[1]))
        maps = torch.stack([activation_map(f, size) for f in out.hidden_states], 1)    # (1, S, H*W)
        maps = maps[0, :, None, None, :]                                   # (S, 1, 1, H*W)
    else:
        set_attention_backend(model, eager=True)
        with AttentionCapture(model) as cap:
            out = model(pixel_values=x)
            maps = cap.pop_stacked()[0]                                    # (L, H, T, T)
    probs = torch.softmax(out.logits.float(), -1)[0]                       # (classes,)
    return maps.float().cpu().numpy(), probs.cpu().numpy()
