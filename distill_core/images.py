"""Image datasets: the built-in digits, Fashion-MNIST and scikit-learn's 8×8 digits, a user's folder or zip of
class folders, and hub image datasets by name when online; split like text, with a probe set.

Images are kept as uint8 arrays (N, H, W, C) and become model inputs only through `to_tensor`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


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
