"""The Czech primer on generative models (article 004): GANs, conditional GANs, autoencoders,
VAEs and adversarial examples, each runnable offline in minutes on a CPU and scored by a number.

Two settings made once for the whole package, before any of its modules runs:
- matplotlib's backend: figures go to files (lab.plots.save_figure), so the non-interactive Agg
  backend, never a window. An explicit MPLBACKEND in the environment wins.
- TensorBoard's event writer (behind run.log_scalars) imports all of TensorFlow for its file layer
  unless the marker module "tensorboard.compat.notf" exists, when it uses its own small stub. These
  scripts are torch-only, and that import cost 10-18 s per script on the loaded 2-core machine
  (measured), a tenth of the package's quick budget; the marker is set unless TensorFlow is loaded.
"""

import os
import sys
import types

os.environ.setdefault("MPLBACKEND", "Agg")
if "tensorflow" not in sys.modules:
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
