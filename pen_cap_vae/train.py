"""Train the article's sigma-VAE on the date's pictures (article 000: "first train the VAE in train.py").

Run: python -m pen_cap_vae.train [--quick] [--set STEPS=5000] [--fresh]

The optimiser, its schedule and the number of steps are ours (the article gives none). Rerunning resumes
(with the random generators: the uninterrupted numbers); Ctrl+C saves; a NaN loss keeps the last good checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, load_checkpoint, resume, save_checkpoint
from lab.constants import settings_from
from lab.plots import save_figure
from lab.run import start_cell
from lab.schedules import cosine_factor
from pen_cap_vae.claims import RECONSTRUCTION_GOAL_DB
from pen_cap_vae.data import load_pictures
from pen_cap_vae.model import VAE_CHECKPOINT_NAME, VAESettings, output_variance, reconstructions_and_psnr, vae_step

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
PICTURES_DIR = ""       # folder of the pictures ("" = data/pen_cap/, drawn by pen_cap_vae.draw_pictures)
IMAGE_HEIGHT = 360      # pictures are resized to this height (article: 360) {> 0}
IMAGE_WIDTH = 640       # ... and this width (article: 640) {> 0}
PATCH = 10              # kernel and stride of the first/last convolution (article: 10x10, stride 10) {> 0}
LAYERS = 20             # gated residual 3x3 layers in each encoder and in the decoder (article: 20) {>= 0}
CHANNELS = 128          # channels of those layers before the GLU halves them (article: 128) {>= 4}
CODE_CHANNELS = 8       # channels of the latent code (article: 8, a 8x36x64 code) {> 0}
SIGMA_MODE = "learned"  # "learned": the article's sigma; "optimal": Rybkin et al. 2021's analytic variance
STEPS = 3000            # optimisation steps (not in the article: our choice) {> 0}
LEARNING_RATE = 5e-4    # Adam's step size for the networks (not in the article: our choice) {> 0}
SIGMA_LEARNING_RATE = 0.05  # Adam's step size for `sigma` alone (ours): at 1e-3 it needs ~10^4 steps {> 0}
FINAL_LR_FRACTION = 0.05  # both step sizes decay along a cosine to this fraction at STEPS (ours) {> 0, <= 1}
CLIP_PERCENTILE = 90.0  # gradients are clipped to this percentile of the past norms (AutoClip); 0: off {>= 0, <= 100}
CHECKPOINT_EVERY = 100  # steps between checkpoints (a kill loses at most this many) {> 0}
MIXED_PRECISION = False  # bfloat16 autocast for the forward pass (for GPUs; see pen_cap_vae.bench for figures)
CHANNELS_LAST = False   # NHWC memory layout for the convolutions (for GPUs; see pen_cap_vae.bench)
TORCH_THREADS = 0       # CPU threads for torch (0: torch's default); 1 is far faster on a busy machine {>= 0}
SEED = 0                # -1 draws a random seed and prints it {>= -1}
DEVICE = "auto"         # "auto" (CUDA if available), "cpu" or "cuda"
# The quick model is small and short-trained: it does not spike, and a decay would only slow it. Its
# code has 4 channels: the recoder's short quick date then follows the pictures' codes. 1000 steps at 4e-3:
# at 400 steps 5 of 11 seeds stayed below 28 dB, at 3e-3 seed 6 sticks at 20 dB even after 1200 (README).
QUICK = {"TORCH_THREADS": 1, "IMAGE_HEIGHT": 90, "IMAGE_WIDTH": 160, "LAYERS": 3, "CHANNELS": 32, "CODE_CHANNELS": 4,
         "STEPS": 1000, "LEARNING_RATE": 4e-3, "FINAL_LR_FRACTION": 1.0, "CHECKPOINT_EVERY": 100}
DRY_RUN = {"IMAGE_HEIGHT": 30, "IMAGE_WIDTH": 50, "LAYERS": 2, "CHANNELS": 16, "STEPS": 3, "CHECKPOINT_EVERY": 2}
# -----------------------------------------------------------------------------

# The constants a checkpoint must share with this run to be resumed: those of VAESettings.
ARCHITECTURE = ["IMAGE_HEIGHT", "IMAGE_WIDTH", "PATCH", "LAYERS", "CHANNELS", "CODE_CHANNELS", "SIGMA_MODE"]


def check_constants(cfg) -> None:
    if cfg.SIGMA_MODE not in ("learned", "optimal"):
        raise LabError(f"SIGMA_MODE must be 'learned' or 'optimal', got {cfg.SIGMA_MODE!r}")
    if cfg.CHANNELS % 4:
        raise LabError(f"CHANNELS must be a positive multiple of 4 (GroupNorm(2) after a GLU), got {cfg.CHANNELS}")


class Training:
    """The model, its optimiser and the history a checkpoint carries."""

    def __init__(self, run, cfg, settings: VAESettings, pictures: torch.Tensor):
        self.settings = settings
        self.model = self.settings.build().to(run.device)
        self.pictures = pictures
        if cfg.CHANNELS_LAST:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.pictures = pictures.contiguous(memory_format=torch.channels_last)
        networks = [p for name, p in self.model.named_parameters() if name != "sigma"]
        groups = [{"params": networks}, {"params": [self.model.sigma], "lr": cfg.SIGMA_LEARNING_RATE}]
        self.optimizer = torch.optim.Adam(groups, lr=cfg.LEARNING_RATE)
        self.losses, self.gradient_norms, self.step = [], [], 0

    def load(self, state: dict, step: int) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.losses, self.gradient_norms = list(state["losses"]), list(state["gradient_norms"])
        self.step = step

    def checkpoint(self, meta: dict) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "settings": asdict(self.settings), "losses": self.losses, "gradient_norms": self.gradient_norms,
                **meta}


def train(run, cfg, training: Training, ckpt) -> bool:
    """The optimisation loop from the resumed step; True when Ctrl+C stopped it."""
    pixels = training.pictures[0].numel()
    sigma = training.model.sigma
    with InterruptGuard() as guard, tqdm(total=cfg.STEPS, initial=training.step, desc="VAE", mininterval=2) as bar:
        while training.step < cfg.STEPS:
            factor = cosine_factor(training.step, cfg.STEPS, cfg.FINAL_LR_FRACTION)
            for group, base in zip(training.optimizer.param_groups, (cfg.LEARNING_RATE, cfg.SIGMA_LEARNING_RATE),
                                   strict=True):
                group["lr"] = base * factor
            loss = vae_step(training.model, training.optimizer, training.pictures, training.gradient_norms,
                            cfg.CLIP_PERCENTILE, cfg.MIXED_PRECISION)
            if not math.isfinite(loss):
                saved = f"the last good checkpoint (step {load_checkpoint(ckpt.path)['step']}) is kept at " \
                        f"{ckpt.path}" if ckpt.path.exists() else "no checkpoint was saved yet"
                raise LabError(f"the loss became {loss} at step {training.step + 1}; {saved}. Lower LEARNING_RATE "
                               f"(now {cfg.LEARNING_RATE}) and rerun to resume, or --fresh to start over")
            training.losses.append(loss)
            training.step += 1
            output_sigma = float(output_variance(sigma.detach()).sqrt())
            run.log_scalars(training.step, loss_per_element=loss / pixels, output_sigma=output_sigma,
                            learning_rate=cfg.LEARNING_RATE * factor)
            bar.update(1)
            bar.set_postfix(loss_per_element=f"{loss / pixels:.4f}", sigma=f"{output_sigma:.4f}")
            stop = guard.requested  # read once: a Ctrl+C between two reads would stop without saving
            if training.step % cfg.CHECKPOINT_EVERY == 0 or training.step == cfg.STEPS or stop:
                save_checkpoint(ckpt.path, training.checkpoint(ckpt.meta(training.step)))
            if stop:
                return True
    return False


def plot_losses(path, losses: list[float], pixels: int) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(losses) + 1), np.asarray(losses) / pixels, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("sigma-VAE loss per picture element")
    ax.set_title("VAE training loss (lower is better; it may go negative as sigma shrinks)")
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=100)


def report(run, training: Training, paths, interrupted: bool) -> None:
    """Reconstructions, the loss curve, PSNR per picture, run.json."""
    model, pictures = training.model.eval(), training.pictures
    reconstructions, values = reconstructions_and_psnr(model, pictures)
    scores = {p.name: round(v, 2) for p, v in zip(paths, values, strict=True)}
    grid = torch.cat([torch.cat(list(batch), dim=2) for batch in (pictures, reconstructions)], dim=1).clamp(0.0, 1.0)
    image = (grid.permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)  # originals above
    Image.fromarray(image).save(run.path("reconstructions.png"))
    run.add_artifact(run.path("reconstructions.png"), "originals (top) and the VAE's reconstructions (bottom)")
    pixels = pictures[0].numel()
    if training.losses:
        plot_losses(run.path("loss.png"), training.losses, pixels)
        run.add_artifact(run.path("loss.png"), "sigma-VAE loss per picture element")
    print("reconstruction PSNR (dB): " + ", ".join(f"{k} {v}" for k, v in scores.items()))
    worst = min(scores.values())
    # One VAE is one seed: pen_cap_vae.seeds judges the article's claim over several (README).
    print(f"worst picture {worst:.1f} dB (the bar for seeing the pen and the cap: {RECONSTRUCTION_GOAL_DB:.0f} dB)")
    run.finish({"psnr_db": scores, "min_psnr_db": worst, "steps": training.step,
                "final_loss_per_element": training.losses[-1] / pixels if training.losses else None,
                "output_sigma": float(output_variance(model.sigma.detach()).sqrt())},
               status="interrupted" if interrupted else "complete")


def train_cell(*, constants: dict[str, Any], folder: str, device: str, profile: str) -> dict[str, Any]:
    """One more seed's VAE, as a lab.executor cell (pen_cap_vae.seeds): this script's training with `constants`
    (its own SEED), checkpoint and curves in `folder`; resumed when the folder holds one. Seeded as main() is,
    so the weights equal those of `--set SEED=s`. Ctrl+C saves, then stops the caller too."""
    run = start_cell(constants, folder, Path(folder) / "vae_curves", "torch", device, profile)
    cfg = SimpleNamespace(**constants)
    check_constants(cfg)
    settings = settings_from(VAESettings, cfg)
    pictures, _, fingerprint = load_pictures(cfg.PICTURES_DIR, settings, device)
    training = Training(run, cfg, settings, pictures)
    ckpt = resume(run, VAE_CHECKPOINT_NAME, architecture=ARCHITECTURE, steps=cfg.STEPS, data=fingerprint,
                  map_location=device)
    if ckpt.state is not None:
        training.load(ckpt.state, ckpt.step)
    interrupted = train(run, cfg, training, ckpt)
    run.close()
    if interrupted:
        raise KeyboardInterrupt
    return {"steps": training.step}


@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv, framework="torch", checkpoints=True)
    cfg = run.cfg
    check_constants(cfg)
    settings = settings_from(VAESettings, cfg)
    pictures, paths, fingerprint = load_pictures(cfg.PICTURES_DIR, settings, run.device)
    print(f"training on {len(paths)} pictures: {', '.join(p.name for p in paths)}")
    training = Training(run, cfg, settings, pictures)
    ckpt = resume(run, VAE_CHECKPOINT_NAME, architecture=ARCHITECTURE, steps=cfg.STEPS, data=fingerprint,
                  map_location=run.device)
    if ckpt.state is not None:
        training.load(ckpt.state, ckpt.step)
    interrupted = train(run, cfg, training, ckpt)
    report(run, training, paths, interrupted)


if __name__ == "__main__":
    main()
