"""Where things live: the repository root and the outputs folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# The five experiments, in the order of README's table and of the gallery.
EXPERIMENTS = ("pen_cap_vae", "beauty_predictor", "sphere_mapping", "vqgan_clip", "gan_basics")


def outputs_root() -> Path:
    """`outputs/` at the repository root, or $LAB_OUTPUT_ROOT (the tests point it at a temp dir)."""
    return Path(os.environ.get("LAB_OUTPUT_ROOT") or REPO_ROOT / "outputs")


def data_root() -> Path:
    return REPO_ROOT / "data"
