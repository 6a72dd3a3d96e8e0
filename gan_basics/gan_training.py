"""The GAN's training, scoring and report for gan.py (which owns the constants) and cgan.py, in the
order gan.main() calls them: build_game, resume_game, train (each epoch scored by the judge), report.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from scipy.stats import binomtest
from torch.nn import functional as F
from tqdm import tqdm

from gan_basics.ae_model import image_grid, upscale
from gan_basics.data import DATASETS, Dataset
from gan_basics.judge import Judge, mean_pairwise_distance
from gan_basics.model import GANSettings, build_players, pulling_away_term
from lab import LabError
from lab.checkpoint import InterruptGuard, Resumed, load_checkpoint, load_state_dict_strict, resume, save_checkpoint
from lab.constants import settings_from
from lab.media import write_gif
from lab.plots import save_figure
from lab.safe_load import settings_from_checkpoint

# Constants a checkpoint must share with the run that resumes it: the data and the architecture.
ARCHITECTURE = ["DATASET", "CONDITIONAL", "LATENT_DIM", "G_WIDTH", "D_WIDTH"]


def output_folder(cfg: SimpleNamespace) -> str:
    """The run's folder under outputs/gan_basics/, named from its settings (start_run's `subdir`)."""
    if cfg.DATASET not in DATASETS:
        raise LabError(f"unknown dataset {cfg.DATASET!r}; valid: {', '.join(DATASETS)}")
    if cfg.CONDITIONAL and cfg.DATASET != "digits":
        raise LabError(f"a conditional GAN needs labels; {cfg.DATASET!r} has none. Use --set DATASET=digits")
    return ("cgan" if cfg.CONDITIONAL else f"gan_{cfg.DATASET}") + ("_diversity" if cfg.DIVERSITY_PENALTY else "")


def save_grid(images: np.ndarray, columns: int, path: Path, min_side: int = 320) -> Path:
    """A grid of (N, 1, H, W) images in [-1, 1] as an 8-bit PNG, scaled up without blurring."""
    sheet = image_grid((images + 1.0) / 2.0, columns)
    sheet = upscale(sheet, max(1, math.ceil(min_side / max(sheet.shape))))
    Image.fromarray((np.clip(sheet, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


@dataclass
class Players:
    """The two players, their optimisers and the generator's weight average, built from settings."""

    settings: GANSettings
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    average: torch.nn.Module          # the EMA of the generator's weights (a copy when G_EMA = 0)
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    device: torch.device


def draw(generator: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor | None, device) -> np.ndarray:
    generator.eval()
    with torch.no_grad():
        return generator(noise.to(device), None if labels is None else labels.to(device)).cpu().numpy()


def build_game(cfg: SimpleNamespace, data: Dataset, device: str) -> Players:
    settings = settings_from(GANSettings, cfg, image_shape=data.image_shape,
                             num_classes=data.num_classes if cfg.CONDITIONAL else 0)
    generator, discriminator = build_players(settings)
    generator, discriminator = generator.to(device), discriminator.to(device)
    # Adam with beta1 = 0 and beta2 = 0.99 (as Karras et al. 2019, StyleGAN, and Brock et al. 2019,
    # BigGAN): without momentum each player answers the other's latest move, not an average of old
    # ones (README.md: 5.8x the floor against 16.9x with DCGAN's beta1 = 0.5).
    opt_g, opt_d = (torch.optim.Adam(player.parameters(), lr=cfg.LEARNING_RATE, betas=(cfg.BETA1, cfg.BETA2))
                    for player in (generator, discriminator))
    average = copy.deepcopy(generator).requires_grad_(False)
    return Players(settings, generator, discriminator, average, opt_g, opt_d, torch.device(device))


def update_average(players: Players, decay: float, step: int) -> None:
    """The EMA of the generator's weights (Yazici et al. 2019), nearer the centre of its oscillation than
    any step; the decay ramps up from 0 to forget the initial weights; batch-norm statistics are copied."""
    weight = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for averaged, current in zip(players.average.parameters(), players.generator.parameters(), strict=True):
            averaged.lerp_(current, 1.0 - weight)
        for averaged, current in zip(players.average.buffers(), players.generator.buffers(), strict=True):
            averaged.copy_(current)


def gan_step(players: Players, real: torch.Tensor, real_labels: torch.Tensor | None,
             cfg: SimpleNamespace) -> tuple[float, float, float]:
    """One round of the article's game; returns (D loss, G loss, diversity term)."""
    generator, discriminator = players.generator, players.discriminator
    z = torch.randn(len(real), cfg.LATENT_DIM, device=real.device)
    fake_labels = None if real_labels is None else torch.randint(
        0, generator.num_classes, (len(real),), device=real.device)
    fake = generator(z, fake_labels)
    # D's move (Goodfellow et al. 2014, eq. 1): maximise log D(x) + log(1 - D(G(z))).
    real_logits = discriminator(real, real_labels)
    fake_logits = discriminator(fake.detach(), fake_labels)
    # One-sided label smoothing (Salimans et al. 2016): a real target of 0.9 keeps D from growing
    # overconfident and starving G of gradient.
    loss_d = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, cfg.REAL_TARGET)) + \
        F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    players.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    players.opt_d.step()
    # G's move: the non-saturating loss -log D(G(z)) (same paper, section 3), useful while D wins easily.
    fake_features = discriminator.features(fake, fake_labels)
    fake_logits = discriminator.logits(fake_features, fake_labels)
    loss_g = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    diversity = pulling_away_term(fake_features)
    total_g = loss_g + cfg.DIVERSITY_WEIGHT * diversity if cfg.DIVERSITY_PENALTY else loss_g
    players.opt_g.zero_grad(set_to_none=True)
    total_g.backward()
    players.opt_g.step()
    return loss_d.item(), loss_g.item(), diversity.item()


@dataclass
class Probes:
    """Fixed noise (and labels) for the grid and for the judge's sample set, the same every epoch."""

    grid_noise: torch.Tensor
    grid_labels: torch.Tensor | None
    grid_columns: int
    eval_noise: torch.Tensor
    eval_labels: torch.Tensor | None

    @classmethod
    def draw(cls, cfg: SimpleNamespace, settings: GANSettings, eval_count: int, seed: int) -> Probes:
        fixed = torch.Generator().manual_seed(seed + 1)  # its own generator: resuming cannot shift it
        classes = settings.num_classes
        if classes:  # one row per digit, one style (noise vector) per column
            columns, grid_labels = 10, torch.arange(classes).repeat_interleave(10)
            grid_noise = torch.randn(columns, cfg.LATENT_DIM, generator=fixed).repeat(classes, 1)
        else:
            columns, grid_labels = cfg.GRID_SIDE, None
            grid_noise = torch.randn(cfg.GRID_SIDE**2, cfg.LATENT_DIM, generator=fixed)
        # The judge's samples: as many as the held-out set, balanced labels when conditional.
        eval_noise = torch.randn(eval_count, cfg.LATENT_DIM, generator=fixed)
        eval_labels = torch.arange(eval_count) % classes if classes else None
        return cls(grid_noise, grid_labels, columns, eval_noise, eval_labels)


@dataclass
class History:
    """Per-epoch figures and the best epoch so far; stored in every checkpoint."""

    loss_d: list[float] = field(default_factory=list)
    loss_g: list[float] = field(default_factory=list)
    diversity_term: list[float] = field(default_factory=list)
    frechet: list[float] = field(default_factory=list)
    judge: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_frechet: float = math.inf


@dataclass
class GameState:
    """Where training stands: the resume record, the history and the shuffling generator."""

    ckpt: Resumed
    best_path: Path
    history: History
    shuffle: torch.Generator


def resume_game(run, players: Players, data: Dataset, name: str) -> GameState:
    """Load `<name>_last.pt` when lab.checkpoint.resume accepts it (same architecture and data), else start fresh."""
    fingerprint = hashlib.sha256(np.ascontiguousarray(data.train_images).tobytes()).hexdigest()[:16]  # same pixels
    ckpt = resume(run, f"{name}_last.pt", architecture=ARCHITECTURE, steps=run.cfg.EPOCHS, steps_name="EPOCHS",
                  data=fingerprint, map_location=players.device)
    best_path = ckpt.path.with_name(f"{name}_best.pt")
    shuffle = torch.Generator().manual_seed(run.seed)
    if ckpt.state is None:
        best_path.unlink(missing_ok=True)
        return GameState(ckpt, best_path, History(), shuffle)
    state, where = ckpt.state, f"in {ckpt.path}"
    load_state_dict_strict(players.generator, state["generator"], f"generator {where}")
    load_state_dict_strict(players.average, state["generator_average"], f"averaged generator {where}")
    load_state_dict_strict(players.discriminator, state["discriminator"], f"discriminator {where}")
    players.opt_g.load_state_dict(state["optimizer_g"])
    players.opt_d.load_state_dict(state["optimizer_d"])
    shuffle.set_state(state["shuffle_rng"])
    return GameState(ckpt, best_path, History(**state["history"]), shuffle)


def score(judge: Judge, images: np.ndarray, eval_labels: torch.Tensor | None) -> dict:
    """The judge's figures for one sample set: Fréchet distance, diversity, label entropy/accuracy."""
    result = {"frechet": judge.frechet(images), "diversity": mean_pairwise_distance(images) / judge.train_diversity}
    if judge.classifier is not None:
        predicted = judge.predict(images)
        # The entropy of the judge's label histogram over log(10): 1 = every digit equally often.
        counts = np.bincount(predicted, minlength=10).astype(np.float64)
        share = counts[counts > 0] / counts.sum()
        result["label_entropy"] = float(-(share * np.log(share)).sum() / np.log(10))
        if eval_labels is not None:
            result["accuracy"] = float((predicted == eval_labels.numpy()).mean())
    return result


def train(run, players: Players, game: GameState, data: Dataset, judge: Judge, probes: Probes,
          samples_dir: Path) -> str:
    """Play the remaining epochs; after each, score the averaged generator, keep the best, checkpoint.
    Returns the run's status: complete or interrupted."""
    cfg, history = run.cfg, game.history
    images = torch.from_numpy(data.train_images)
    labels = torch.from_numpy(data.train_labels) if players.settings.num_classes else None
    steps_per_epoch = math.ceil((len(images) - 1) / cfg.BATCH_SIZE)
    total_steps = cfg.EPOCHS * steps_per_epoch
    start = game.ckpt.step
    if start == 0:
        for old in samples_dir.glob("epoch_*.png"):  # a fresh start must not animate stale grids
            old.unlink()
        run.log_scalars(0, lr=cfg.LEARNING_RATE)  # step 0 tells the curve log that a new run begins
    status = "complete"
    with InterruptGuard() as guard, tqdm(range(start, cfg.EPOCHS), initial=start, total=cfg.EPOCHS,
                                         desc=f"{run.out_dir.name}: epochs") as bar:
        for epoch in bar:
            sums = np.zeros(3)
            order = torch.randperm(len(images), generator=game.shuffle)
            for batch, first in enumerate(range(0, len(images) - 1, cfg.BATCH_SIZE)):
                step = epoch * steps_per_epoch + batch
                # Linear decay to zero: without it the game drifted after ~30 epochs (README.md).
                lr = cfg.LEARNING_RATE * ((1.0 - step / total_steps) if cfg.LR_DECAY else 1.0)
                for optimizer in (players.opt_g, players.opt_d):
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                index = order[first : first + cfg.BATCH_SIZE]
                real = images[index].to(players.device)
                real_labels = None if labels is None else labels[index].to(players.device)
                losses = gan_step(players, real, real_labels, cfg)
                if not all(math.isfinite(value) for value in losses):
                    raise_collapsed(run, game, epoch, losses)
                update_average(players, cfg.G_EMA, step)
                sums += losses
            for curve, mean in zip((history.loss_d, history.loss_g, history.diversity_term), sums / steps_per_epoch,
                                   strict=True):
                curve.append(float(mean))
            # The averaged generator is the one scored, kept and shown.
            save_grid(draw(players.average, probes.grid_noise, probes.grid_labels, players.device), probes.grid_columns,
                      samples_dir / f"epoch_{epoch + 1:04d}.png")
            scores = score(judge, draw(players.average, probes.eval_noise, probes.eval_labels, players.device),
                           probes.eval_labels)
            history.frechet.append(scores["frechet"])
            history.judge.append(scores)
            done = epoch + 1
            if scores["frechet"] < history.best_frechet:
                history.best_epoch, history.best_frechet = done, scores["frechet"]
                save_checkpoint(game.best_path, {"generator": players.average.state_dict(),
                                                 "settings": asdict(players.settings), **game.ckpt.meta(done)})
            if done % cfg.CHECKPOINT_EVERY == 0 or done == cfg.EPOCHS or guard.requested:
                save_checkpoint(game.ckpt.path, {
                    "generator": players.generator.state_dict(), "generator_average": players.average.state_dict(),
                    "discriminator": players.discriminator.state_dict(), "optimizer_g": players.opt_g.state_dict(),
                    "optimizer_d": players.opt_d.state_dict(), "shuffle_rng": game.shuffle.get_state(),
                    "history": asdict(history), "settings": asdict(players.settings), **game.ckpt.meta(done)})
            # The curves to watch while it runs (TensorBoard and scalars.csv).
            run.log_scalars(done, loss_d=history.loss_d[-1], loss_g=history.loss_g[-1],
                            diversity_term=history.diversity_term[-1], frechet=scores["frechet"],
                            frechet_over_floor=scores["frechet"] / judge.floor, diversity=scores["diversity"], lr=lr,
                            **{key: scores[key] for key in ("label_entropy", "accuracy") if key in scores})
            bar.set_postfix(D=f"{history.loss_d[-1]:.3f}", G=f"{history.loss_g[-1]:.3f}",
                            frechet=f"{scores['frechet'] / judge.floor:.2f}x floor", best=history.best_epoch)
            if guard.requested:
                status = "interrupted"
                break
    if not history.frechet:
        raise LabError(f"nothing to report: EPOCHS={cfg.EPOCHS}; set EPOCHS to at least 1")
    return status


def raise_collapsed(run, game: GameState, epoch: int, losses) -> None:
    history = game.history
    run.finish({"collapsed_at_epoch": epoch + 1, "best_epoch": history.best_epoch}, status="collapsed")
    kept = (f"the best generator (epoch {history.best_epoch}) is kept in {game.best_path}" if history.best_epoch
            else "no epoch finished, so there is no best checkpoint")
    raise LabError(
        f"the losses became NaN/inf at epoch {epoch + 1} (a collapsed run: D {losses[0]}, G {losses[1]}); "
        f"{kept}. Lower LEARNING_RATE or DIVERSITY_WEIGHT, or change SEED, and rerun with --fresh")


def load_best_generator(path: Path, device: torch.device) -> torch.nn.Module:
    """The best epoch's generator, rebuilt from the settings stored beside its weights."""
    checkpoint = load_checkpoint(path, map_location=str(device))
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("generator"), dict):
        raise LabError(f"{path} is not a checkpoint of gan_basics' GAN training: it has no generator weights")
    generator, _ = build_players(settings_from_checkpoint(GANSettings, checkpoint.get("settings"), path,
                                                          "gan_basics' GAN training", image_shape=tuple))
    load_state_dict_strict(generator, checkpoint["generator"], f"generator in {path}")
    return generator.to(device).eval()


def report(run, game: GameState, judge: Judge, probes: Probes, samples_dir: Path, status: str,
           device: torch.device) -> None:
    """Figures, samples of the best generator, the article's claims and run.json."""
    cfg, history = run.cfg, game.history
    conditional = probes.eval_labels is not None
    write_gif(sorted(samples_dir.glob("epoch_*.png")), run.path("samples.gif"), fps=cfg.GIF_FPS, max_side=400)
    generator = load_best_generator(game.best_path, device)
    best_samples = draw(generator, probes.eval_noise, probes.eval_labels, device)
    save_grid(draw(generator, probes.grid_noise, probes.grid_labels, device), probes.grid_columns, run.path("best.png"))
    best_scores = score(judge, best_samples, probes.eval_labels)
    final_scores = history.judge[-1]
    np.save(run.path("samples_best.npy"), best_samples)
    if conditional:
        np.save(run.path("samples_best_labels.npy"), probes.eval_labels.numpy())
    plot_curves(run, history, judge, cfg.DIVERSITY_PENALTY)
    what = "digit rows 0-9" if conditional else "fixed noise"
    run.add_artifact(run.path("best.png"), f"samples of the best epoch ({history.best_epoch}), {what}")
    run.add_artifact(run.path("samples.gif"), f"the fixed-noise grid epoch by epoch ({what})")
    run.add_artifact(run.path("frechet.png"), "Fréchet distance per epoch against the real-vs-real floor")
    run.add_artifact(run.path("losses.png"), "discriminator and generator losses")
    ratio = best_scores["frechet"] / judge.floor
    metrics = {"dataset": cfg.DATASET, "epochs_trained": len(history.frechet), "best_epoch": history.best_epoch,
               "frechet_best": best_scores["frechet"], "frechet_final": final_scores["frechet"],
               "frechet_floor_real_vs_real": judge.floor, "frechet_best_over_floor": ratio,
               "diversity_best_vs_real": best_scores["diversity"], "diversity_final_vs_real": final_scores["diversity"],
               "diversity_penalty": bool(cfg.DIVERSITY_PENALTY), "judge_samples": judge.reference_size}
    if "label_entropy" in best_scores:
        metrics["label_entropy_best"] = best_scores["label_entropy"]
    if conditional:
        metrics.update(conditional_metrics(run, judge, best_samples, probes, history, final_scores))
    add_claims(run, metrics, conditional)
    print(f"[{run.out_dir.name}] best epoch {history.best_epoch}: Fréchet {best_scores['frechet']:.3f} "
          f"(floor {judge.floor:.3f}, ratio {ratio:.2f}), diversity {best_scores['diversity']:.2f} of real"
          + (f", label accuracy {metrics['label_accuracy_best']:.1%}" if conditional else ""))
    run.finish(metrics, status=status)


# The full profile's figures (README.md, seed 0), shown beside this run's in the gallery.
FULL_PROFILE = {"gan_ratio": "2.55x floor (epoch 27 of 60)", "gan_entropy": "0.96",
                "cgan_accuracy": "97.8 % (epoch 40 of 60)"}


def add_claims(run, metrics: dict, conditional: bool) -> None:
    """The article's claims this run tests, with this run's figures (the gallery's summary table)."""
    ratio = metrics["frechet_best_over_floor"]
    if conditional:
        accuracy = metrics["label_accuracy_best"]
        low, high = metrics["label_accuracy_interval"]
        run.add_claim("the cGAN draws the digit asked for (judge's label accuracy >= 90 %)",
                      f"{accuracy:.1%} of {metrics['label_samples']} samples (95 % interval {low:.1%}-{high:.1%}; "
                      f"chance 10 %; judge on real digits {metrics['judge_accuracy_on_real_heldout']:.1%})",
                      accuracy >= 0.90, FULL_PROFILE["cgan_accuracy"])
        return
    run.add_claim("the GAN draws digits from noise (Fréchet distance <= 5x the real-vs-real floor)",
                  f"{ratio:.2f}x floor ({metrics['frechet_best']:.1f} vs {metrics['frechet_floor_real_vs_real']:.2f}, "
                  f"epoch {metrics['best_epoch']})", ratio <= 5.0, FULL_PROFILE["gan_ratio"])
    if "label_entropy_best" in metrics:
        entropy = metrics["label_entropy_best"]
        run.add_claim("no mode collapse: the generator draws all ten digits (judge's label entropy >= 0.9)",
                      f"entropy {entropy:.2f} (1 = all ten equally often); pixel diversity "
                      f"{metrics['diversity_best_vs_real']:.2f} of real", entropy >= 0.9, FULL_PROFILE["gan_entropy"])


def conditional_metrics(run, judge: Judge, best_samples, probes: Probes, history: History, final_scores) -> dict:
    import matplotlib.pyplot as plt

    predicted = judge.predict(best_samples)
    truth = probes.eval_labels.numpy()
    per_digit = {str(d): float((predicted[truth == d] == d).mean()) for d in range(10)}
    accuracy = float((predicted == truth).mean())
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(range(10), [per_digit[str(d)] for d in range(10)], color="tab:blue")
    ax.axhline(0.1, color="grey", ls=":", label="chance (10 %)")
    ax.axhline(judge.test_accuracy, color="green", ls="--", label="judge on real held-out digits")
    ax.set(xticks=range(10), ylim=(0, 1.05), xlabel="digit asked for", ylabel="judge agrees",
           title=f"conditional samples read as asked: {accuracy:.1%}")
    ax.legend(fontsize=8, loc="lower right")
    run.add_artifact(save_figure(fig, run.path("accuracy_per_digit.png"), dpi=110),
                     "judge's label accuracy per digit asked for")
    # The share of samples read as asked, with Wilson's 95 % interval for that many samples.
    interval = binomtest(int((predicted == truth).sum()), len(truth)).proportion_ci(0.95, method="wilson")
    return {"label_accuracy_best": accuracy, "label_samples": len(truth),
            "label_accuracy_interval": [float(interval.low), float(interval.high)],
            "label_accuracy_final": final_scores["accuracy"],
            "label_accuracy_per_digit": per_digit, "judge_accuracy_on_real_heldout": judge.test_accuracy,
            "label_accuracy_max_epoch": int(np.argmax([s["accuracy"] for s in history.judge])) + 1}


def plot_curves(run, history: History, judge: Judge, with_penalty: bool) -> None:
    """losses.png (the two players' losses) and frechet.png (the judge's distance per epoch)."""
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history.frechet) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, history.loss_d, label="discriminator")
    ax.plot(epochs, history.loss_g, label="generator (adversarial part)")
    if with_penalty:
        ax.plot(epochs, history.diversity_term, label="pulling-away term")
    ax.axhline(2 * math.log(2), color="grey", ls=":", lw=1, label="D at equilibrium (2 ln 2)")
    ax.set(xlabel="epoch", ylabel="mean loss", title="the two players' losses")
    ax.legend(fontsize=8)
    save_figure(fig, run.path("losses.png"), dpi=110)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, history.frechet, label="generated vs held-out")
    ax.axhline(judge.floor, color="green", ls="--", label=f"real vs real floor ({judge.floor:.2f})")
    ax.axhline(5 * judge.floor, color="orange", ls=":", label="5x floor")
    ax.plot([history.best_epoch], [history.best_frechet], "r*", ms=12, label=f"best, epoch {history.best_epoch}")
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="Fréchet distance (judge features)",
           title="when to stop: the judge's distance per epoch")
    ax.legend(fontsize=8)
    save_figure(fig, run.path("frechet.png"), dpi=110)
