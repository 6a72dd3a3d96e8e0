"""A DCGAN on digits or faces, scored every epoch by the judge. Run: python -m gan_basics.gan [--quick]

Article 004 ("Když stojí AI proti AI"): a generator makes images from random noise, a discriminator
learns to tell them from real ones, and the generator learns only from the discriminator's verdict,
never seeing a real image. The article names two troubles, both made measurable here:

- mode collapse, and its remedy: "the generator is penalised when its outputs are too alike".
  DIVERSITY_PENALTY=true adds EBGAN's pulling-away term (model.pulling_away_term) to the
  generator's loss, computed on the discriminator's penultimate features of the fake batch. The
  effect is reported as the samples' mean pairwise distance as a fraction of the real data's
  (1.0 = as varied as real digits) and, on digits, as the entropy of the judge's labels.
- not knowing when to stop: the judge's Fréchet distance to held-out real images is computed every
  epoch and the generator with the lowest distance is kept (checkpoint *_best.pt, grid best.png).

Outputs (outputs/gan_basics/gan_<dataset>[_diversity]/): fixed-noise sample grids per epoch
(samples/epoch_0001.png ...) and their GIF, losses.png, frechet.png, best.png, samples_best.npy,
run.json. Rerunning resumes from the last checkpoint; --fresh starts over.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from gan_basics.data import DATASETS, load_dataset
from gan_basics.evaluator import build_judge, mean_pairwise_distance
from gan_basics.model import Discriminator, Generator, init_dcgan_weights, pulling_away_term
from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import (
    InterruptGuard,
    check_compatible,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from lab.constants import resolve_constants
from lab.media import write_gif
from lab.plots import save_figure
from lab.run import build_parser

# -----------------------------------------------------------------------------
# Constants. The article gives no numbers; the optimiser follows DCGAN (Radford et al. 2015:
# Adam, beta1 = 0.5, LeakyReLU 0.2, N(0, 0.02) weights), the sizes fit a 2-core CPU.
DATASET = "digits"         # "digits" (sklearn, 8x8) or "faces" (skimage lfw_subset, 25x25)
EPOCHS = 60                # passes over the training images (the best epoch came at 46 of 60)
BATCH_SIZE = 32            # images per step (DCGAN: 128; our data sets hold 80 to 1437 images)
LATENT_DIM = 32            # length of the noise vector z (DCGAN: 100)
G_WIDTH = 32               # channels of the generator's last hidden layer
D_WIDTH = 32               # channels of the discriminator's first layer
D_DROPOUT = 0.3            # dropout in the discriminator against memorising the training images
LEARNING_RATE = 2e-3       # Adam's step size for both players (DCGAN: 2e-4; measured: 5e-4 was 7x worse after 25 epochs)
BETA1 = 0.5                # Adam's first-moment decay (DCGAN)
REAL_TARGET = 0.9          # D's target for real images: 0.9 is one-sided label smoothing (Salimans 2016)
LR_DECAY = True            # decay both step sizes linearly to 0 over EPOCHS (settles the game late on)
DIVERSITY_PENALTY = False  # the article's remedy for mode collapse: penalise too-similar outputs
DIVERSITY_WEIGHT = 1.0     # weight of the pulling-away term in the generator's loss (EBGAN: 0.1)
GRID_SIDE = 8              # the fixed-noise grid is GRID_SIDE x GRID_SIDE samples
GIF_FPS = 6                # frames per second of the grid GIF
RESUME_FROM = ""           # a checkpoint (.pt) to continue from instead of this run's own
TORCH_THREADS = 1          # CPU threads; one is fastest for nets this small on a shared 2-core CPU
SEED = 0                   # -1 draws a random seed and prints it
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"EPOCHS": 12}
DRY_RUN = {"EPOCHS": 2, "GRID_SIDE": 4}
# -----------------------------------------------------------------------------

# Constants a checkpoint must share with the run that resumes it: the data and the architecture.
ARCHITECTURE = ["DATASET", "LATENT_DIM", "G_WIDTH", "D_WIDTH", "CONDITIONAL"]


def resolved_constants(namespace: dict, argv) -> dict:
    """The constants this command line asks for, before start_run (to name the output folder)."""
    args, _ = build_parser(namespace, "gan").parse_known_args(argv)
    profile = "dry_run" if args.dry_run else "quick" if args.quick else "full"
    return resolve_constants(namespace, args.overrides, profile)


def output_name(constants: dict, conditional: bool) -> str:
    if constants["DATASET"] not in DATASETS:
        raise LabError(f"unknown dataset {constants['DATASET']!r}; valid: {', '.join(DATASETS)}")
    if conditional:
        return "cgan"
    return f"gan_{constants['DATASET']}" + ("_diversity" if constants["DIVERSITY_PENALTY"] else "")


def tile(images: np.ndarray, columns: int, min_side: int = 320) -> np.ndarray:
    """A grid of (N, 1, H, W) images in [-1, 1] as an 8-bit picture, scaled up without blurring."""
    count, _, height, width = images.shape
    rows = math.ceil(count / columns)
    sheet = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1), dtype=np.float32)
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        top, left = 1 + row * (height + 1), 1 + col * (width + 1)
        sheet[top : top + height, left : left + width] = (image[0] + 1.0) / 2.0
    scale = max(1, math.ceil(min_side / max(sheet.shape)))
    sheet = np.kron(sheet, np.ones((scale, scale), dtype=np.float32))
    return (np.clip(sheet, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def save_grid(images: np.ndarray, columns: int, path: Path) -> Path:
    Image.fromarray(tile(images, columns)).save(path)
    return path


def label_entropy(labels: np.ndarray, classes: int = 10) -> float:
    """Entropy of the judge's label histogram over log(classes): 1 = every digit equally often."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    share = counts[counts > 0] / counts.sum()
    return float(-(share * np.log(share)).sum() / np.log(classes))


class Collapsed(LabError):
    """The losses became NaN or infinite."""


def train_and_report(run, conditional: bool) -> None:
    """Train a (conditional) GAN with the run's constants, score it every epoch, write the report."""
    cfg = run.cfg
    device = torch.device(run.device)
    data = load_dataset(cfg.DATASET)
    if conditional and data.train_labels is None:
        raise LabError(f"a conditional GAN needs labels; {cfg.DATASET!r} has none. Use --set DATASET=digits")
    judge = build_judge(cfg.DATASET)
    classes = data.num_classes if conditional else 0
    generator = Generator(cfg.LATENT_DIM, data.image_shape, cfg.G_WIDTH, classes).to(device)
    discriminator = Discriminator(data.image_shape, cfg.D_WIDTH, classes, cfg.D_DROPOUT).to(device)
    generator.apply(init_dcgan_weights)
    discriminator.apply(init_dcgan_weights)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.LEARNING_RATE, betas=(cfg.BETA1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.LEARNING_RATE, betas=(cfg.BETA1, 0.999))
    constants = dict(run.constants, CONDITIONAL=conditional)

    name = run.out_dir.name
    last_path, best_path = run.checkpoint_path(f"{name}_last.pt"), run.checkpoint_path(f"{name}_best.pt")
    samples_dir = run.path("samples", "x").parent
    history = {"loss_d": [], "loss_g": [], "diversity_term": [], "frechet": [], "judge": []}
    best = {"epoch": 0, "frechet": math.inf}
    start_epoch = 0
    resume = Path(cfg.RESUME_FROM) if cfg.RESUME_FROM else (last_path if last_path.exists() and not run.fresh else None)
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        check_compatible(checkpoint["constants"], constants, ARCHITECTURE, resume)
        load_state_dict_strict(generator, checkpoint["generator"], f"generator in {resume}")
        load_state_dict_strict(discriminator, checkpoint["discriminator"], f"discriminator in {resume}")
        opt_g.load_state_dict(checkpoint["optimizer_g"])
        opt_d.load_state_dict(checkpoint["optimizer_d"])
        start_epoch, history, best = checkpoint["step"], checkpoint["history"], checkpoint["best"]
        print(f"resuming from {resume} at epoch {start_epoch} (best so far: epoch {best['epoch']})")
    else:
        for old in samples_dir.glob("epoch_*.png"):  # a fresh start must not animate stale grids
            old.unlink()

    # The fixed noise of the grids (and, conditional, one row per digit, one style per column).
    fixed = torch.Generator().manual_seed(run.seed + 1)
    if conditional:
        grid_columns = 10
        grid_labels = torch.arange(classes).repeat_interleave(grid_columns)
        grid_noise = torch.randn(grid_columns, cfg.LATENT_DIM, generator=fixed).repeat(classes, 1)
    else:
        grid_columns = cfg.GRID_SIDE
        grid_labels = None
        grid_noise = torch.randn(cfg.GRID_SIDE**2, cfg.LATENT_DIM, generator=fixed)
    # The judge's samples: as many as the held-out set, fixed noise too, balanced labels.
    eval_count = judge.reference_size
    eval_noise = torch.randn(eval_count, cfg.LATENT_DIM, generator=fixed)
    eval_labels = torch.arange(eval_count) % classes if conditional else None

    def sample(noise, labels):
        generator.eval()
        with torch.no_grad():
            out = generator(noise.to(device), None if labels is None else labels.to(device)).cpu().numpy()
        generator.train()
        return out

    def score(images) -> dict:
        result = {"frechet": judge.frechet(images),
                  "diversity": mean_pairwise_distance(images) / judge.train_diversity}
        if cfg.DATASET == "digits":
            predicted = judge.predict(images)
            result["label_entropy"] = label_entropy(predicted)
            if conditional:
                result["accuracy"] = float((predicted == eval_labels.numpy()).mean())
        return result

    def checkpoint_dict(epoch):
        return {"generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "optimizer_g": opt_g.state_dict(), "optimizer_d": opt_d.state_dict(), "step": epoch,
                "history": history, "best": best, "constants": constants}

    images = torch.from_numpy(data.train_images)
    labels = torch.from_numpy(data.train_labels) if conditional else None
    shuffle = torch.Generator().manual_seed(run.seed)
    epoch = start_epoch
    status = "complete"
    with InterruptGuard() as guard, tqdm(range(start_epoch, cfg.EPOCHS), initial=start_epoch, total=cfg.EPOCHS,
                                         desc=f"{name}: epochs") as bar:
        for epoch in bar:
            sums = np.zeros(3)
            order = torch.randperm(len(images), generator=shuffle)
            if cfg.LR_DECAY:
                # Linear decay of the step size to zero at EPOCHS: without it the unconditional game
                # drifted after ~30 epochs (D ahead, the judge's distance rising 4x, fewer classes).
                for optimizer in (opt_g, opt_d):
                    for group in optimizer.param_groups:
                        group["lr"] = cfg.LEARNING_RATE * (1.0 - epoch / cfg.EPOCHS)
            steps = 0
            for start in range(0, len(images) - 1, cfg.BATCH_SIZE):
                index = order[start : start + cfg.BATCH_SIZE]
                real = images[index].to(device)
                real_labels = None if labels is None else labels[index].to(device)
                losses = gan_step(generator, discriminator, opt_g, opt_d, real, real_labels, cfg)
                if not all(math.isfinite(value) for value in losses):
                    run.finish({"collapsed_at_epoch": epoch + 1, "best_epoch": best["epoch"]}, status="collapsed")
                    kept = f"the best generator (epoch {best['epoch']}) is kept in {best_path}" if best["epoch"] \
                        else "no epoch finished, so there is no best checkpoint"
                    raise Collapsed(
                        f"the losses became NaN/inf at epoch {epoch + 1} (a collapsed run: D {losses[0]}, "
                        f"G {losses[1]}); {kept}. Lower LEARNING_RATE or DIVERSITY_WEIGHT, or change SEED, "
                        "and rerun with --fresh")
                sums += losses
                steps += 1
            for key, value in zip(("loss_d", "loss_g", "diversity_term"), sums / steps, strict=True):
                history[key].append(float(value))
            save_grid(sample(grid_noise, grid_labels), grid_columns, samples_dir / f"epoch_{epoch + 1:04d}.png")
            scores = score(sample(eval_noise, eval_labels))
            history["frechet"].append(scores["frechet"])
            history["judge"].append(scores)
            if scores["frechet"] < best["frechet"]:
                best = {"epoch": epoch + 1, "frechet": scores["frechet"]}
                save_checkpoint(best_path, checkpoint_dict(epoch + 1))
            save_checkpoint(last_path, checkpoint_dict(epoch + 1))
            bar.set_postfix(D=f"{history['loss_d'][-1]:.3f}", G=f"{history['loss_g'][-1]:.3f}",
                            frechet=f"{scores['frechet']:.2f}", best=best["epoch"])
            if guard.requested:
                status = "interrupted"
                break
    if not history["frechet"]:
        raise LabError(f"nothing to report: EPOCHS={cfg.EPOCHS}; set EPOCHS to at least 1")
    report(run, cfg, conditional, judge, history, best, best_path, generator, sample, score,
           eval_noise, eval_labels, grid_noise, grid_labels, grid_columns, samples_dir, status)


def gan_step(generator, discriminator, opt_g, opt_d, real, real_labels, cfg) -> tuple[float, float, float]:
    """One round of the article's game; returns (D loss, G loss, diversity term)."""
    count = len(real)
    z = torch.randn(count, cfg.LATENT_DIM, device=real.device)
    fake_labels = None if real_labels is None else torch.randint(
        0, generator.num_classes, (count,), device=real.device)
    fake = generator(z, fake_labels)
    # The discriminator's move (Goodfellow et al. 2014, eq. 1): maximise
    # log D(x) + log(1 - D(G(z))), i.e. minimise the binary cross-entropy with targets 1 and 0.
    real_logits = discriminator(real, real_labels)
    fake_logits = discriminator(fake.detach(), fake_labels)
    # One-sided label smoothing (Salimans et al. 2016, "Improved techniques for training GANs"):
    # a real target of 0.9 keeps D from growing overconfident and starving G of gradient.
    loss_d = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, cfg.REAL_TARGET)) + \
        F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # The generator's move: the non-saturating loss -log D(G(z)) (same paper, section 3), which
    # gives the generator useful gradients early on, while D still wins easily.
    fake_features = discriminator.features(fake, fake_labels)
    fake_logits = discriminator.head(fake_features).squeeze(1)
    loss_g = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    diversity = pulling_away_term(fake_features)
    total_g = loss_g + cfg.DIVERSITY_WEIGHT * diversity if cfg.DIVERSITY_PENALTY else loss_g
    opt_g.zero_grad(set_to_none=True)
    total_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item(), diversity.item()


def report(run, cfg, conditional, judge, history, best, best_path, generator, sample, score,
           eval_noise, eval_labels, grid_noise, grid_labels, grid_columns, samples_dir, status) -> None:
    """Figures, samples of the best generator and run.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = sorted(samples_dir.glob("epoch_*.png"))
    write_gif(frames, run.path("samples.gif"), fps=cfg.GIF_FPS, max_side=400)
    final_scores = history["judge"][-1]
    load_state_dict_strict(generator, load_checkpoint(best_path)["generator"], f"generator in {best_path}")
    best_samples = sample(eval_noise, eval_labels)
    best_scores = score(best_samples)
    save_grid(sample(grid_noise, grid_labels), grid_columns, run.path("best.png"))
    np.save(run.path("samples_best.npy"), best_samples)
    if conditional:
        np.save(run.path("samples_best_labels.npy"), eval_labels.numpy())

    epochs = np.arange(1, len(history["frechet"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, history["loss_d"], label="discriminator")
    ax.plot(epochs, history["loss_g"], label="generator (adversarial part)")
    if cfg.DIVERSITY_PENALTY:
        ax.plot(epochs, history["diversity_term"], label="pulling-away term")
    ax.axhline(2 * math.log(2), color="grey", ls=":", lw=1, label="D at equilibrium (2 ln 2)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss")
    ax.legend(fontsize=8)
    ax.set_title("the two players' losses")
    save_figure(fig, run.path("losses.png"), dpi=110)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, history["frechet"], label="generated vs held-out")
    ax.axhline(judge.floor, color="green", ls="--", label=f"real vs real floor ({judge.floor:.2f})")
    ax.axhline(3 * judge.floor, color="orange", ls=":", label="3x floor")
    ax.plot([best["epoch"]], [best["frechet"]], "r*", ms=12, label=f"best, epoch {best['epoch']}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Fréchet distance (judge features)")
    ax.legend(fontsize=8)
    ax.set_title("when to stop: the judge's distance per epoch")
    save_figure(fig, run.path("frechet.png"), dpi=110)

    what = "digit rows 0-9" if conditional else "fixed noise"
    run.add_artifact(run.path("best.png"), f"samples of the best epoch ({best['epoch']}), {what}")
    run.add_artifact(run.path("samples.gif"), f"the fixed-noise grid epoch by epoch ({what})")
    run.add_artifact(run.path("frechet.png"), "Fréchet distance per epoch against the real-vs-real floor")
    run.add_artifact(run.path("losses.png"), "discriminator and generator losses")
    metrics = {
        "dataset": cfg.DATASET,
        "epochs_trained": len(epochs),
        "best_epoch": best["epoch"],
        "frechet_best": best_scores["frechet"],
        "frechet_final": final_scores["frechet"],
        "frechet_floor_real_vs_real": judge.floor,
        "frechet_best_over_floor": best_scores["frechet"] / judge.floor,
        "diversity_best_vs_real": best_scores["diversity"],
        "diversity_final_vs_real": final_scores["diversity"],
        "diversity_penalty": bool(cfg.DIVERSITY_PENALTY),
        "judge_samples": judge.reference_size,
    }
    if "label_entropy" in best_scores:
        metrics["label_entropy_best"] = best_scores["label_entropy"]
    if conditional:
        predicted = judge.predict(best_samples)
        truth = eval_labels.numpy()
        per_digit = {str(d): float((predicted[truth == d] == d).mean()) for d in range(10)}
        metrics["label_accuracy_best"] = float((predicted == truth).mean())
        metrics["label_accuracy_final"] = final_scores["accuracy"]
        metrics["label_accuracy_per_digit"] = per_digit
        metrics["judge_accuracy_on_real_heldout"] = judge.test_accuracy
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ax.bar(range(10), [per_digit[str(d)] for d in range(10)], color="tab:blue")
        ax.axhline(0.1, color="grey", ls=":", label="chance (10 %)")
        ax.axhline(judge.test_accuracy, color="green", ls="--", label="judge on real held-out digits")
        ax.set_xticks(range(10))
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("digit asked for")
        ax.set_ylabel("judge agrees")
        ax.set_title(f"conditional samples read as asked: {metrics['label_accuracy_best']:.1%}")
        ax.legend(fontsize=8, loc="lower right")
        save_figure(fig, run.path("accuracy_per_digit.png"), dpi=110)
        run.add_artifact(run.path("accuracy_per_digit.png"), "judge's label accuracy per digit asked for")
        accuracy_curve = [s["accuracy"] for s in history["judge"]]
        metrics["label_accuracy_max_epoch"] = int(np.argmax(accuracy_curve)) + 1
    print(f"[{run.out_dir.name}] best epoch {best['epoch']}: Fréchet {best_scores['frechet']:.3f} "
          f"(floor {judge.floor:.3f}, ratio {metrics['frechet_best_over_floor']:.2f}), "
          f"diversity {best_scores['diversity']:.2f} of real"
          + (f", label accuracy {metrics['label_accuracy_best']:.1%}" if conditional else ""))
    run.finish(metrics, status=status)


@exit_on_lab_error
def main(argv=None):
    name = output_name(resolved_constants(globals(), argv), conditional=False)
    run = start_run("gan_basics", globals(), argv, framework="torch", subdir=name)
    train_and_report(run, conditional=False)


if __name__ == "__main__":
    main()
