"""The primer's two players (article 004, "Když stojí AI proti AI"): a generator that turns noise into
an image and a discriminator (the article's "detektiv") that tells real images from fakes, both after
DCGAN (Radford, Metz & Chintala 2015). The conditional variant (Mirza & Osindero 2014) gives both
players the digit: a one-hot label beside z, one constant plane per class beside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class Generator(nn.Module):
    """z (and an optional class label) -> image of shape `image_shape`, values in [-1, 1]."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 64, num_classes: int = 0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        channels, height, width_px = self.image_shape
        # Two stride-2 upsamplings take a base grid of ceil(side / 4) to at least the image size;
        # the surplus rows and columns (25x25 faces come out 28x28) are cropped off the centre.
        self.base = math.ceil(max(height, width_px) / 4)
        self.project = nn.Sequential(nn.Linear(latent_dim + num_classes, 2 * width * self.base * self.base, bias=False),
                                     nn.BatchNorm1d(2 * width * self.base * self.base), nn.ReLU(inplace=True))
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh())
        self.width = width

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)
        grid = self.project(z).view(-1, 2 * self.width, self.base, self.base)
        images = self.upsample(grid)
        _, height, width_px = self.image_shape
        top, left = (images.shape[2] - height) // 2, (images.shape[3] - width_px) // 2
        return images[:, :, top : top + height, left : left + width_px]


class Discriminator(nn.Module):
    """image (and an optional class label) -> one logit, "real" when positive; `features()` is the
    penultimate layer, where the diversity penalty measures how alike the fakes are."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64, num_classes: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        channels = self.image_shape[0] + num_classes
        # DCGAN's strided convolutions and LeakyReLU(0.2), but no batch norm: the statistics of an
        # all-fake batch would leak into the decision, which hurts on batches this small.
        self.convolutions = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True), nn.Flatten(),
            # Dropout against memorising ~1400 training images, which degrades small-data GANs (Karras
            # et al. 2020, "Training GANs with limited data"); it holds no weights.
            nn.Dropout(dropout),
        )
        with torch.no_grad():
            flat = self.convolutions(torch.zeros(1, channels, *self.image_shape[1:])).shape[1]
        self.feature_dim = 2 * width
        self.penultimate = nn.Sequential(nn.Linear(flat, self.feature_dim), nn.LeakyReLU(0.2, inplace=True),
                                         nn.Dropout(dropout))
        self.head = nn.Linear(self.feature_dim, 1)
        # The projection discriminator (Miyato & Koyama 2018, eq. 3): D(x, y) = head(phi(x)) +
        # <embed(y), phi(x)>. With the label planes alone a quarter of the quick cGAN's samples read
        # as another digit; the projection makes "right digit?" a direct term of D.
        self.embed = nn.Embedding(num_classes, self.feature_dim) if num_classes else None

    def _with_label_planes(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if not self.num_classes:
            return images
        if labels is None:
            raise ValueError("a conditional discriminator needs labels")
        planes = F.one_hot(labels, self.num_classes).to(images.dtype)[:, :, None, None]
        return torch.cat([images, planes.expand(-1, -1, *images.shape[2:])], dim=1)

    def features(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.penultimate(self.convolutions(self._with_label_planes(images, labels)))

    def logits(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The verdict from penultimate features (and, conditional, the projection of the label)."""
        verdict = self.head(features).squeeze(1)
        if self.embed is not None:
            verdict = verdict + (self.embed(labels) * features).sum(1)
        return verdict

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.features(images, labels), labels)


def pulling_away_term(features: torch.Tensor) -> torch.Tensor:
    """The article's remedy for mode collapse, EBGAN's pulling-away term (Zhao, Mathieu & LeCun 2016,
    eq. 6): the mean of (s_i . s_j)^2 over pairs i != j of unit feature vectors; 1 for a collapsed batch."""
    count = features.shape[0]
    unit = F.normalize(features, dim=1)
    similarity = unit @ unit.t()
    off_diagonal = similarity.pow(2).sum() - similarity.diagonal().pow(2).sum()
    return off_diagonal / (count * (count - 1))


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: weights from N(0, 0.02), batch-norm scales from N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class GANSettings:
    """Everything that fixes the players' shapes, stored in each checkpoint (as nanoGPT's GPTConfig)."""

    image_shape: tuple[int, int, int]
    latent_dim: int
    g_width: int
    d_width: int
    num_classes: int = 0      # 0: an unconditional GAN; 10 for digits when conditional
    d_dropout: float = 0.0    # holds no weights: a checkpoint loads whatever its value


def build_players(settings: GANSettings) -> tuple[Generator, Discriminator]:
    """The generator and the discriminator of `settings`, with DCGAN's initial weights."""
    generator = Generator(settings.latent_dim, settings.image_shape, settings.g_width, settings.num_classes)
    discriminator = Discriminator(settings.image_shape, settings.d_width, settings.num_classes, settings.d_dropout)
    generator.apply(init_dcgan_weights)
    discriminator.apply(init_dcgan_weights)
    return generator, discriminator
