"""The figures of generate.py and evaluate.py: the loss per prompt, and a grid of titled images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.plots import save_figure


def plot_losses(losses: dict[str, list[float]], total: list[float], path: Path) -> Path:
    """Each prompt's loss over the iterations (gaps where a story phrase is inactive), and their sum."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in losses.items():
        ax.plot(values, label=label[:40], linewidth=1)
    if len(losses) > 1:
        ax.plot(total, label="sum", color="black", linewidth=1.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (weighted squared spherical distance)")
    ax.set_title("VQGAN+CLIP loss per prompt")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)


def image_grid(path: Path, images: list[np.ndarray], titles: list[str], columns: int, cell: tuple[float, float],
               colours: list[str] | None = None, dpi: int = 90) -> Path:
    """Images in rows of `columns`, each with its title (in its colour, black by default)."""
    import matplotlib.pyplot as plt

    columns = min(columns, len(images))
    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(cell[0] * columns, cell[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for index, (ax, image, title) in enumerate(zip(axes.flat, images, titles, strict=False)):
        ax.imshow(image)
        ax.set_title(title, fontsize=8, wrap=True, color=colours[index] if colours else "black")
    return save_figure(fig, path, dpi=dpi)
