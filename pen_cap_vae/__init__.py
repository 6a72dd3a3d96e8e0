"""pen_cap_vae (article 000, Russian): a sigma-VAE on three pictures of a pen and its cap, and a
"recoder" that animates the VAE's code through their "date". Scripts: draw_pictures, train, test,
source_maker, bench (README.md)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files: set once for the package
