"""A user's pictures: files of any common format decoded to uint8 arrays (EXIF orientation, 16-bit and alpha
handled, oversized ones skipped), resized to one size, and read from a folder or zip of class folders."""
from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ...config import IMAGE_DATASETS
from ...errors import DataError
from ...sources import file_label, is_upload

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


def counted(n: int, one: str, many: str | None = None) -> str:
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
        notices.append(f"{counted(len(unreadable), 'file was', 'files were')} skipped: not images Pillow can read "
                       f"({_shown(unreadable)}); use PNG, JPEG, BMP, GIF or WebP images")
    if huge:
        notices.append(f"{counted(len(huge), 'image was', 'images were')} skipped for being over "
                       f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels ({_shown(huge)}); shrink them to use them")
    return notices


def _resize_notice(resized: int, total: int, target: tuple[int, int], size: int) -> str:
    w, h = target
    if size:
        return f"{counted(resized, 'image was', 'images were')} resized to {w}×{h} pixels (image.size)"
    return (f"the images have different sizes: {resized:,} of {total:,} were resized to {w}×{h} pixels (width × "
            f"height), the most common size; set image.size to choose another")


def _stack_channels(arrays: list[np.ndarray], notices: list[str]) -> np.ndarray:
    """(H, W, 1 or 3) arrays as one (n, H, W, C): grayscale ones repeated to 3 channels when any is in colour."""
    gray = sum(a.shape[-1] == 1 for a in arrays)
    if gray and gray < len(arrays):
        notices.append(f"{counted(gray, 'grayscale image was', 'grayscale images were')} converted to RGB (3 "
                       f"channels) to match the {counted(len(arrays) - gray, 'colour image')}")
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


def missing_source(path: Path, what: str) -> DataError:
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
            raise DataError(f"zip {name} was refused: {counted(len(unsafe), 'member')} ({_shown(unsafe)}) would "
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
        raise DataError(f"{need}, but its {counted(len(loose), 'file lies', 'files lie')} at its top with no class "
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
        raise DataError(f"{display}: class {name!r} has only {counted(k, 'readable image')}; every class needs at "
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
        notices.append(f"{counted(len(loose), 'file lying', 'files lying')} beside the class folders, in none of "
                       f"them, {'was' if len(loose) == 1 else 'were'} skipped "
                       f"({_shown(['/'.join(entries[i][0]) for i in loose])})")
    order = [(c, i) for c, (_, idx) in enumerate(classes.items()) for i in idx]
    images, kept, decode_notices = decode_images([entries[i][1] for _, i in order],
                                                 ["/".join(entries[i][0]) for _, i in order], size)
    notices += decode_notices
    if not kept:
        raise DataError(f"{display} holds no image Pillow can read (its {counted(len(order), 'file')} in class "
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
        raise missing_source(root, "image folder")
    return _from_entries(_folder_entries(root, max_file_mb), f"image folder {root.name}", size)


def read_image_zip(path: str | Path, max_file_mb: float,
                   size: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """A .zip of class folders, at its top or inside one top folder, read in memory. Returns what
    read_image_folder does."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise missing_source(p, "zip")
    return _from_entries(_zip_entries(p, max_file_mb), f"zip {file_label(p)}", size)


# ---- hub image datasets -------------------------------------------------------------------------------------
