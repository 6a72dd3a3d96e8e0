"""The Czech primer on generative models (article 004): GANs, conditional GANs, autoencoders, VAEs
and adversarial examples, each runnable offline in minutes on a CPU and scored by a number. Figures go
to files, so matplotlib gets the Agg backend unless MPLBACKEND says otherwise.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
