"""Pieces the scripts share: the photo split, fixed held-out crops, checkpoint names, figures (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from beauty_predictor.photos import Photo, centre_crop, load_photos, random_crops, resolve_photos_dir, split_by_photo
from lab.checkpoint import fingerprint_files
from lab.plots import save_figure

EXPERIMENT = "beauty_predictor"
PREDICTOR_FILE = "center_predictor.npz"
BAD_PREDICTOR_FILE = "center_predictor_bad.npz"
EVAL_SEED = 12345  # the held-out crops are the same in every script and every run


def improver_file(variant: str) -> str:
    return f"improver_{variant}.npz"


def data_fingerprint(photos: list[Photo]) -> str | None:
    """The photos' files hashed: a checkpoint trained on other photos is not resumed."""
    paths = [p.path for p in photos if p.path is not None]
    return fingerprint_files(paths) if paths else None


def load_split(cfg) -> tuple[list[Photo], list[Photo]]:
    photos = load_photos(resolve_photos_dir(cfg.PHOTOS_DIR), max_side=cfg.MAX_SIDE)
    train, held = split_by_photo(photos, cfg.HELD_OUT_PHOTOS)
    print(f"photos: {len(train)} for training ({', '.join(p.name for p in train)}), "
          f"{len(held)} held out ({', '.join(p.name for p in held)})")
    return train, held


def held_out_crops(held: list[Photo], count: int, size: int = 128) -> np.ndarray:
    """`count` fixed random crops of the held-out photos (no flips), identical across scripts."""
    return random_crops(held, count, size, np.random.default_rng(EVAL_SEED), flip=False)


def held_out_views(held: list[Photo], count: int, size: int) -> np.ndarray:
    """The central `size` x `size` square of up to `count` held-out photos, for panels."""
    side = min(size, *(min(p.pixels.shape[:2]) // 32 * 32 for p in held))
    return np.stack([centre_crop(p.pixels, side) for p in held[:count]])


def image_grid(path: Path, rows: list[list[np.ndarray]], row_titles: list[str], col_titles: list[str],
               title: str = "", cmap_cols: tuple[int, ...] = (), cell_size: float = 2.2) -> Path:
    """A grid of images (rows x columns) with titles; columns in `cmap_cols` are heat maps."""
    import matplotlib.pyplot as plt  # the backend is lab.plots' concern (no window, ever)

    n_rows, n_cols = len(rows), len(col_titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_size * n_cols, cell_size * n_rows), squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            ax = axes[r][c]
            if c in cmap_cols:
                shown = ax.imshow(image, cmap="magma", vmin=0, interpolation="nearest")
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            else:
                ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=90)


def curves_plot(path: Path, curves: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str,
                title: str, logy: bool = False) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, label=label, marker="." if len(xs) < 40 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=100)


def smooth(values: list[float], window: int = 10) -> list[float]:
    if len(values) < window:
        return list(values)
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return list(np.convolve(padded, kernel, mode="valid"))
