"""Figures go to files, never to a window (plots are looked at in the gallery)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: Path | str, dpi: int = 100) -> Path | str:
    """Lay out, write and close a matplotlib figure (freeing its memory); returns `path`."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib
        matplotlib.use("Agg")  # no display is needed, or assumed
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
