"""Article 003: a tiny MLP that learns, unsupervised, to wrap a square onto a sphere.

model.py (the settings, the losses, the stacked trainer), metrics.py (coverage, uniformity, largest
hole and where it sits in the square), variants.py (the setups compared), figures.py (plotly pages
and PNGs); the scripts: train.py, experiments.py, search.py, bench.py.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files: set once for the package
