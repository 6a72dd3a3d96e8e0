"""The training setups compared in experiments.py; "article" is the published one.

Each variant overrides model.SphereSettings (whose defaults are the article's). The article's
loss, (sum of paired cosines)^2, only sees the map's mean (for random pairs E[cos] = |mean|^2), so
a map that leaves a whole cap empty can be a minimum. Wang & Isola's (2020) uniformity loss is
minimised only by the uniform distribution; the covering loss pulls points into holes directly;
a wider net has more ReLU pieces to fold the square's border away. Without the article's loss,
256 points and one pass per step are all the losses use.
"""

from __future__ import annotations

from lab import LabError
from lab.constants import Variants, constant_name
from sphere_mapping.model import ARTICLE, SphereSettings, with_overrides

# The loss of Wang & Isola (t = 6: a sharper kernel than their t = 2 weighs near neighbours and
# so sees holes; seed 0, 10^4 steps: hole 13.1 vs 17.9 deg) on 256 points, no dropout.
_UNIFORMITY = {"article_weight": 0.0, "uniformity_weight": 1.0, "uniformity_temperature": 6.0, "dropout": 0.0,
               "points_per_step": 256, "splits": 1}
_WIDE = {"widths": (8, 32, 16)}

VARIANTS: dict[str, dict] = {
    # The article, exactly: 2-4-12-6-3, dropout 0.2, split-halves loss only.
    "article": {},
    # The article's net; the uniformity loss instead of the article's (added to it, it is drowned).
    "uniformity": {**_UNIFORMITY},
    # As "uniformity", plus the covering loss: 512 random directions pull their nearest mapped point.
    "uniformity_cover": {**_UNIFORMITY, "cover_weight": 10.0},
    # As "uniformity_cover" with a wider net (2-8-32-16-3): more ReLU pieces to fold the seam.
    "wide_cover": {**_UNIFORMITY, "cover_weight": 10.0, **_WIDE},
    # As "uniformity" with a wider net (2-8-32-16-3).
    "wide_uniformity": {**_UNIFORMITY, **_WIDE},
    # The hole search (README, "closing the hole"): wide_cover changed in one direction each.
    "wide_cover_w100": {**_UNIFORMITY, "cover_weight": 100.0, **_WIDE},          # covering loss 10x stronger
    "wide_cover_lr2000": {**_UNIFORMITY, "cover_weight": 10.0, **_WIDE, "lr_step": 2000},  # slower decay
    "wide_cover_t2048": {**_UNIFORMITY, "cover_weight": 10.0, **_WIDE, "cover_targets": 2048},  # 4x directions
    "wider_cover": {**_UNIFORMITY, "cover_weight": 10.0, "widths": (16, 64, 32)},  # 2x wider again
    # Second round: the best of the first (covering weight 100) pushed further, and combined.
    "wide_cover_w1000": {**_UNIFORMITY, "cover_weight": 1000.0, **_WIDE},
    "wider_cover_w100": {**_UNIFORMITY, "cover_weight": 100.0, "widths": (16, 64, 32)},
    # Third round: the best of the second (covering weight 1000) with twice the points per step.
    "wide_cover_w1000_p512": {**_UNIFORMITY, "cover_weight": 1000.0, **_WIDE, "points_per_step": 512},
}

DESCRIPTIONS = {
    "article": "the article: 2-4-12-6-3, dropout 0.2, (sum of paired cosines)^2",
    "uniformity": "article net, no dropout, uniformity loss (t=6, 256 points) instead of the article's",
    "uniformity_cover": "as uniformity, plus a covering loss (512 random directions -> nearest point)",
    "wide_cover": "as uniformity_cover with a wider net 2-8-32-16-3",
    "wide_uniformity": "as uniformity with a wider net 2-8-32-16-3",
    "wide_cover_w100": "as wide_cover, covering weight 100 instead of 10",
    "wide_cover_lr2000": "as wide_cover, StepLR every 2000 steps instead of 1000",
    "wide_cover_t2048": "as wide_cover, 2048 covering directions per step instead of 512",
    "wider_cover": "as wide_cover with a net 2-16-64-32-3",
    "wide_cover_w1000": "as wide_cover, covering weight 1000",
    "wider_cover_w100": "as wide_cover with a net 2-16-64-32-3 and covering weight 100",
    "wide_cover_w1000_p512": "as wide_cover_w1000, 512 points per step instead of 256",
}


def check_variant(name: str) -> str:
    if name not in VARIANTS:
        raise LabError(f"unknown variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    return name


def settings_for(name: str, overrides: dict | None = None) -> SphereSettings:
    """The settings of a variant, with `overrides` (setting name -> value) applied on top of it."""
    return with_overrides(ARTICLE, {**VARIANTS[check_variant(name)], **(overrides or {})},
                          what=f"variant {name}")


def variant_constants() -> Variants:
    """The variants as a layer of train.py's constants (`lr_step` as `LR_STEP`), under --quick / --set."""
    return Variants("VARIANT", {name: {constant_name(setting): value for setting, value in overrides.items()}
                                for name, overrides in VARIANTS.items()})
