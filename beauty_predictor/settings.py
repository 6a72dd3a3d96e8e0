"""The models' settings, stored in every checkpoint (later scripts rebuild a model from them, never from their
own constants), and the improver variants; no TensorFlow, so a wrong name fails before it loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lab import LabError

# VARIANT (the scripts' constant) -> (improver kind, loss); the first is the article's, the default.
VARIANTS = {
    "article": ("plain", "article"),      # the article's simple improver, 0.5*MAE(X,Y) + 0.5*MAE(Y,Z)
    "residual": ("residual", "article"),  # the identity-start improver, same loss (beyond the article)
    "contrast": ("plain", "contrast"),    # the article's second experiment: MAE(Y,Z_bad)/MAE(Y,Z_good)
    "deep": ("unet", "article"),          # the article's "more complex" improver, same loss
}


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise LabError(f"VARIANT {variant!r} is not one of {', '.join(VARIANTS)}; "
                       f"use e.g. --set VARIANT={next(iter(VARIANTS))}")


@dataclass(frozen=True)
class ImproverSettings:
    """Everything that shapes an improver (model.build_improver); its kind and loss follow from the variant."""

    variant: str = "article"
    width: int = 32   # channels of the convolutions
    depth: int = 4    # 3x3 convolutions before the output layer (plain and residual)

    def __post_init__(self):
        check_variant(self.variant)

    @property
    def kind(self) -> str:
        return VARIANTS[self.variant][0]

    @property
    def loss(self) -> str:
        return VARIANTS[self.variant][1]


@dataclass(frozen=True)
class PredictorSettings:
    """The centre predictor's shape (model.build_predictor); stored in its checkpoint."""

    width: int = 16   # channels of the first layer (later layers: 2x, 3x, 4x)


def settings_dict(settings: ImproverSettings) -> dict:
    return asdict(settings)
