"""VQGAN + CLIP (article 002, Russian): CLIP steers a VQGAN latent towards a text prompt (see README.md)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files: set once for the package
