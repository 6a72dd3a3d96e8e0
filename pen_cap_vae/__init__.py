"""pen_cap_vae (article 000, Russian): a sigma-VAE on three pictures of a pen and its cap, and a
"recoder" that animates the VAE's code through their "date".

Modules: model.py (the VAE, the recoder, the losses, their settings), pictures.py (the drawn
pictures), data.py (loading them), date.py (the recoder's loop), track.py (what each frame shows),
eeg.py (the recoder's "EEG"). Scripts: draw_pictures.py, train.py, test.py, source_maker.py,
bench.py; gpu_full.sh (the full profile on a GPU).
"""

import os
import sys
import types

os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files: set once for the package
# run.log_scalars writes TensorBoard event files, and TensorBoard imports TensorFlow when it is
# installed (beauty_predictor's): 5 s of CPU, 30-55 s on this shared machine, for a package that
# never uses TensorFlow. A module named tensorboard.compat.notf is TensorBoard's own switch to its
# built-in stub (tensorboard/compat/__init__.py).
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
