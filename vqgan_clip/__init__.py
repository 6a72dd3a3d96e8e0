"""VQGAN + CLIP (article 002, Russian): CLIP steers a VQGAN latent towards a text prompt.

vqgan.py (the taming-layout VQGAN, VQModel and GumbelVQ), clip_model.py (CLIP through open_clip,
local weights), models.py (which files each MODEL means), loop.py (the loop), generate.py and
evaluate.py (the scripts), bench.py and gpu_bench.py (speed and memory), download.py (the
official files), convert_checkpoint.py (one-off conversions).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files: set once for the package
