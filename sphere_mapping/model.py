"""The article's square-to-sphere network, its losses, and a trainer for many runs at once.

Article 003 (Zhang Chuncheng, 2022, "a small example of a self-learning generative model"): a tiny
MLP maps a point of the square [-0.5, 0.5]^2 to a 3D unit vector. Its loss splits a batch into two
random halves, pairs them, and squares the sum of the pairs' cosines; minimising it wraps the
square into a sphere "with a missing corner". The listing lost its commas: `nn.Linear(24)` is
`nn.Linear(2, 4)`, then (4, 12), (12, 6), (6, 3); one ReLU, dropout 0.2 after it and after 12 -> 6.

A step is a few hundred thousand multiply-adds, so per-call overhead sets its time: `Trainer`
trains M independent runs as one stacked model (parameters in one (M, P) tensor, feature-major
batched layers, forward and backward by hand, Adam and the clamp in place). Each member draws its
own randomness, so member k is exactly the one-member run with its seed (the tests check this and
the hand-written gradients against autograd).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from lab import LabError
from lab.executor import Cell, failure_summary, run_cells
from lab.safe_load import settings_from_checkpoint
from sphere_mapping import kernels


@dataclass(frozen=True)
class Layer:
    """What follows one hidden linear layer of the net."""

    relu: bool = False     # a ReLU after the layer
    dropout: bool = False  # then dropout, at the member's `dropout` rate


# The network, described once: one Linear layer per width of SphereSettings.widths, each followed by
# its entry here, then Linear(last width, 3) and F.normalize (the article's: nothing, ReLU + dropout,
# dropout). Every pass is built from it: a deeper net is one more entry here (and one more width).
HIDDEN_LAYERS = (Layer(), Layer(relu=True, dropout=True), Layer(dropout=True))


@dataclass(frozen=True)
class SphereSettings:
    """One training run's network, loss and optimiser: the one place of the defaults (the article's);
    train.py's constants and variants.py override it, checkpoints store it."""

    widths: tuple[int, int, int] = (4, 12, 6)  # hidden widths: Linear 2->4->12 (ReLU) ->6->3 (article)
    dropout: float = 0.2               # after the ReLU and after the 12->6 layer (article: p=0.2)
    points_per_step: int = 1000        # uniform points of the square per step (article: n2 = 1000)
    splits: int = 2                    # passes per step, each its own dropout and half-split (article: 2)
    article_weight: float = 1.0        # weight of the article's split-halves loss (0: off)
    uniformity_weight: float = 0.0     # weight of Wang & Isola's uniformity loss on split 0 (0: off)
    uniformity_temperature: float = 2.0  # t in log E[exp(-t |u - v|^2)] (Wang & Isola: 2)
    cover_weight: float = 0.0          # weight of the covering loss on split 0 (0: off)
    cover_targets: int = 512           # random sphere directions per step for the covering loss
    learning_rate: float = 0.05        # Adam's step size (article)
    lr_step: int = 1000                # StepLR step_size (article: 1e3)
    lr_gamma: float = 0.8              # StepLR gamma (article)
    clamp: float = 2.0                 # every parameter clamped to [-clamp, clamp] after a step (article)

    def __post_init__(self):
        widths = tuple(int(w) for w in self.widths)
        object.__setattr__(self, "widths", widths)
        problems = []
        if len(widths) != len(HIDDEN_LAYERS) or min(widths) < 1:
            problems.append(f"widths must be {len(HIDDEN_LAYERS)} positive layer widths (one per model.HIDDEN_LAYERS), "
                            f"got {self.widths}")
        for name in ("points_per_step", "splits", "cover_targets", "lr_step"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("dropout", "article_weight", "uniformity_weight", "uniformity_temperature", "cover_weight",
                     "learning_rate", "lr_gamma", "clamp"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 <= float(self.dropout) < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.points_per_step < 2:
            problems.append(f"points_per_step must be at least 2 (a pair), got {self.points_per_step}")
        if not (self.article_weight or self.uniformity_weight or self.cover_weight):
            problems.append("every loss weight is 0; set article_weight, uniformity_weight or cover_weight > 0")
        if problems:
            raise LabError("bad sphere settings: " + "; ".join(problems))

    @property
    def shape_key(self) -> tuple:
        """What members of one stacked Trainer must share: the tensors' shapes."""
        return (self.widths, self.points_per_step, self.splits, self.cover_targets)

    def to_dict(self) -> dict:
        return asdict(self)


SETTING_NAMES = tuple(f.name for f in fields(SphereSettings))
# Bump when a seeded run's numbers change (random streams, order of arithmetic): experiments.py's
# cache of finished runs is keyed on it, so results of an older trainer are never reused.
TRAINER_VERSION = 3  # 3: SplitMix64 streams and the compiled kernels (kernels.py)
ARTICLE = SphereSettings()


def with_overrides(base: SphereSettings, overrides: dict, what: str = "settings") -> SphereSettings:
    """`base` with some fields replaced; unknown names are a LabError listing the valid ones."""
    unknown = sorted(set(overrides) - set(SETTING_NAMES))
    if unknown:
        raise LabError(f"{what}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(SETTING_NAMES)}")
    return SphereSettings(**{**base.to_dict(), **overrides})


def _layer_table(widths: tuple[int, ...]) -> np.ndarray:
    """The net of HIDDEN_LAYERS with these widths as kernels.py's table; parameters in nn.Linear order."""
    sizes, rows = (2, *widths, 3), []
    parameter, activation, keep = 0, 0, 0
    for fan_in, width, layer in zip(sizes[:-1], sizes[1:], (*HIDDEN_LAYERS, Layer()), strict=True):
        rows.append((fan_in, width, parameter, parameter + width * fan_in, activation, activation + fan_in,
                     int(layer.relu), keep if layer.dropout else -1))
        parameter += width * (fan_in + 1)
        activation += fan_in
        keep += width if layer.dropout else 0
    return np.array(rows, dtype=np.int64)


def square_grid(side: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """side*side points of [-0.5, 0.5]^2, row by row (x varies fastest), as the article's meshgrid."""
    axis = torch.linspace(-0.5, 0.5, side, device=device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


class Trainer:
    """M independent runs of the article's training as one stacked model (M = 1: a single run).

    `members`: the runs' settings (one `shape_key`), `seeds` their seeds. A step does per member what
    the article's loop does: draw points, `splits` passes with own dropout, the loss, one Adam step at
    StepLR's rate, the clamp. The loss is a sum over members, so each gradient is its own loss's.
    """

    ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the article uses them
    ADAM_EPS = 1e-8

    def __init__(self, members: list[SphereSettings], seeds: list[int], device: str | torch.device = "cpu"):
        if not members or len(members) != len(seeds):
            raise LabError(f"a Trainer needs one seed per member, got {len(members)} members and {len(seeds)} seeds")
        keys = {member.shape_key for member in members}
        if len(keys) != 1:
            raise LabError(f"members of one Trainer must share widths, points_per_step, splits and cover_targets; got {keys}")
        self.members, self.seeds = list(members), [int(seed) for seed in seeds]
        self.device = torch.device(device)
        first = members[0]
        self.widths, self.points, self.splits, self.targets = first.shape_key
        self.count = len(members)
        self.table = _layer_table(self.widths)
        self.keep_rows = int(self.table[:, kernels.WIDTH][self.table[:, kernels.KEEP_ROW] >= 0].sum())  # dropout's

        def column(name):  # one value per member, shaped to broadcast over (M, ...)
            return torch.tensor([float(getattr(m, name)) for m in members], device=self.device)

        self.dropout = column("dropout")
        self.any_dropout = bool((self.dropout > 0).any())
        self.weights = {name: column(f"{name}_weight") for name in ("article", "uniformity", "cover")}
        self.uses = {name: bool((w > 0).any()) for name, w in self.weights.items()}
        self.temperature = column("uniformity_temperature")
        self.clamp = column("clamp").unsqueeze(1)

        shared_clamp = {m.clamp for m in members}
        self.clamp_value = shared_clamp.pop() if len(shared_clamp) == 1 else None  # a float clamp is one cheap call

        # One SplitMix64 stream per member (kernels.py), drawn on the CPU.
        n = self.points * self.splits
        self.states = kernels.seed_states(self.seeds)
        self.permute = np.array([m.article_weight > 0 for m in members])  # the article's loss pairs a permutation
        self.cover = np.array([m.cover_weight > 0 for m in members])      # the covering loss's directions
        # Dropout keeps a value when a 16-bit draw is >= round(2^16 p) and scales it by the inverse of
        # that probability, so the mean is kept exactly as nn.Dropout's.
        dropped = [round(m.dropout * 2**16) for m in members]
        self.threshold = np.array(dropped, dtype=np.uint64)
        self.keep_scale = np.array([2**16 / (2**16 - d) for d in dropped], dtype=np.float32)
        self.batch = {
            "x": np.zeros((self.count, 2, n), np.float32),
            "orders": np.zeros((self.count, self.splits, self.points), np.int64),
            "directions": np.zeros((self.count, 3, self.targets if self.uses["cover"] else 0), np.float32),
            "keep": np.ones((self.count, self.keep_rows, n if self.any_dropout else 1), np.float32),
        }
        # The compiled passes' activations, factors and gradients, one flat buffer per member.
        rows = 2 + sum(self.widths)
        self.buffers = {name: np.zeros((self.count, rows * n), np.float32) for name in ("acts", "factors", "grads")}
        self.buffers["u"] = np.zeros((self.count, 3, n), np.float32)
        self.buffers["norm"] = np.zeros((self.count, n), np.float32)
        self.article_weights = np.array([m.article_weight for m in members], dtype=np.float32)
        self.uniformity_weights = np.array([m.uniformity_weight for m in members], dtype=np.float32)
        self.temperatures = np.array([m.uniformity_temperature for m in members], dtype=np.float32)

        # nn.Linear's default initialisation (kaiming_uniform with a = sqrt(5)): weight and bias
        # uniform in +-1/sqrt(fan_in), drawn from each member's own stream.
        bound = torch.cat([torch.full((width * (fan_in + 1),), 1.0 / math.sqrt(fan_in))
                           for fan_in, width, *_ in self.table.tolist()])
        draws = np.zeros((self.count, len(bound)), np.float32)
        kernels.uniforms(self.states, draws)
        self.theta = ((torch.from_numpy(draws) * 2.0 - 1.0) * bound).to(self.device)
        self.adam_m = torch.zeros_like(self.theta)
        self.adam_v = torch.zeros_like(self.theta)
        self.step = 0
        self._lr_epoch = None
        self.lr = torch.zeros(self.count, 1, device=self.device)

    def views(self, theta: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's stacked weight (M, out, in) and bias (M, out, 1), views into `theta` (default: the trainer's)."""
        theta = self.theta if theta is None else theta
        return [(theta[:, weight:bias].reshape(self.count, width, fan_in), theta[:, bias:bias + width].reshape(self.count, width, 1))
                for fan_in, width, weight, bias, *_ in self.table.tolist()]

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Member `index`'s parameters under nn.Linear names (fc1.weight, ...), shapes as nn.Linear."""
        state = {}
        for number, (weight, bias) in enumerate(self.views(), start=1):
            state[f"fc{number}.weight"], state[f"fc{number}.bias"] = weight[index].clone(), bias[index, :, 0].clone()
        return state

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None,
                theta: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Map points x (M, 2, n) to unit vectors (M, 3, n), and what backward() needs. keep: dropout's
        factors from draw() (None: none); theta: other parameters (autograd's leaf in the tests)."""
        h, inputs, factors = x, [], []
        for (weight, bias), layer in zip(self.views(theta), self.table.tolist(), strict=True):
            relu, first_keep = layer[kernels.RELU], layer[kernels.KEEP_ROW]
            inputs.append(h)
            h = torch.baddbmm(bias, weight, h)
            # ReLU and dropout as one factor f = [h > 0] * keep, h * f; the backward pass multiplies
            # by the same f (one pass, where relu's own backward costs ~1 ms a step here).
            factor = h.gt(0.0).to(h.dtype) if relu else None
            if keep is not None and first_keep >= 0:
                kept = keep[:, first_keep : first_keep + h.shape[1]]
                factor = kept if factor is None else factor.mul_(kept)
            factors.append(factor)
            h = h if factor is None else h * factor
        # |o| as sqrt(sum of squares): torch's norm over a middle axis is ~50x slower on CPU here.
        norm = (h * h).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-12)  # F.normalize's eps
        u = h / norm
        return u, {"inputs": inputs, "factors": factors, "norm": norm, "u": u}

    def backward(self, du: torch.Tensor, saved: dict) -> torch.Tensor:
        """The gradient (M, P) of sum_k loss_k, given d(loss)/d(u) (M, 3, n): the chain rule by hand."""
        weights = [weight for weight, _ in self.views()]
        u, norm = saved["u"], saved["norm"]
        grads = (du - u * (u * du).sum(dim=1, keepdim=True)) / norm  # through u = o / |o|
        parts = []
        for index in reversed(range(len(weights))):
            if saved["factors"][index] is not None:  # through dropout and the ReLU
                grads = grads * saved["factors"][index]
            parts += [grads.sum(dim=2), torch.bmm(grads, saved["inputs"][index].transpose(1, 2))]
            if index > 0:
                grads = torch.bmm(weights[index].transpose(1, 2), grads)
        return torch.cat([part.reshape(self.count, -1) for part in reversed(parts)], dim=1)

    def losses_and_grad(self, u: torch.Tensor, orders: torch.Tensor, directions: torch.Tensor | None,
                        compiled: bool = False):
        """Each member's weighted loss (M,) and d(sum of losses)/du (M, 3, n). orders: a permutation
        per split; directions: the covering loss's. compiled (CPU only): kernels.py's loss loops."""
        m, n, s = self.count, self.points, self.splits
        total = u.new_zeros(m)
        du = torch.zeros_like(u)
        if self.uses["article"] and compiled:
            article = torch.zeros(m)
            kernels.article_losses(u.numpy(), orders.numpy(), self.article_weights, article.numpy(), du.numpy())
            total = total + article
        elif self.uses["article"]:
            # The article: sum over splits of (sum_i cos(a_i, b_i))^2, a/b the two halves of a
            # random permutation; the outputs are unit vectors, so cos is the dot product.
            half = n // 2
            order = orders[..., : 2 * half]                           # (M, S, 2 * half)
            index = order.unsqueeze(1).expand(m, 3, s, 2 * half)
            shuffled = torch.gather(u.view(m, 3, s, n), 3, index)
            first, second = shuffled[..., :half], shuffled[..., half:]
            sums = (first * second).sum(dim=(1, 3))                   # (M, S): sum of paired cosines
            total = total + self.weights["article"] * (sums**2).sum(dim=1)
            factor = (2.0 * sums * self.weights["article"].unsqueeze(1)).view(m, 1, s, 1)
            grads = torch.cat([second, first], dim=3) * factor         # d/da_i = 2 S b_i, d/db_i = 2 S a_i
            du.view(m, 3, s, n).scatter_(3, index, grads)
        if self.uses["uniformity"] or self.uses["cover"]:
            first_split = u[:, :, :n]                                  # (M, 3, points)
            grad_first = du[:, :, :n]
        if self.uses["uniformity"] and compiled:
            uniformity, grads = torch.zeros(m), torch.zeros(m, 3, n)
            kernels.uniformity_losses(first_split.contiguous().numpy(), self.temperatures, self.uniformity_weights,
                                      uniformity.numpy(), grads.numpy())
            total = total + uniformity
            grad_first.add_(grads)
        elif self.uses["uniformity"]:
            # Wang & Isola (2020): log of the mean of exp(-t |u_i - u_j|^2) over pairs i != j.
            # For unit vectors |u_i - u_j|^2 = 2 - 2 u_i.u_j; d/du_i = (4t / Z) sum_j E_ij u_j.
            t = self.temperature.view(m, 1, 1)
            kernel = torch.bmm(first_split.transpose(1, 2), first_split).sub_(1.0).mul_(2.0 * t).exp_()
            kernel.diagonal(dim1=1, dim2=2).zero_()
            z = kernel.sum(dim=(1, 2))
            total = total + self.weights["uniformity"] * torch.log(z.clamp_min(1e-30) / (n * (n - 1)))
            scale = (4.0 * self.weights["uniformity"] / z.clamp_min(1e-30)).view(m, 1, 1) * t
            grad_first.add_(torch.bmm(first_split, kernel) * scale)
        if self.uses["cover"]:
            # A one-sided Chamfer distance: random directions, each to its nearest mapped point,
            # mean of |d - u|^2 = 2 - 2 d.u. Its gradient pulls the point nearest to a direction
            # inside a hole into the hole.
            if compiled:
                best, nearest = torch.zeros(m, self.targets), torch.zeros(m, self.targets, dtype=torch.int64)
                kernels.nearest_points(directions.numpy(), first_split.contiguous().numpy(), self.cover,
                                       best.numpy(), nearest.numpy())
            else:
                similarity = torch.bmm(directions.transpose(1, 2), first_split)   # (M, targets, points)
                best, nearest = similarity.max(dim=2)
            total = total + self.weights["cover"] * (2.0 - 2.0 * best).mean(dim=1)
            pulls = directions * (-2.0 / self.targets * self.weights["cover"]).view(m, 1, 1)
            grad_first.scatter_add_(2, nearest.unsqueeze(1).expand(m, 3, self.targets), pulls)
        return total, du

    def draw(self) -> dict[str, torch.Tensor]:
        """This step's random inputs of every member (kernels.draw_step) on the device: x, orders,
        directions and dropout's keep factors."""
        b = self.batch
        kernels.draw_step(self.states, self.points, self.permute, self.cover, self.threshold, self.keep_scale,
                          b["x"], b["orders"], b["directions"], b["keep"])
        return {name: torch.from_numpy(array).to(self.device) for name, array in b.items()}

    def _learning_rates(self) -> torch.Tensor:
        """StepLR: lr * gamma^(step // lr_step) per member, rebuilt only when an epoch turns."""
        epochs = tuple(self.step // m.lr_step for m in self.members)
        if epochs != self._lr_epoch:
            self._lr_epoch = epochs
            values = [m.learning_rate * m.lr_gamma**e for m, e in zip(self.members, epochs, strict=True)]
            self.lr = torch.tensor(values, dtype=self.theta.dtype, device=self.device).unsqueeze(1)
        return self.lr

    def train_step(self) -> torch.Tensor:
        """One optimisation step of every member; returns their losses (M,), left on the device."""
        total, grad = self.loss_and_gradient(self.draw())
        self.apply_gradient(grad)
        return total

    def loss_and_gradient(self, batch: dict[str, torch.Tensor], compiled: bool | None = None):
        """Each member's loss (M,) and the gradient (M, P) of their sum for one step's draws; compiled
        (default on the CPU): kernels.py's passes, else forward() / backward() (any device)."""
        compiled = self.device.type == "cpu" if compiled is None else compiled
        directions = batch["directions"] if self.uses["cover"] else None
        if not compiled:
            u, saved = self.forward(batch["x"], batch["keep"] if self.any_dropout else None)
            total, du = self.losses_and_grad(u, batch["orders"], directions)
            return total, self.backward(du, saved)
        b, theta = self.buffers, self.theta.numpy()
        kernels.forward(theta, self.table, batch["x"].numpy(), batch["keep"].numpy(), self.any_dropout,
                        b["acts"], b["factors"], b["norm"], b["u"])
        total, du = self.losses_and_grad(torch.from_numpy(b["u"]), batch["orders"], directions, compiled=True)
        grad = np.empty_like(theta)
        kernels.backward(theta, self.table, self.any_dropout, b["acts"], b["factors"], b["norm"], b["u"], du.numpy(),
                         b["grads"], grad)
        return total, torch.from_numpy(grad)

    def apply_gradient(self, grad: torch.Tensor) -> None:
        """torch.optim.Adam's update (default betas and eps) at StepLR's rate, then the article's clamp."""
        beta1, beta2 = self.ADAM_BETAS
        count = self.step + 1
        lr = self._learning_rates()
        self.adam_m.lerp_(grad, 1.0 - beta1)
        self.adam_v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denominator = (self.adam_v.sqrt() / math.sqrt(1.0 - beta2**count)).add_(self.ADAM_EPS)
        self.theta.sub_(self.adam_m / denominator * (lr / (1.0 - beta1**count)))
        if self.clamp_value is not None:
            self.theta.clamp_(-self.clamp_value, self.clamp_value)
        else:
            self.theta.clamp_(min=-self.clamp, max=self.clamp)
        self.step += 1

    @torch.no_grad()
    def evaluate(self, points: torch.Tensor, chunk: int = 20_000) -> torch.Tensor:
        """The map without dropout (the article's network.eval(...)) of points (n, 2): (M, n, 3)."""
        points = points.to(self.device, self.theta.dtype)
        outputs = []
        for start in range(0, len(points), chunk):
            x = points[start : start + chunk].T.unsqueeze(0).expand(self.count, 2, -1)
            outputs.append(self.forward(x)[0].transpose(1, 2))
        return torch.cat(outputs, dim=1)

    @torch.no_grad()
    def evaluate_with_dropout(self, points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The map with dropout on (the article's training-batch figure): (M, n, 3); masks from
        `generator`, so a figure never moves a training stream."""
        points = points.to(self.device, self.theta.dtype)
        p = self.dropout.view(-1, 1, 1).cpu()
        draws = torch.rand(self.count, self.keep_rows, len(points), generator=generator)
        keep = ((draws >= p).to(self.theta.dtype) / (1.0 - p)).to(self.device)
        x = points.T.unsqueeze(0).expand(self.count, 2, -1)
        return self.forward(x, keep)[0].transpose(1, 2)

    def state_dict(self) -> dict:
        return {"members": [m.to_dict() for m in self.members], "seeds": self.seeds, "step": self.step,
                "theta": self.theta.cpu(), "adam_m": self.adam_m.cpu(), "adam_v": self.adam_v.cpu(),
                "rng_states": torch.from_numpy(self.states.view(np.int64).copy())}

    def load_state_dict(self, state: dict) -> None:
        if "rng_states" not in state:
            raise LabError("the checkpoint is from an older version of the trainer (torch generators); rerun with --fresh")
        saved = [settings_from_checkpoint(SphereSettings, values, "the checkpoint", "sphere_mapping's trainer")
                 for values in state["members"]]
        if saved != self.members or list(state["seeds"]) != self.seeds:
            raise LabError("the checkpoint holds other runs (settings or seeds differ); rerun with --fresh")
        self.theta = state["theta"].to(self.device, self.theta.dtype).clone()
        self.adam_m = state["adam_m"].to(self.device).clone()
        self.adam_v = state["adam_v"].to(self.device).clone()
        self.states = state["rng_states"].numpy().view(np.uint64).copy()
        self.step = int(state["step"])
        self._lr_epoch = None


def train_group(members: list[SphereSettings], seeds: list[int], steps: int, device: str | torch.device = "cpu",
                progress=None, torch_threads: int = 0) -> Trainer:
    """Train the runs (one shape_key) as one stacked Trainer; `progress(trainer, losses)` after each step."""
    if torch_threads:
        torch.set_num_threads(torch_threads)  # OpenMP's count is per thread: a new one would spin on every core
    trainer = Trainer(members, seeds, device)
    for _ in range(steps):
        losses = trainer.train_step()
        if progress is not None:
            progress(trainer, losses)
    return trainer


def train_many(members: list[SphereSettings], seeds: list[int], steps: int, device: str | torch.device = "cpu",
               progress=None, workers: int = 1) -> list[Trainer]:
    """Train every (settings, seed) pair for `steps` steps, members with the same shapes stacked: one
    Trainer per group (in order of first appearance, its members' `indices`); `workers` groups at a
    time in threads (lab.executor, here only: `progress` is any callable)."""
    groups: dict[tuple, list[int]] = {}
    for index, member in enumerate(members):
        groups.setdefault(member.shape_key, []).append(index)
    cells = [Cell(f"group{number}", "sphere_mapping.model:train_group",
                  {"members": [members[i] for i in indices], "seeds": [seeds[i] for i in indices], "steps": steps,
                   "device": device, "progress": progress, "torch_threads": torch.get_num_threads()})
             for number, indices in enumerate(groups.values())]
    outcomes = run_cells(cells, workers=workers, desc="groups")
    if failures := failure_summary(outcomes):
        raise LabError(f"training failed:\n{failures}")
    for outcome, indices in zip(outcomes, groups.values(), strict=True):
        outcome.result.indices = indices
    return [outcome.result for outcome in outcomes]
