"""The two small data sets of the primer's demos, both bundled inside installed packages.

- "digits": scikit-learn's 1797 handwritten digits, 8x8, labelled 0-9 (values 0..16).
- "faces":  scikit-image's `lfw_subset`, 200 grayscale 25x25 faces (100 faces, 100 non-faces in
            the original subset; we keep the faces), no labels.

Images come back as float32 arrays of shape (N, 1, H, W) scaled to [-1, 1] - the range of a
generator ending in tanh - with integer labels (or None) and a fixed train/held-out split.
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


def _split(images: np.ndarray, labels: np.ndarray | None, test_fraction: float, seed: int):
    """Train and held-out indices of a seeded permutation, and a function that picks labels."""
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    pick = (lambda idx: labels[idx]) if labels is not None else (lambda idx: None)
    return train, test, pick


def load_dataset(name: str, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load a bundled data set by name ("digits" or "faces"); the split is fixed by `seed`."""
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = bunch.images.astype(np.float32) / 16.0
        labels = bunch.target.astype(np.int64)
    elif name == "faces":
        from skimage.data import lfw_subset

        # lfw_subset holds 100 faces followed by 100 non-face patches; the demos want faces.
        images = lfw_subset()[:100].astype(np.float32)
        labels = None
    else:
        raise LabError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    images = images[:, None, :, :] * 2.0 - 1.0
    train, test, pick = _split(images, labels, test_fraction, seed)
    return Dataset(name, images[train], pick(train), images[test], pick(test))
