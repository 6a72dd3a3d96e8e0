"""The article's models (article 000, Habr, in Russian): a convolutional sigma-VAE with gated residual
layers and the "recoder" that animates its code, with their losses. Module and parameter names are the
article's (`encoder.cnn1`, `decoder.cnn5`, `sigma`, ...), so its state_dicts load with strict=True."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

VAE_CHECKPOINT_NAME = "vae.pt"   # train.py writes it, test.py reads it, in the profile's checkpoint folder
DATE_CHECKPOINT_NAME = "recoder.pt"  # test.py's date (recoder, code, EEG, track); seeds.py reads it
_CLIP_WINDOW = 500               # gradient norms AutoClip takes its percentile over


@dataclass(frozen=True)
class VAESettings:
    """What shapes the sigma-VAE; in train.py's checkpoint, test.py rebuilds the model from it (nanoGPT's way)."""

    image_height: int = 360
    image_width: int = 640
    patch: int = 10
    layers: int = 20
    channels: int = 128
    code_channels: int = 8
    sigma_mode: str = "learned"  # "learned" (article) or "optimal" (Rybkin et al. 2021)

    def build(self) -> GaussianAutoencoder:
        return GaussianAutoencoder(self.layers, self.channels, self.code_channels, self.patch, self.sigma_mode)


@dataclass(frozen=True)
class RecoderSettings:
    """What shapes the recoder; stored in the date's checkpoint."""

    layers: int = 20
    channels: int = 64
    code_channels: int = 8

    def build(self) -> Recoder:
        return Recoder(self.layers, self.channels, self.code_channels)


def gated_residual(layer_out: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """The article's gate candidate * (1 - g) + previous * g as one fused torch.lerp (not four element-wise ops)."""
    candidate, gate = torch.chunk(layer_out, 2, dim=1)
    # Under bfloat16 autocast `previous` may still be float32; lerp needs one dtype.
    return torch.lerp(candidate, previous.to(candidate.dtype), torch.sigmoid(gate))


class GaussianEncoder(nn.Module):
    """Picture (N, 3, H, W) -> code (N, code_channels, H/patch, W/patch), as in the article."""

    def __init__(self, layers: int = 20, channels: int = 128, code_channels: int = 8, patch: int = 10):
        super().__init__()
        self.gn1 = nn.GroupNorm(2, channels)
        self.cnn1 = nn.Conv2d(3, channels, kernel_size=patch, stride=patch)
        self.cnn = nn.ModuleList(nn.Conv2d(channels // 2, channels, kernel_size=3, padding=1) for _ in range(layers))
        self.gn = nn.ModuleList(nn.GroupNorm(2, channels) for _ in range(layers))
        self.cnn_out = nn.Conv2d(channels // 2, code_channels, kernel_size=1)
        self.glu = nn.GLU(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.glu(self.gn1(self.cnn1(x)))
        for conv, norm in zip(self.cnn, self.gn, strict=True):
            y = gated_residual(norm(conv(y)), y)
        return self.cnn_out(y)


class GaussianDecoder(nn.Module):
    """Code (N, code_channels, h, w) -> picture (N, 3, h*patch, w*patch), as in the article."""

    def __init__(self, layers: int = 20, channels: int = 128, code_channels: int = 8, patch: int = 10):
        super().__init__()
        self.cnn_in = nn.Conv2d(code_channels, channels, kernel_size=1)
        self.gn_in = nn.GroupNorm(2, channels)
        self.gn = nn.ModuleList(nn.GroupNorm(2, channels) for _ in range(layers))
        self.cnn = nn.ModuleList(nn.Conv2d(channels // 2, channels, kernel_size=3, padding=1) for _ in range(layers))
        self.gn5 = nn.GroupNorm(2, 6)  # 2 x 3 colour channels before the GLU
        self.cnn5 = nn.ConvTranspose2d(channels // 2, 6, kernel_size=patch, stride=patch)
        self.glu = nn.GLU(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.glu(self.gn_in(self.cnn_in(x)))
        for conv, norm in zip(self.cnn, self.gn, strict=True):
            y = gated_residual(norm(conv(y)), y)
        return self.glu(self.gn5(self.cnn5(y)))


def output_variance(sigma: torch.Tensor) -> torch.Tensor:
    """The article's parametrisation of the decoder's variance: sigmoid(sigma) * 2 + 1e-6."""
    return torch.sigmoid(sigma) * 2.0 + 1e-6


def sigma_vae_loss(pictures: torch.Tensor, reconstruction: torch.Tensor, code_mean: torch.Tensor,
                   code_std: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The article's sigma-VAE loss, with the real H W C where it hard-codes 360 * 640 * 3 (smaller pictures)."""
    pixels = pictures[0].numel()
    likelihood = ((reconstruction - pictures) ** 2 / (2.0 * variance)).mean(dim=0).sum()
    # KL(N(mean, std^2) || N(0, 1)) in closed form: the article's kl_divergence.
    divergence = (0.5 * (code_mean * code_mean + code_std * code_std - 1.0) - torch.log(code_std)).mean(dim=0).sum()
    return likelihood + divergence + torch.log(variance).sum() * pixels * 0.5


class GaussianAutoencoder(nn.Module):
    """The article's sigma-VAE: (noisy reconstruction, loss) in training mode, the decoded mean in eval
    mode. sigma_mode "optimal": the batch's MSE as the variance (Rybkin et al. 2021, calibrated decoders)."""

    def __init__(self, layers: int = 20, channels: int = 128, code_channels: int = 8, patch: int = 10,
                 sigma_mode: str = "learned"):
        super().__init__()
        if sigma_mode not in ("learned", "optimal"):
            raise ValueError(f"sigma_mode must be 'learned' or 'optimal', got {sigma_mode!r}")
        self.sigma_mode = sigma_mode
        self.encoder = GaussianEncoder(layers, channels, code_channels, patch)
        self.encoder_var = GaussianEncoder(layers, channels, code_channels, patch)
        self.decoder = GaussianDecoder(layers, channels, code_channels, patch)
        self.sigma = nn.Parameter(torch.randn(1))

    def code_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x), torch.sigmoid(self.encoder_var(x))

    def forward(self, x: torch.Tensor):
        mean, std = self.code_distribution(x)
        if not self.training:
            return self.decoder(mean)
        # The reparametrised sample of the code, as the article's Normal(y, y_var).rsample().
        code = mean + std * torch.randn_like(std)
        decoded = self.decoder(code)
        if self.sigma_mode == "learned":
            variance = output_variance(self.sigma)
            # The article samples the reconstruction from N(decoded, variance) before the error.
            reconstruction = decoded + variance.sqrt() * torch.randn_like(decoded)
        else:
            variance = ((decoded - x) ** 2).mean().reshape(1).clamp_min(1e-6)
            reconstruction = decoded
        return reconstruction, sigma_vae_loss(x, reconstruction, mean, std, variance)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A code sampled from N(mean, std), as the article's encode()."""
        mean, std = self.code_distribution(x)
        return mean + std * torch.randn_like(std)


class Recoder(nn.Module):
    """The article's recoder; forward(x, return_h=True) also returns the hidden layers (the EEG's)."""

    def __init__(self, layers: int = 20, channels: int = 64, code_channels: int = 8):
        super().__init__()
        self.cnn_in = nn.Conv2d(code_channels, channels, kernel_size=1)
        self.cnn = nn.ModuleList(nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1) for _ in range(layers))
        self.cnn_out = nn.Conv2d(channels, code_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, return_h: bool = False):
        y = self.cnn_in(x)
        hidden = []
        for conv in self.cnn:
            y = gated_residual(conv(y), y)
            y = y / torch.linalg.vector_norm(y, dim=1, keepdim=True)  # the article's l2norm over the channels
            hidden.append(y)
        return (self.cnn_out(y), hidden) if return_h else self.cnn_out(y)


def corrloss(y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The article's corrloss: z = 1 - the correlation of y and x, r = a mismatch of their spread and mean."""
    dx, dy = x - x.mean(), y - y.mean()
    zx, zy = (dx * dx + 1e-16).sum(), (dy * dy + 1e-16).sum()
    z = 1.0 - (dx * dy / (zx * zy).sqrt()).sum()
    r = (zx.log() - zy.log()) ** 2 + (x.mean() - y.mean()) ** 2
    return z, r


def date_schedule(iteration: int, cycle: int = 5300) -> dict[str, float]:
    """The article's s(t): logistic steps s1, s2 make the plateau, the Lorentzian pulses s_ the culmination."""
    t = float(iteration % cycle + 1) / cycle
    s1 = 1.0 - 1.0 / (2.0 ** (150.0 * (t - 0.1)) + 1.0)
    s2 = 1.0 - 1.0 / (2.0 ** (150.0 * (0.9 - t)) + 1.0)
    pulses = sum(1.0 / (1.0 + ((t - centre) * 100.0) ** 2.0) for centre in (0.90, 0.93, 0.96))
    return {"t": t, "s1": s1, "s2": s2, "s_": pulses, "s": (s1 + s2 - 1.0) * 0.16 + pulses / 0.8}


def recoder_loss(y: torch.Tensor, x1: torch.Tensor, target: torch.Tensor, s: float):
    """The article's recoder loss: stay like the current code x1 (less so as s rises), move towards the target's."""
    loss1, _ = corrloss(y, x1)
    loss2, r = corrloss(y, target)
    loss = loss1 * (loss1 - s).detach() + loss2 * loss2.detach() * (1.0 - 0.8 * s) + 0.25 * r
    return loss, loss1, loss2, r


def psnr(reference: torch.Tensor, estimate: torch.Tensor, peak: float = 1.0) -> float:
    mse = float(((reference - estimate) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def reconstructions_and_psnr(model: GaussianAutoencoder, pictures: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """The model's reconstructions of (N, 3, H, W) pictures in [0, 1] and the PSNR (dB) of each."""
    with torch.no_grad():
        reconstructions = model(pictures).clamp(0.0, 1.0)
    return reconstructions, [psnr(pictures[i], reconstructions[i]) for i in range(len(pictures))]


def vae_step(model: GaussianAutoencoder, optimizer: torch.optim.Optimizer, pictures: torch.Tensor,
             gradient_norms: list[float] | None = None, clip_percentile: float = 0.0,
             mixed_precision: bool = False) -> float:
    """One optimisation step on the whole batch; returns the loss. `clip_percentile` > 0: AutoClip
    (Seetharaman et al. 2020) against the loss spikes once sigma has shrunk (the likelihood grows as 1/sigma^2)."""
    model.train()
    with torch.autocast(pictures.device.type, dtype=torch.bfloat16, enabled=mixed_precision):
        _, loss = model(pictures)
    loss = loss.float()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_percentile > 0 and gradient_norms is not None:
        # A window of recent norms, not the whole history: the norms grow as sigma shrinks.
        recent = gradient_norms[-_CLIP_WINDOW:]
        threshold = float(np.percentile(recent, clip_percentile)) if len(recent) >= 10 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), threshold))
        if math.isfinite(norm):
            gradient_norms.append(norm)
    optimizer.step()
    return float(loss.detach())
