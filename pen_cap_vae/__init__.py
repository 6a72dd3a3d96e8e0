"""pen_cap_vae (article 000, Russian): a sigma-VAE on three pictures of a pen and its cap, and a
"recoder" that animates the VAE's code through their "date".

Modules: model.py (the VAE, the recoder, the losses, their settings), pictures.py (the drawn
pictures), data.py (loading them), date.py (the recoder's loop), track.py (what each frame shows),
eeg.py (the recoder's "EEG"). Scripts: draw_pictures.py, train.py, test.py, source_maker.py,
bench.py; full_profile.sh (the full profile end to end, on a GPU or the CPU).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files: set once for the package
