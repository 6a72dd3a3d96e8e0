"""The primer's two bundled data sets: scikit-learn's 1797 labelled 8x8 "digits" and the 100 faces of
scikit-image's 25x25 `lfw_subset` ("faces", no labels). Images come back as float32 (N, 1, H, W) in
[-1, 1] (a tanh generator's range) with a fixed train/held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.errors import LabError

DATASETS = ("digits", "faces")


@dataclass
class Dataset:
    name: str
    train_images: np.ndarray  # (N, 1, H, W) float32 in [-1, 1]
    train_labels: np.ndarray | None
    test_images: np.ndarray
    test_labels: np.ndarray | None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    @property
    def num_classes(self) -> int:
        return 0 if self.train_labels is None else int(self.train_labels.max()) + 1


def load_dataset(name: str, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load a bundled data set by name ("digits" or "faces"); the split is fixed by `seed`."""
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, labels = bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
    elif name == "faces":
        from skimage.data import lfw_subset

        images, labels = lfw_subset()[:100].astype(np.float32), None  # 100 faces, then 100 non-face patches
    else:
        raise LabError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    images = images[:, None, :, :] * 2.0 - 1.0
    order = np.random.default_rng(seed).permutation(len(images))
    test, train = np.split(order, [int(round(len(images) * test_fraction))])
    if labels is None:
        return Dataset(name, images[train], None, images[test], None)
    return Dataset(name, images[train], labels[train], images[test], labels[test])
