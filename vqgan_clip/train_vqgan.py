"""Train a small VQGAN on the shapes world. Run: python -m vqgan_clip.train_vqgan [--quick]

The article's VQGAN (Esser et al. 2021) is an encoder, a codebook and a decoder; VQGAN+CLIP
optimises the latent grid that the decoder paints. This trains the same `vqgan.VQModel` (the
taming layout, so the shipped weights load with the same code as the official checkpoints) at a
small size: 32 channels, one downsampling factor of 4 (64x64 pictures -> a 16x16 grid of codes), a
small codebook. The loss is reconstruction (L1 + squared error) plus the VQ codebook and
commitment terms (VQ-VAE, van den Oord et al. 2017, eq. 3). The adversarial and perceptual
(LPIPS) terms of the paper are left out: there are no LPIPS weights offline, and on flat-coloured
shapes the discriminator buys little sharpness for twice the compute on 2 CPU cores.

Codes that go unused are restarted on random encoder outputs every RESTART_EVERY steps (a common
remedy for codebook collapse, e.g. Dhariwal et al. 2020, "Jukebox", section 3.2).
Reports held-out PSNR and the share of the codebook used on held-out scenes.
With SHIP=true, writes vqgan.yaml + vqgan.pt to data/vqgan_clip_small/.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, check_compatible, load_checkpoint, save_checkpoint
from lab.paths import REPO_ROOT
from lab.plots import save_figure
from lab.schedules import cosine_factor
from vqgan_clip import shapes_world as world
from vqgan_clip.vqgan import VQModel

# -----------------------------------------------------------------------------
# Constants. Sized to train in ~10-15 minutes on one shared CPU core; --set changes any of them.
TRAIN_SCENES = 8000        # training pictures, rendered once
STEPS = 1200               # optimisation steps
BATCH_SIZE = 8             # pictures per step
LEARNING_RATE = 1e-3       # Adam step size (cosine decay to 10 % at the end)
CHANNELS = 32              # taming "ch" (a multiple of 32: GroupNorm uses 32 groups)
CH_MULT = [1, 1, 1]        # taming "ch_mult": 3 levels -> downsampling factor 4 (16x16 codes)
NUM_RES_BLOCKS = 0         # ResNet blocks per encoder level (the decoder has one more)
Z_CHANNELS = 32            # encoder output channels
EMBED_DIM = 16             # code vector width
N_EMBED = 128              # codebook size
BETA = 0.25                # commitment weight (VQ-VAE, eq. 3; taming's default)
RESTART_EVERY = 100        # restart codes unused during the last this many steps (0: never)
EVAL_SCENES = 256          # held-out test scenes for PSNR and codebook usage
SHIP = False               # write vqgan.yaml + vqgan.pt to SHIP_DIR (the shipped small model)
SHIP_DIR = "data/vqgan_clip_small"
TORCH_THREADS = 1          # torch CPU threads (0: torch's default). 1 is fastest on a shared 2-core machine
SEED = 0                   # -1 draws a random seed and prints it
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"TRAIN_SCENES": 1000, "STEPS": 60, "EVAL_SCENES": 64, "N_EMBED": 32, "RESTART_EVERY": 20}
DRY_RUN = {"TRAIN_SCENES": 64, "STEPS": 2, "EVAL_SCENES": 16, "BATCH_SIZE": 4}
# -----------------------------------------------------------------------------

ARCHITECTURE = ["CHANNELS", "CH_MULT", "NUM_RES_BLOCKS", "Z_CHANNELS", "EMBED_DIM", "N_EMBED"]


def vqgan_config(cfg) -> dict:
    """The model in the layout of taming's configs/model.yaml (what VQModel.from_config reads)."""
    ddconfig = {"double_z": False, "z_channels": cfg.Z_CHANNELS, "resolution": world.IMAGE_SIZE, "in_channels": 3,
                "out_ch": 3, "ch": cfg.CHANNELS, "ch_mult": list(cfg.CH_MULT), "num_res_blocks": cfg.NUM_RES_BLOCKS,
                "attn_resolutions": [], "dropout": 0.0}
    return {"model": {"target": "taming.models.vqgan.VQModel",
                      "params": {"embed_dim": cfg.EMBED_DIM, "n_embed": cfg.N_EMBED, "ddconfig": ddconfig}}}


def to_tensor(images_uint8: np.ndarray, device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], taming's image range."""
    return torch.as_tensor(images_uint8, device=device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, for images in [-1, 1] (peak-to-peak 2)."""
    mse = ((reconstruction.clamp(-1, 1) - target) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def evaluate(model: VQModel, images: np.ndarray, device, batch: int = 64) -> tuple[dict, torch.Tensor]:
    """Held-out PSNR (mean dB) and the share of codes used; returns the reconstructions too."""
    model.eval()
    values, used, reconstructions = [], torch.zeros(model.n_embed, dtype=torch.bool), []
    for start in range(0, len(images), batch):
        x = to_tensor(images[start:start + batch], device)
        z_q, _, indices = model.encode(x)
        y = model.decode(z_q)
        values.append(psnr(y, x).cpu())
        used[indices.flatten().cpu()] = True
        reconstructions.append(y.clamp(-1, 1).cpu())
    model.train()
    return ({"held_out_psnr_db": float(torch.cat(values).mean()), "codebook_usage": float(used.float().mean()),
             "codes_used": int(used.sum())}, torch.cat(reconstructions))


@torch.no_grad()
def restart_dead_codes(model: VQModel, counts: torch.Tensor, latents: torch.Tensor) -> int:
    """Move codes not chosen since the last restart onto random encoder outputs of this batch."""
    dead = (counts == 0).nonzero().flatten()
    if len(dead) == 0:
        return 0
    flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    picks = torch.randint(len(flat), (len(dead),), device=flat.device)
    model.quantize.embedding.weight.data[dead] = flat[picks] + 1e-3 * torch.randn_like(flat[picks])
    return len(dead)


def plot_reconstructions(path: Path, originals: np.ndarray, reconstructions: torch.Tensor) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(8, len(originals))
    fig, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.4))
    for k in range(count):
        axes[0, k].imshow(originals[k])
        recon = ((reconstructions[k].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
        axes[1, k].imshow(recon)
        axes[0, k].axis("off")
        axes[1, k].axis("off")
    axes[0, 0].set_title("held-out scene", fontsize=8, loc="left")
    axes[1, 0].set_title("VQGAN reconstruction", fontsize=8, loc="left")
    return save_figure(fig, path, dpi=100)


def ship(model: VQModel, config: dict, cfg) -> Path:
    target = Path(cfg.SHIP_DIR) if Path(cfg.SHIP_DIR).is_absolute() else REPO_ROOT / cfg.SHIP_DIR
    target.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, target / "vqgan.pt")
    (target / "vqgan.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"shipped {target / 'vqgan.pt'} ({(target / 'vqgan.pt').stat().st_size / 1e6:.2f} MB)")
    return target / "vqgan.pt"


@exit_on_lab_error
def main(argv=None):
    run = start_run("vqgan_clip", globals(), argv, framework="torch")
    cfg = run.cfg
    if cfg.BATCH_SIZE < 1 or cfg.TRAIN_SCENES < cfg.BATCH_SIZE:
        raise LabError(f"BATCH_SIZE={cfg.BATCH_SIZE} must be >= 1 and <= TRAIN_SCENES={cfg.TRAIN_SCENES}")
    if cfg.NUM_RES_BLOCKS == 0 and any(m != cfg.CH_MULT[0] for m in cfg.CH_MULT):
        raise LabError(f"NUM_RES_BLOCKS=0 needs equal CH_MULT entries (got {cfg.CH_MULT}): only ResNet blocks "
                       "change the width between levels; use NUM_RES_BLOCKS=1 or CH_MULT=[1, 1, 1]")
    device = torch.device(run.device)
    config = vqgan_config(cfg)
    model = VQModel.from_config(config).to(device)
    model.quantize.beta = cfg.BETA
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.LEARNING_RATE, betas=(0.5, 0.9))
    print(f"small VQGAN: f{model.downsampling_factor}, {parameter_count(model) / 1e6:.2f} M parameters, "
          f"codebook {cfg.N_EMBED}x{cfg.EMBED_DIM}")
    train_images = world.render_scenes(world.make_scenes("train", 0, cfg.TRAIN_SCENES, seed=cfg.SEED))
    eval_images = world.render_scenes(world.make_scenes("test", 0, cfg.EVAL_SCENES, seed=cfg.SEED))

    path, step, losses = run.checkpoint_path("vqgan.pt"), 0, []
    if path.exists() and not run.fresh:
        checkpoint = load_checkpoint(path)
        check_compatible(checkpoint["constants"], run.constants, ARCHITECTURE, path)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, losses = checkpoint["step"], checkpoint.get("losses", [])
        print(f"resumed from {path} at step {step}")
    before = evaluate(model, eval_images, device)[0] if step == 0 else None
    rng = np.random.default_rng([cfg.SEED, step])
    counts = torch.zeros(cfg.N_EMBED, dtype=torch.long, device=device)
    restarted = 0
    loop_start = time.time()
    with InterruptGuard() as guard, tqdm(range(step, cfg.STEPS), initial=step, total=cfg.STEPS, desc="VQGAN") as bar:
        for step in bar:
            # Cosine decay of the step size from LEARNING_RATE to a tenth of it.
            lr = cfg.LEARNING_RATE * cosine_factor(step, cfg.STEPS, final_fraction=0.1)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = to_tensor(train_images[rng.choice(len(train_images), cfg.BATCH_SIZE, replace=False)], device)
            latents = model.encode_unquantized(x)
            if step == 0:  # start the codebook on encoder outputs rather than near zero
                restart_dead_codes(model, counts, latents.detach())
            z_q, vq_terms, indices = model.quantize(latents)
            y = model.decode(z_q)
            # Reconstruction (L1 + squared error) plus the VQ terms: codebook + beta * commitment.
            reconstruction = F.l1_loss(y, x) + F.mse_loss(y, x)
            loss = reconstruction + vq_terms["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            counts += torch.bincount(indices.flatten(), minlength=cfg.N_EMBED)
            if cfg.RESTART_EVERY and (step + 1) % cfg.RESTART_EVERY == 0 and step + 1 < cfg.STEPS * 0.9:
                restarted += restart_dead_codes(model, counts, latents.detach())
                counts.zero_()
            losses.append(float(reconstruction.detach()))
            batch_psnr = float(psnr(y.detach(), x).mean())
            bar.set_postfix(psnr=f"{batch_psnr:.1f}dB", vq=f"{float(vq_terms['total']):.4f}")
            if guard.requested:
                break
        step += 1
    train_seconds = time.time() - loop_start
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                           "constants": run.constants, "losses": losses, "config": config})
    metrics, reconstructions = evaluate(model, eval_images, device)
    metrics.update(train_seconds=round(train_seconds, 1), steps=step, codes_restarted=restarted,
                   parameters_millions=parameter_count(model) / 1e6)
    if before is not None:
        metrics["untrained_held_out_psnr_db"] = before["held_out_psnr_db"]
    for name, value in metrics.items():
        print(f"  {name}: {value}")
    if cfg.SHIP:
        metrics["shipped_mb"] = ship(model, config, cfg).stat().st_size / 1e6
    run.add_artifact(plot_reconstructions(run.path("reconstructions.png"), eval_images, reconstructions),
                     f"held-out scenes and their reconstructions ({metrics['held_out_psnr_db']:.1f} dB)")
    run.finish(metrics, status="interrupted" if guard.requested else "complete")
    return metrics


def parameter_count(model) -> int:  # noqa: N802 - reads like the symbol in the text
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    main()
