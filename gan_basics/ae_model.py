"""The primer's second half (article 004): an autoencoder, a variational autoencoder (Kingma & Welling
2014), a digits classifier and the training loop they share. Images are (N, 1, H, W) tensors in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lab import LabError
from lab.checkpoint import InterruptGuard, load_state_dict_strict, resume, save_checkpoint
from lab.schedules import cosine_factor


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """gan_basics.data gives images in [-1, 1] (a tanh generator's range); these demos use [0, 1]."""
    return torch.from_numpy((np.asarray(images, dtype=np.float32) + 1.0) / 2.0)


def parse_choice_list(text: str, valid: Sequence[str], what: str) -> list[str]:
    """A comma-separated selection such as "fgsm,pgd" (or "all"), checked against the valid names."""
    names = [name.strip().lower() for name in str(text).split(",") if name.strip()]
    if names == ["all"]:
        return list(valid)
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise LabError(f"unknown {what} {', '.join(unknown) or repr(text)}; valid: {', '.join(valid)} "
                       f"(comma-separated, or all), e.g. --set {what.upper().replace(' ', '_')}S={valid[0]}")
    return names


# Each model is built from one typed settings dataclass stored in its checkpoint (train_model): a
# checkpoint made with other settings is not resumed, and a reader rebuilds the model from the
# checkpoint alone (lab.safe_load.settings_from_checkpoint, then `<Model>.from_settings`).
@dataclass(frozen=True, kw_only=True)
class TrainedSettings:
    """What every model here shares: the data it was trained on and its optimiser's recipe."""

    dataset: str
    image_shape: tuple[int, ...]
    batch_size: int
    learning_rate: float
    seed: int


@dataclass(frozen=True, kw_only=True)
class AutoencoderSettings(TrainedSettings):
    latent_size: int
    hidden_sizes: tuple[int, ...]
    anomaly_class: int = -1  # the digit withheld from its training data (-1: none)


@dataclass(frozen=True, kw_only=True)
class DenoiserSettings(AutoencoderSettings):
    """An autoencoder trained to remove noise, with its own recipe (README.md, "Why these recipes")."""

    epochs: int                           # the cosine decay spans them: another count is another schedule
    loss: str                             # "psnr" or "mse"
    shift_probability: float              # share of training digits moved by up to a pixel
    gaussian_sigmas: tuple[float, ...]    # the noise levels it is trained on
    salt_pepper_fractions: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class VAESettings(TrainedSettings):
    latent_size: int
    hidden_sizes: tuple[int, ...]
    decoder: str          # "sigma" (calibrated) or "gaussian" (fixed decoder_sigma)
    decoder_sigma: float


@dataclass(frozen=True, kw_only=True)
class ClassifierSettings(TrainedSettings):
    num_classes: int
    hidden_sizes: tuple[int, ...]


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ELU) -> nn.Sequential:
    """Linear layers with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Encoder -> code of `latent_size` numbers -> mirrored decoder -> sigmoid. Without the hidden ELU
    layers it would learn the PCA subspace (Baldi & Hornik 1989): the primer's "non-linear" reduction."""

    def __init__(self, image_shape: Sequence[int], latent_size: int, hidden_sizes: Sequence[int]):
        super().__init__()
        self.image_shape = tuple(image_shape)
        pixels = int(np.prod(image_shape))
        self.encoder = _mlp([pixels, *hidden_sizes, latent_size])
        self.decoder = _mlp([latent_size, *reversed(hidden_sizes), pixels])

    @classmethod
    def from_settings(cls, settings: AutoencoderSettings) -> Autoencoder:
        return cls(settings.image_shape, settings.latent_size, settings.hidden_sizes)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images.flatten(1))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(codes)).view(-1, *self.image_shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))


class VariationalAutoencoder(nn.Module):
    """A VAE with decoder p(x|z) = N(decoder(z), sigma^2 I) and prior N(0, I). `decoder_sigma` > 0 fixes
    sigma; 0 is the sigma-VAE's calibrated decoder (Rybkin, Daniilidis & Levine 2021): sigma is the RMS
    reconstruction error, its running value (the `sigma` buffer) scores held-out data."""

    def __init__(self, image_shape: Sequence[int], latent_size: int, hidden_sizes: Sequence[int],
                 decoder_sigma: float = 0.0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_size = latent_size
        pixels = int(np.prod(image_shape))
        self.encoder = _mlp([pixels, *hidden_sizes, 2 * latent_size])
        self.decoder = _mlp([latent_size, *reversed(hidden_sizes), pixels])
        self.fixed_sigma = float(decoder_sigma)
        self.register_buffer("sigma", torch.tensor(decoder_sigma if decoder_sigma > 0 else 0.1))

    @classmethod
    def from_settings(cls, settings: VAESettings) -> VariationalAutoencoder:
        return cls(settings.image_shape, settings.latent_size, settings.hidden_sizes,
                   settings.decoder_sigma if settings.decoder == "gaussian" else 0.0)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of the approximate posterior q(z|x)."""
        mean, log_variance = self.encoder(images.flatten(1)).chunk(2, dim=1)
        return mean, log_variance.clamp(-12.0, 8.0)

    decode = Autoencoder.decode  # the same sigmoid decoder

    def negative_elbo(self, images: torch.Tensor, update_sigma: bool = False) -> tuple[torch.Tensor, dict]:
        """-ELBO per image in nats: Gaussian negative log-likelihood plus KL(q(z|x) || N(0, I))."""
        mean, log_variance = self.encode(images)
        # The reparameterisation trick (Kingma & Welling 2014, eq. 10): z = mu + sigma * eps.
        codes = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        reconstruction = self.decode(codes)
        squared_error = (reconstruction - images).pow(2).flatten(1).sum(1)
        pixels = squared_error.new_tensor(float(np.prod(self.image_shape)))
        if self.fixed_sigma > 0:
            sigma = squared_error.new_tensor(self.fixed_sigma)
        else:
            # sigma-VAE's optimal sigma: the RMS reconstruction error (Rybkin et al. 2021, eq. 5);
            # floored so that a perfect reconstruction cannot drive the likelihood to infinity.
            sigma = (squared_error.mean() / pixels).sqrt().detach().clamp_min(1e-3)
            if update_sigma:
                self.sigma.mul_(0.9).add_(0.1 * sigma)
            else:
                sigma = self.sigma
        # -log N(x; x_hat, sigma^2 I) = D log sigma + D/2 log(2 pi) + |x - x_hat|^2 / (2 sigma^2).
        nll = pixels * torch.log(sigma) + 0.5 * pixels * math.log(2 * math.pi) + squared_error / (2 * sigma**2)
        # KL of a diagonal Gaussian from the standard normal (Kingma & Welling 2014, appendix B).
        kl_per_dim = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp())
        kl = kl_per_dim.sum(1)
        return nll + kl, {"nll": nll, "kl": kl, "kl_per_dim": kl_per_dim.mean(0)}


class DigitsClassifier(nn.Module):
    """Pixels -> ReLU layers -> class logits: the too-linear network adversarial examples exploit
    (Goodfellow et al. 2015)."""

    def __init__(self, image_shape: Sequence[int], num_classes: int = 10, hidden_sizes: Sequence[int] = (256, 256)):
        super().__init__()
        sizes = [int(np.prod(image_shape)), *hidden_sizes, num_classes]
        self.network = nn.Sequential(nn.Flatten(), *_mlp(sizes, nn.ReLU))

    @classmethod
    def from_settings(cls, settings: ClassifierSettings) -> DigitsClassifier:
        return cls(settings.image_shape, settings.num_classes, settings.hidden_sizes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)


def batches(count: int, batch_size: int, shuffle: bool = True):
    order = torch.randperm(count) if shuffle else torch.arange(count)
    for start in range(0, count, batch_size):
        yield order[start:start + batch_size]


def train_model(run, name: str, model: nn.Module, settings: TrainedSettings,
                loss_fn: Callable[[torch.Tensor], torch.Tensor], count: int, *, epochs: int, desc: str,
                cosine_schedule: bool = False, checkpoint_every: int = 25) -> tuple[list[float], bool]:
    """Train `model` with Adam for `epochs` passes over `count` samples (`loss_fn(indices)`: their mean
    loss), resuming `<name>.pt` (lab.checkpoint.resume); returns the epochs' mean losses and whether it
    was interrupted. `cosine_schedule`: the step size falls to 0 along a half cosine (Loshchilov & Hutter
    2017), a function of the step alone, so a resumed run stays on the curve."""
    learning_rate, batch_size = settings.learning_rate, settings.batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    ckpt = resume(run, f"{name}.pt", settings=settings, steps=epochs, steps_name="EPOCHS")
    history: list[float] = [] if ckpt.state is None else list(ckpt.state["history"])
    if ckpt.state is not None:
        load_state_dict_strict(model, ckpt.state["model"], f"checkpoint {ckpt.path}")
        optimizer.load_state_dict(ckpt.state["optimizer"])
    start = epoch = ckpt.step
    steps_per_epoch = math.ceil(count / batch_size)

    def save(done: int) -> None:
        save_checkpoint(ckpt.path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "history": history, **ckpt.meta(done)})

    model.train()
    with InterruptGuard() as guard, tqdm(range(start, epochs), initial=start, total=epochs, desc=desc) as bar:
        for epoch_index in bar:
            total = 0.0
            for batch_index, indices in enumerate(batches(count, batch_size)):
                if cosine_schedule:
                    factor = cosine_factor(epoch_index * steps_per_epoch + batch_index, epochs * steps_per_epoch)
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate * factor
                loss = loss_fn(indices)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(indices)
            history.append(total / count)
            epoch = epoch_index + 1
            if epoch % checkpoint_every == 0 or epoch == epochs or guard.requested:
                save(epoch)
            run.log_scalars(epoch, **{f"{name}/loss": history[-1], f"{name}/lr": optimizer.param_groups[0]["lr"]})
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            if guard.requested:
                break
    model.eval()
    if not ckpt.path.exists():  # EPOCHS already done by a checkpoint that only the fallback held
        save(epoch)
    return history, guard.requested


def psnr(clean: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, for pixels in [0, 1]: 10 log10(1 / MSE)."""
    mse = (clean - other).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


def image_grid(images: np.ndarray, columns: int, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, H, W) or (N, 1, H, W) images in [0, 1] into one 2-D array, `columns` per row."""
    images = np.asarray(images)
    images = images[:, 0] if images.ndim == 4 else images
    count, height, width = images.shape
    rows = math.ceil(count / columns)
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad), pad_value, dtype=np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so 8x8 digits stay crisp in GIFs and strips."""
    return np.kron(np.asarray(image), np.ones((factor, factor), dtype=np.float32))
