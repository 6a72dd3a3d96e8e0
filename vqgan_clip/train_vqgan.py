"""Train a small VQGAN on the shapes world. Run: python -m vqgan_clip.train_vqgan [--quick]

The same `vqgan.VQModel` as the official checkpoints (Esser et al. 2021), small: 32 channels,
factor 4 (64x64 pictures -> 16x16 codes). Loss: L1 + squared error plus the VQ codebook and
commitment terms (VQ-VAE, van den Oord et al. 2017, eq. 3); no adversarial or LPIPS terms (no LPIPS
weights offline; on flat shapes the discriminator buys little for twice the compute). Unused codes
are restarted on encoder outputs every RESTART_EVERY steps (Dhariwal et al. 2020, "Jukebox", 3.2).
Reports held-out PSNR and codebook usage; SHIP=true writes vqgan.yaml + vqgan.pt to SHIP_DIR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from lab import LabError, exit_on_lab_error
from lab.checkpoint import resume, save_checkpoint
from lab.plots import save_figure
from lab.schedules import cosine_factor
from vqgan_clip import shapes_world as world
from vqgan_clip import training
from vqgan_clip.vqgan import VQModel, parameter_count

# -----------------------------------------------------------------------------
# Constants. Sized to train in ~10-15 minutes on one shared CPU core; --set changes any of them.
TRAIN_SCENES = 8000        # training pictures, rendered once {> 0}
STEPS = 1200               # optimisation steps {> 0}
BATCH_SIZE = 8             # pictures per step {> 0}
LEARNING_RATE = 1e-3       # Adam step size (cosine decay to 10 % at the end) {> 0}
CHANNELS = 32              # taming "ch" (a multiple of 32: GroupNorm uses 32 groups) {> 0}
CH_MULT = [1, 1, 1]        # taming "ch_mult": 3 levels -> downsampling factor 4 (16x16 codes)
NUM_RES_BLOCKS = 0         # ResNet blocks per encoder level (the decoder has one more) {>= 0}
Z_CHANNELS = 32            # encoder output channels {> 0}
EMBED_DIM = 16             # code vector width {> 0}
N_EMBED = 128              # codebook size {> 0}
BETA = 0.25                # the VQ loss's beta (taming's VectorQuantizer2, legacy=True as VQModel trains) {>= 0}
RESTART_EVERY = 100        # restart codes unused during the last this many steps (0: never) {>= 0}
EVAL_SCENES = 256          # held-out test scenes for PSNR and codebook usage {> 0}
CHECKPOINT_EVERY = 200     # save a checkpoint every this many steps (a kill loses at most these) {> 0}
SHIP = False               # write vqgan.yaml + vqgan.pt to SHIP_DIR (the shipped small model)
SHIP_DIR = "data/vqgan_clip_small"  # where SHIP writes {nonempty}
TORCH_THREADS = 1          # torch CPU threads (0: torch's default). 1 is fastest on a shared 2-core machine {>= 0}
SEED = 0                   # -1 draws a random seed and prints it
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"TRAIN_SCENES": 1000, "STEPS": 60, "EVAL_SCENES": 64, "N_EMBED": 32, "RESTART_EVERY": 20,
         "CHECKPOINT_EVERY": 20}
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
    target = training.ship_folder(cfg)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, target / "vqgan.pt")
    (target / "vqgan.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"shipped {target / 'vqgan.pt'} ({(target / 'vqgan.pt').stat().st_size / 1e6:.2f} MB)")
    return target / "vqgan.pt"


def check_settings(cfg) -> None:
    if cfg.TRAIN_SCENES < cfg.BATCH_SIZE:
        raise LabError(f"BATCH_SIZE={cfg.BATCH_SIZE} must be <= TRAIN_SCENES={cfg.TRAIN_SCENES}")
    if cfg.NUM_RES_BLOCKS == 0 and any(m != cfg.CH_MULT[0] for m in cfg.CH_MULT):
        raise LabError(f"NUM_RES_BLOCKS=0 needs equal CH_MULT entries (got {cfg.CH_MULT}): only ResNet blocks "
                       "change the width between levels; use NUM_RES_BLOCKS=1 or CH_MULT=[1, 1, 1]")


def build(cfg, device):
    """The model (from its settings, the taming model.yaml dict stored in the checkpoint) and Adam."""
    config = vqgan_config(cfg)
    model = VQModel.from_config(config).to(device)
    model.quantize.beta = cfg.BETA
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.LEARNING_RATE, betas=(0.5, 0.9))
    print(f"small VQGAN: f{model.downsampling_factor}, {parameter_count(model) / 1e6:.2f} M parameters, "
          f"codebook {cfg.N_EMBED}x{cfg.EMBED_DIM}")
    return config, model, optimizer


def train(run, model, optimizer, ckpt, train_images, config, device) -> tuple[dict, bool]:
    """The optimisation loop, saving every CHECKPOINT_EVERY steps; returns (progress, interrupted)."""
    cfg = run.cfg
    state = ckpt.state or {}
    progress = {"losses": state.get("losses", []), "restarted": state.get("restarted", 0),
                "seconds": state.get("seconds", 0.0)}
    counts = state.get("counts", torch.zeros(cfg.N_EMBED, dtype=torch.long)).to(device)

    def save(done: int, seconds: float) -> None:
        save_checkpoint(ckpt.path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "losses": progress["losses"], "restarted": progress["restarted"],
                                    "counts": counts.cpu(), "config": config, "seconds": seconds, **ckpt.meta(done)})

    def one_step(step: int, bar) -> None:
        # Cosine decay of the step size from LEARNING_RATE to a tenth of it.
        lr = cfg.LEARNING_RATE * cosine_factor(step, cfg.STEPS, final_fraction=0.1)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # The batch of each step comes from its own seeded draw, so a resumed run sees the same batches.
        picks = np.random.default_rng([cfg.SEED, step]).choice(len(train_images), cfg.BATCH_SIZE, replace=False)
        x = to_tensor(train_images[picks], device)
        latents = model.encode_unquantized(x)
        if step == 0:  # start the codebook on encoder outputs rather than near zero
            restart_dead_codes(model, counts, latents.detach())
        z_q, vq_terms, indices = model.quantize(latents)
        y = model.decode(z_q)
        # Reconstruction (L1 + squared error) plus the VQ terms (vqgan.VectorQuantizer, taming's legacy form).
        reconstruction = F.l1_loss(y, x) + F.mse_loss(y, x)
        loss = reconstruction + vq_terms["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        counts.add_(torch.bincount(indices.flatten(), minlength=cfg.N_EMBED))
        if cfg.RESTART_EVERY and (step + 1) % cfg.RESTART_EVERY == 0 and step + 1 < cfg.STEPS * 0.9:
            progress["restarted"] += restart_dead_codes(model, counts, latents.detach())
            counts.zero_()
        progress["losses"].append(float(reconstruction.detach()))
        batch_psnr = float(psnr(y.detach(), x).mean())
        bar.set_postfix(psnr=f"{batch_psnr:.1f}dB", vq=f"{float(vq_terms['total'].detach()):.4f}")
        run.log_scalars(step, loss=float(loss.detach()), psnr=batch_psnr, lr=lr)

    return progress, training.run_steps(cfg, ckpt, progress, "VQGAN", one_step, save)


def report(run, model, config, progress, before, eval_images, device, interrupted) -> dict:
    metrics, reconstructions = evaluate(model, eval_images, device)
    metrics.update(train_seconds=round(progress["seconds"], 1), steps=progress["steps"],
                   codes_restarted=progress["restarted"], parameters_millions=parameter_count(model) / 1e6)
    if before is not None:
        metrics["untrained_held_out_psnr_db"] = before["held_out_psnr_db"]
    run.add_artifact(plot_reconstructions(run.path("reconstructions.png"), eval_images, reconstructions),
                     f"held-out scenes and their reconstructions ({metrics['held_out_psnr_db']:.1f} dB)")
    return training.finish(run, metrics, interrupted, lambda: ship(model, config, run.cfg))


@exit_on_lab_error
def main(argv=None):
    run, device = training.start(globals(), argv, check_settings)
    cfg = run.cfg
    config, model, optimizer = build(cfg, device)
    train_images = world.render_scenes(world.make_scenes("train", 0, cfg.TRAIN_SCENES, seed=cfg.SEED))
    eval_images = world.render_scenes(world.make_scenes("test", 0, cfg.EVAL_SCENES, seed=cfg.SEED))
    ckpt = resume(run, "vqgan.pt", architecture=ARCHITECTURE + ["TRAIN_SCENES", "SEED"], steps=cfg.STEPS,
                  map_location=device)
    if ckpt.state is not None:
        model.load_state_dict(ckpt.state["model"])
        optimizer.load_state_dict(ckpt.state["optimizer"])
    before = evaluate(model, eval_images, device)[0] if ckpt.step == 0 else None
    progress, interrupted = train(run, model, optimizer, ckpt, train_images, config, device)
    return report(run, model, config, progress, before, eval_images, device, interrupted)


if __name__ == "__main__":
    main()
