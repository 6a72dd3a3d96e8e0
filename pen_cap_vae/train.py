"""Train the article's sigma-VAE on the date's pictures (article 000: "first train the VAE in train.py").

Run: python -m pen_cap_vae.train [--quick] [--set STEPS=5000] [--fresh]

The article gives the architecture and the loss but not the optimiser, learning rate or number of
steps; the choices below are ours (Adam at 5e-4 with a cosine decay, gradient clipping against loss
spikes, the whole batch of pictures every step). Rerunning
resumes from the checkpoint; Ctrl+C saves and stops; a NaN/inf loss stops with the last good
checkpoint kept.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lab import LabError, exit_on_lab_error, start_run  # noqa: E402
from lab.checkpoint import InterruptGuard, check_compatible, load_checkpoint, save_checkpoint  # noqa: E402
from lab.plots import save_figure  # noqa: E402
from lab.schedules import cosine_factor  # noqa: E402
from pen_cap_vae.data import load_pictures, to_uint8_image  # noqa: E402
from pen_cap_vae.model import GaussianAutoencoder, output_variance, psnr  # noqa: E402

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
PICTURES_DIR = ""       # folder of the pictures ("" = data/pen_cap/, drawn by pen_cap_vae.draw_pictures)
IMAGE_HEIGHT = 360      # pictures are resized to this height (article: 360)
IMAGE_WIDTH = 640       # ... and this width (article: 640)
PATCH = 10              # kernel and stride of the first/last convolution (article: 10x10, stride 10)
LAYERS = 20             # gated residual 3x3 layers in each encoder and in the decoder (article: 20)
CHANNELS = 128          # channels of those layers before the GLU halves them (article: 128)
CODE_CHANNELS = 8       # channels of the latent code (article: 8, a 8x36x64 code)
SIGMA_MODE = "learned"  # "learned": the article's sigma; "optimal": Rybkin et al. 2021's analytic variance
STEPS = 3000            # optimisation steps (not in the article: our choice)
LEARNING_RATE = 5e-4    # Adam's step size for the networks (not in the article: our choice)
SIGMA_LEARNING_RATE = 0.05  # Adam's step size for `sigma` alone (ours): at 1e-3 it needs ~10^4 steps to shrink
FINAL_LR_FRACTION = 0.05  # both step sizes decay along a cosine to this fraction at STEPS (ours)
CLIP_PERCENTILE = 90.0  # gradients are clipped to this percentile of the past norms (AutoClip); 0 turns it off
CHECKPOINT_EVERY = 100  # steps between checkpoints (a NaN loss falls back to the last one)
MIXED_PRECISION = False  # bfloat16 autocast for the forward pass (for GPUs; see pen_cap_vae.bench for figures)
CHANNELS_LAST = False   # NHWC memory layout for the convolutions (for GPUs; see pen_cap_vae.bench)
TORCH_THREADS = 0       # CPU threads for torch (0: torch's default); 1 is far faster on a busy machine
SEED = 0                # -1 draws a random seed and prints it
DEVICE = "auto"         # "auto" (CUDA if available), "cpu" or "cuda"
# The quick model is small and short-trained: it does not spike, and a decay would only slow it
# (400 steps: 31.0 dB at a constant step size, 26.5 dB with the full profile's decay).
QUICK = {"TORCH_THREADS": 1, "IMAGE_HEIGHT": 90, "IMAGE_WIDTH": 160, "LAYERS": 3, "CHANNELS": 32, "STEPS": 400,
         "LEARNING_RATE": 3e-3, "FINAL_LR_FRACTION": 1.0, "CHECKPOINT_EVERY": 50}
DRY_RUN = {"IMAGE_HEIGHT": 30, "IMAGE_WIDTH": 50, "LAYERS": 2, "CHANNELS": 16, "STEPS": 3, "CHECKPOINT_EVERY": 2}
# -----------------------------------------------------------------------------

# The constants a checkpoint must share with this run to be resumed (or decoded by test.py).
_ARCHITECTURE = ["IMAGE_HEIGHT", "IMAGE_WIDTH", "PATCH", "LAYERS", "CHANNELS", "CODE_CHANNELS", "SIGMA_MODE"]
_CHECKPOINT_NAME = "vae.pt"
_CLIP_WINDOW = 500  # gradient norms AutoClip takes its percentile over


def build_vae(constants: dict) -> GaussianAutoencoder:
    return GaussianAutoencoder(constants["LAYERS"], constants["CHANNELS"], constants["CODE_CHANNELS"],
                               constants["PATCH"], constants["SIGMA_MODE"])


def vae_step(model: GaussianAutoencoder, optimizer: torch.optim.Optimizer, pictures: torch.Tensor,
             gradient_norms: list[float] | None = None, clip_percentile: float = 0.0,
             mixed_precision: bool = False) -> float:
    """One optimisation step on the whole batch of pictures; returns the loss.

    With `clip_percentile` > 0 the gradient is clipped to that percentile of the norms seen so far
    (`gradient_norms`, appended to here): AutoClip, Seetharaman et al. 2020. Without it the full-size
    model's loss spikes every few hundred steps once sigma has shrunk (the likelihood term grows as
    1/sigma^2), and one such spike undid 700 steps of training in our runs.

    `mixed_precision` runs the forward pass under bfloat16 autocast (no loss scaling needed, unlike
    float16); autocast keeps the loss's sums and logarithms in float32."""
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


def plot_losses(path, losses: list[float], pixels: int) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, np.asarray(losses) / pixels, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("sigma-VAE loss per picture element")
    ax.set_title("VAE training loss (lower is better; it may go negative as sigma shrinks)")
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=100)


def save_reconstructions(path, pictures: torch.Tensor, reconstructions: torch.Tensor) -> None:
    """Originals in the top row, reconstructions below."""
    top = np.concatenate([to_uint8_image(p) for p in pictures], axis=1)
    bottom = np.concatenate([to_uint8_image(p) for p in reconstructions], axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(path)


@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv, framework="torch")
    cfg = run.cfg
    if cfg.SIGMA_MODE not in ("learned", "optimal"):
        raise LabError(f"SIGMA_MODE must be 'learned' or 'optimal', got {cfg.SIGMA_MODE!r}")
    if cfg.CHANNELS % 4 or cfg.CHANNELS < 4:
        raise LabError(f"CHANNELS must be a positive multiple of 4 (GroupNorm(2) after a GLU), got {cfg.CHANNELS}")
    if cfg.STEPS < 1 or cfg.LEARNING_RATE <= 0:
        raise LabError(f"STEPS must be >= 1 and LEARNING_RATE > 0, got {cfg.STEPS} and {cfg.LEARNING_RATE}")
    if not 0 < cfg.FINAL_LR_FRACTION <= 1 or not 0 <= cfg.CLIP_PERCENTILE <= 100:
        raise LabError(f"FINAL_LR_FRACTION must be in (0, 1] and CLIP_PERCENTILE in [0, 100], "
                       f"got {cfg.FINAL_LR_FRACTION} and {cfg.CLIP_PERCENTILE}")
    pictures, paths = load_pictures(cfg.PICTURES_DIR, cfg.IMAGE_HEIGHT, cfg.IMAGE_WIDTH, cfg.PATCH)
    pictures = pictures.to(run.device)
    print(f"training on {len(paths)} pictures: {', '.join(p.name for p in paths)}")

    model = build_vae(run.constants).to(run.device)
    if cfg.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
        pictures = pictures.contiguous(memory_format=torch.channels_last)
    networks = [p for name, p in model.named_parameters() if name != "sigma"]
    optimizer = torch.optim.Adam([{"params": networks}, {"params": [model.sigma], "lr": cfg.SIGMA_LEARNING_RATE}],
                                 lr=cfg.LEARNING_RATE)
    path, step, losses, gradient_norms = run.checkpoint_path(_CHECKPOINT_NAME), 0, [], []
    if path.exists() and not run.fresh:
        checkpoint = load_checkpoint(path)
        check_compatible(checkpoint["constants"], run.constants, _ARCHITECTURE, path)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, losses = checkpoint["step"], list(checkpoint.get("losses", []))
        gradient_norms = list(checkpoint.get("gradient_norms", []))
        print(f"resuming from step {step} ({path})")

    def save(at_step: int) -> None:
        save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": at_step,
                               "constants": run.constants, "losses": losses,
                               "gradient_norms": gradient_norms})

    pixels = pictures[0].numel()
    with InterruptGuard() as guard, tqdm(total=cfg.STEPS, initial=min(step, cfg.STEPS), desc="VAE", mininterval=2) as bar:
        while step < cfg.STEPS:
            factor = cosine_factor(step, cfg.STEPS, cfg.FINAL_LR_FRACTION)
            for group, base in zip(optimizer.param_groups, (cfg.LEARNING_RATE, cfg.SIGMA_LEARNING_RATE), strict=True):
                group["lr"] = base * factor
            loss = vae_step(model, optimizer, pictures, gradient_norms, cfg.CLIP_PERCENTILE, cfg.MIXED_PRECISION)
            if not math.isfinite(loss):
                saved = f"the last good checkpoint (step {load_checkpoint(path)['step']}) is kept at {path}" \
                    if path.exists() else "no checkpoint was saved yet"
                raise LabError(f"the loss became {loss} at step {step + 1}; {saved}. Lower LEARNING_RATE "
                               f"(now {cfg.LEARNING_RATE}) and rerun to resume, or --fresh to start over")
            losses.append(loss)
            step += 1
            bar.update(1)
            bar.set_postfix(loss_per_element=f"{loss / pixels:.4f}",
                            sigma=f"{float(output_variance(model.sigma.detach()).sqrt()):.4f}")
            if step % cfg.CHECKPOINT_EVERY == 0 or step == cfg.STEPS or guard.requested:
                save(step)
            if guard.requested:
                break

    model.eval()
    with torch.no_grad():
        reconstructions = model(pictures).clamp(0.0, 1.0)
    scores = {p.name: round(psnr(pictures[i], reconstructions[i]), 2) for i, p in enumerate(paths)}
    save_reconstructions(run.path("reconstructions.png"), pictures.cpu(), reconstructions.cpu())
    run.add_artifact(run.path("reconstructions.png"), "originals (top) and the VAE's reconstructions (bottom)")
    if losses:
        plot_losses(run.path("loss.png"), losses, pixels)
        run.add_artifact(run.path("loss.png"), "sigma-VAE loss per picture element")
    print("reconstruction PSNR (dB): " + ", ".join(f"{k} {v}" for k, v in scores.items()))
    run.finish({"psnr_db": scores, "min_psnr_db": min(scores.values()), "steps": step,
                "final_loss_per_element": losses[-1] / pixels if losses else None,
                "output_sigma": float(output_variance(model.sigma.detach()).sqrt())},
               status="interrupted" if guard.requested else "complete")


if __name__ == "__main__":
    main()
