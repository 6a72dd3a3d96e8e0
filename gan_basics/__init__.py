"""The Czech primer on generative models (article 004): GANs, conditional GANs, autoencoders,
VAEs and adversarial examples, each runnable offline in minutes on a CPU and scored by a number.

matplotlib's backend is set once for the whole package, before any of its modules runs: figures go
to files (lab.plots.save_figure), so the non-interactive Agg backend, never a window. An explicit
MPLBACKEND in the environment wins.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
