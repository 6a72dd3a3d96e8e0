"""Learning-rate schedules shared by the experiments (plain math: no framework imported)."""

from __future__ import annotations

import math


def cosine_factor(step: float, steps: float, final_fraction: float = 0.0) -> float:
    """The learning-rate multiplier at `step`: a half cosine from 1 down to `final_fraction` at `steps`
    (Loshchilov & Hutter 2017, SGDR, without restarts), held at `final_fraction` after that.

    It is a function of the step alone, so a resumed run continues on the same curve.
    """
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
