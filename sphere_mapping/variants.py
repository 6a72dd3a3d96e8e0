"""The training setups compared in experiments.py; "article" is the published one.

Each variant is a set of overrides of model.TrainSettings (whose defaults are the article's).
Why the others exist: the article's loss, (sum of paired cosines)^2, only sees the mean of the
map - for random pairs E[cos] = |mean|^2 - so any map whose points average to the origin is a
minimum, including ones that leave a whole cap of the sphere empty (the "missing corner").
The uniformity loss of Wang & Isola (2020) is minimised only by the uniform distribution, so it
pulls points into every empty cap; the wider net gives the piecewise-linear map enough pieces
to fold the square's border into a small region and close the sphere.
"""

from __future__ import annotations

from dataclasses import replace

from lab import LabError
from sphere_mapping.model import TrainSettings

VARIANTS: dict[str, dict] = {
    # The article, exactly: 2-4-12-6-3, dropout 0.2, split-halves loss only.
    "article": {},
    # The article's net and loss, plus the uniformity loss on 500 points of each batch.
    "uniformity": {"uniformity_weight": 1.0},
    # A wider net (2-16-64-32-3) with the same loss as the article.
    "wide": {"widths": (16, 64, 32)},
    # Both: the wider net and the uniformity loss, without dropout (noise the map cannot use).
    "wide_uniformity": {"widths": (16, 64, 32), "uniformity_weight": 1.0, "dropout": 0.0},
}

DESCRIPTIONS = {
    "article": "the article: 2-4-12-6-3, dropout 0.2, (sum of paired cosines)^2",
    "uniformity": "article net and loss + Wang-Isola uniformity loss (weight 1, 500 points)",
    "wide": "wider net 2-16-64-32-3, article loss",
    "wide_uniformity": "wider net 2-16-64-32-3, no dropout, article loss + uniformity loss",
}


def check_variant(name: str) -> str:
    if name not in VARIANTS:
        raise LabError(f"unknown variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    return name


def settings_for(name: str, **overrides) -> TrainSettings:
    """The TrainSettings of a variant; `overrides` (e.g. steps=2000) apply on top."""
    return replace(TrainSettings(**VARIANTS[check_variant(name)]), **overrides)
