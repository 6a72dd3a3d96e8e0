"""The article's square-to-sphere network and its self-supervised training step.

Article 003 (Zhang Chuncheng, 2022, "a small example of a self-learning generative model"): a
tiny MLP takes a point of the square [-0.5, 0.5]^2 and returns a 3D unit vector. Its only loss
splits a batch of random points into two random halves, pairs them up, and squares the sum of
the pairs' cosine similarities; minimising it pushes the halves apart, and the square wraps into
a sphere "with a missing corner".

The article's listing lost its commas: `nn.Linear(24)` is `nn.Linear(2, 4)`, `nn.Linear(412)`
is `nn.Linear(4, 12)`, `nn.Linear(126)` is `nn.Linear(12, 6)` and `nn.Linear(63)` is
`nn.Linear(6, 3)`. There is no activation between the first two layers (so they compose into
one affine map 2 -> 12), one ReLU, then dropout 0.2 after the ReLU and after the 12 -> 6 layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class SquareToSphere(nn.Module):
    """Linear 2->4, Linear 4->12, ReLU, dropout, Linear 12->6, dropout, Linear 6->3, L2-normalise.

    `widths` generalises the article's (4, 12, 6) for the wider variants of experiments.py; the
    ReLU always follows the second layer, as in the article. Dropout is active in train() mode
    only: the article's own `eval(ipt)` method called forward(allow_dropout=False), which is what
    model.eval() does here.
    """

    def __init__(self, widths: tuple[int, int, int] = (4, 12, 6), dropout: float = 0.2):
        super().__init__()
        first, hidden, bottleneck = widths
        self.fc1 = nn.Linear(2, first)
        self.fc2 = nn.Linear(first, hidden)
        self.fc3 = nn.Linear(hidden, bottleneck)
        self.fc4 = nn.Linear(bottleneck, 3)
        self.dropout = dropout

    def drop(self, values: torch.Tensor) -> torch.Tensor:
        """Inverted dropout (as nn.Dropout): zero each value with probability p, scale the rest.

        Written as a comparison with uniform noise because CPU torch.bernoulli_ costs ~100 us per
        call here, a tenth of the whole training step; the distribution is the same.
        """
        if not self.training or self.dropout == 0.0:
            return values
        keep = torch.rand_like(values) >= self.dropout
        return values * keep / (1.0 - self.dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.fc2(self.fc1(points)))
        hidden = self.fc3(self.drop(hidden))
        return F.normalize(self.fc4(self.drop(hidden)), dim=-1)


def split_halves_loss(outputs: torch.Tensor) -> torch.Tensor:
    """The article's loss for a stack of independent passes, outputs of shape (splits, n, 3).

    For each pass the n outputs are shuffled and split in two halves; half A's i-th vector is
    paired with half B's i-th. The article sums nn.CosineSimilarity over the pairs and squares the
    sum, then adds the splits' squares: loss = sum_splits (sum_i cos(a_i, b_i))^2. The outputs
    are already unit vectors, so the cosine is their dot product. Note that for random pairs
    E[cos(a, b)] = |mean output|^2: the loss mostly drives the mean of the map to the origin.
    """
    splits, count, _ = outputs.shape
    half = count // 2
    # One random permutation per split, drawn on the device (randperm is ~10x cheaper than an
    # argsort of uniform noise at this size).
    order = torch.stack([torch.randperm(count, device=outputs.device) for _ in range(splits)])
    shuffled = torch.gather(outputs, 1, order.unsqueeze(-1).expand(-1, -1, 3))
    cosines = (shuffled[:, :half] * shuffled[:, half : 2 * half]).sum(dim=-1)
    return (cosines.sum(dim=1) ** 2).sum()


def uniformity_loss(outputs: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020) uniformity: log E[exp(-t |u - v|^2)] over distinct pairs of one pass.

    For unit vectors |u - v|^2 = 2 - 2 u.v, so the pairwise term comes from one matrix product.
    The n diagonal terms are exp(0) = 1 each and are subtracted from the full sum (cheaper than
    masking them out). Its minimum over distributions on the sphere is the uniform one (-2.08
    for t = 2).
    """
    flat = outputs.reshape(-1, 3)
    count = flat.shape[0]
    squared = (2.0 - 2.0 * flat @ flat.T).clamp_min(0.0)
    off_diagonal = torch.exp(-temperature * squared).sum() - count
    return torch.log(off_diagonal.clamp_min(1e-30) / (count * (count - 1)))


def covering_loss(outputs: torch.Tensor, targets: int) -> torch.Tensor:
    """Mean over random sphere directions of the squared distance to the nearest mapped point.

    A one-sided Chamfer distance from `targets` uniform random unit vectors to the map's points:
    a direction inside a hole is far from every point, and its gradient pulls the nearest point
    (on the hole's rim) into the hole - the loss sees holes directly, however few points the map
    has there, while the uniformity loss only sees them at the scale of its sample's spacing.
    """
    flat = outputs.reshape(-1, 3)
    directions = F.normalize(torch.randn(targets, 3, device=flat.device), dim=1)
    squared = (2.0 - 2.0 * directions @ flat.T).clamp_min(0.0)
    return squared.min(dim=1).values.mean()


@dataclass
class TrainSettings:
    """Everything a training run needs; the defaults are the article's values."""

    steps: int = 10_000
    points_per_step: int = 1000
    splits: int = 2
    learning_rate: float = 0.05
    lr_step: int = 1000
    lr_gamma: float = 0.8
    clamp: float = 2.0
    widths: tuple[int, int, int] = (4, 12, 6)
    dropout: float = 0.2
    uniformity_weight: float = 0.0   # 0: the article's loss only
    uniformity_points: int = 256     # points of the batch used by the uniformity term
    uniformity_temperature: float = 2.0  # t in log E[exp(-t |u - v|^2)] (Wang & Isola: 2)
    cover_weight: float = 0.0        # weight of the covering loss (0: off); it uses the same points
    cover_targets: int = 512         # random sphere directions per step for the covering loss
    article_loss: bool = True        # False: drop the split-halves loss (needs uniformity_weight)


class Trainer:
    """The article's optimisation: Adam, StepLR, every parameter clamped after each step.

    The whole step stays on the device: random points, permutations and the loss history are
    tensors there, the two dropout passes run as one batch, and the clamp is one fused call over
    all parameters, so a 10^4-step run costs ~10^4 small kernel launches and no host round trips.
    """

    def __init__(self, settings: TrainSettings, device: str = "cpu", generator_seed: int | None = None):
        self.settings = settings
        self.device = torch.device(device)
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        self.model = SquareToSphere(settings.widths, settings.dropout).to(self.device)
        self.params = list(self.model.parameters())
        # The fused Adam kernel exists on CPU and CUDA and updates every parameter in one call.
        self.optimizer = torch.optim.Adam(self.params, lr=settings.learning_rate, fused=True)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=settings.lr_step, gamma=settings.lr_gamma
        )
        self.losses = torch.zeros(settings.steps, device=self.device)
        self.step = 0

    def loss(self) -> torch.Tensor:
        s = self.settings
        # The article: 1000 uniform points of [-0.5, 0.5]^2 per step, each pushed through the
        # network `splits` times (independent dropout masks), each pass split into two halves.
        points = torch.rand(s.points_per_step, 2, device=self.device) - 0.5
        outputs = self.model(points.repeat(s.splits, 1)).view(s.splits, s.points_per_step, 3)
        total = split_halves_loss(outputs) if s.article_loss else outputs.new_zeros(())
        if s.uniformity_weight:
            total = total + s.uniformity_weight * uniformity_loss(outputs[0, : s.uniformity_points], s.uniformity_temperature)
        if s.cover_weight:
            total = total + s.cover_weight * covering_loss(outputs[0, : s.uniformity_points], s.cover_targets)
        return total

    def train_step(self) -> torch.Tensor:
        loss = self.loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            # The article clamps every parameter to [-2, 2] after each step.
            torch._foreach_clamp_min_(self.params, -self.settings.clamp)
            torch._foreach_clamp_max_(self.params, self.settings.clamp)
        detached = loss.detach()
        if self.step < self.losses.numel():
            self.losses[self.step] = detached
        self.step += 1
        return detached

    @torch.no_grad()
    def evaluate(self, points: torch.Tensor) -> torch.Tensor:
        """The map without dropout (the article's network.eval(...)), back in training mode after."""
        self.model.eval()
        try:
            return self.model(points.to(self.device))
        finally:
            self.model.train()


def square_grid(side: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """side*side points of [-0.5, 0.5]^2, row by row (x varies fastest), as the article's meshgrid."""
    axis = torch.linspace(-0.5, 0.5, side, device=device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)
