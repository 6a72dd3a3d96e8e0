"""Train the article's square-to-sphere map, measure it, and draw it.

Run: python -m sphere_mapping.train [--quick] [--set VARIANT=wide_uniformity] [--set PICTURE=path.jpg]

Article 003: 1000 random points of the square per step, two random half-splits, the loss
sum_splits (sum_i cos(a_i, b_i))^2, Adam lr 0.05, StepLR(1000, 0.8), parameters clamped to
[-2, 2], 10^4 steps. Then: the loss curve (log y), the square's points coloured by position,
the same points on the sphere, a picture painted onto the sphere, an animation of the sphere
forming, and three numbers for the map of a 200x200 grid: coverage, uniformity, largest hole.
"""

import numpy as np
import torch
from tqdm import tqdm

from lab import exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, check_compatible, load_checkpoint, save_checkpoint
from lab.media import write_gif
from sphere_mapping import figures
from sphere_mapping.metrics import UNIFORM_SPHERE_UNIFORMITY, sphere_metrics
from sphere_mapping.model import Trainer, square_grid
from sphere_mapping.variants import DESCRIPTIONS, check_variant, settings_for

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
VARIANT = "article"       # training setup from variants.py: article, uniformity, uniformity_cover, ...
STEPS = 10_000            # optimisation steps (article: 10^4)
POINTS_PER_STEP = 1000    # uniform points of [-0.5, 0.5]^2 per step (article: n2 = 1000)
SPLITS = 2                # random half-splits per step, each its own dropout pass (article: 2)
LEARNING_RATE = 0.05      # Adam's step size (article)
LR_STEP = 1000            # StepLR step_size (article: 1e3)
LR_GAMMA = 0.8            # StepLR gamma (article)
CLAMP = 2.0               # every parameter clamped to [-CLAMP, CLAMP] after each step (article)
GRID_SIDE = 200           # the metrics use the map of a GRID_SIDE^2 grid of the square
SCATTER_POINTS = 1000     # random square points drawn in the square/sphere figures (article: one batch)
PICTURE = "astronaut"     # a scikit-image picture name, or a path to any image file
PICTURE_SIZE = 100        # the picture is resized to PICTURE_SIZE^2 pixels (article: 100x100)
ANIMATION_FRAMES = 60     # frames of the GIF of the sphere forming (log-spaced steps)
ANIMATION_SIDE = 30       # the animation shows the map of an ANIMATION_SIDE^2 grid
TORCH_THREADS = 1         # torch threads on CPU: one is fastest for this tiny net (see bench.py)
SEED = 8                  # the article gives none; 8 draws its "sphere with a missing corner" (0 curls into a ribbon)
DEVICE = "auto"           # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"STEPS": 2000, "ANIMATION_FRAMES": 30, "GRID_SIDE": 150}
DRY_RUN = {"STEPS": 30, "ANIMATION_FRAMES": 4, "GRID_SIDE": 40, "PICTURE_SIZE": 20}
# -----------------------------------------------------------------------------

ARCHITECTURE = ["VARIANT", "POINTS_PER_STEP", "SPLITS", "LEARNING_RATE", "LR_STEP", "LR_GAMMA", "CLAMP", "SEED"]


def snapshot_steps(steps: int, frames: int) -> list[int]:
    """Steps at which the animation samples the map: 0, then log-spaced up to `steps`.

    The sphere forms in the first few hundred steps and then only settles, so log spacing gives
    the forming its share of the frames.
    """
    if frames < 2 or steps < 1:
        return [steps]
    spaced = np.unique(np.round(np.geomspace(1, steps, frames - 1)).astype(int))
    return [0, *spaced.tolist()]


@exit_on_lab_error
def main(argv=None):
    run = start_run("sphere_mapping", globals(), argv, framework="torch")
    cfg = run.cfg
    check_variant(cfg.VARIANT)
    picture, picture_note = figures.load_picture(cfg.PICTURE, cfg.PICTURE_SIZE)  # bad paths fail early
    settings = settings_for(cfg.VARIANT, steps=cfg.STEPS, points_per_step=cfg.POINTS_PER_STEP, splits=cfg.SPLITS,
                            learning_rate=cfg.LEARNING_RATE, lr_step=cfg.LR_STEP, lr_gamma=cfg.LR_GAMMA,
                            clamp=cfg.CLAMP)
    print(f"variant {cfg.VARIANT}: {DESCRIPTIONS[cfg.VARIANT]}")
    trainer = Trainer(settings, run.device, generator_seed=run.seed)
    animation_grid = square_grid(cfg.ANIMATION_SIDE, run.device)
    wanted_frames = snapshot_steps(cfg.STEPS, cfg.ANIMATION_FRAMES)
    snapshots: list[tuple[int, torch.Tensor]] = []

    path = run.checkpoint_path(f"{cfg.VARIANT}.pt")
    if path.exists() and not run.fresh:  # rerunning resumes (or, when finished, only redraws)
        checkpoint = load_checkpoint(path, map_location=str(trainer.device))
        check_compatible(checkpoint["constants"], run.constants, ARCHITECTURE, path)
        trainer.model.load_state_dict(checkpoint["model"])
        trainer.optimizer.load_state_dict(checkpoint["optimizer"])
        trainer.scheduler.load_state_dict(checkpoint["scheduler"])
        trainer.step = min(checkpoint["step"], cfg.STEPS)
        saved = checkpoint["losses"][: cfg.STEPS]
        trainer.losses[: len(saved)] = saved.to(trainer.device)
        snapshots = [(step, vectors.to(trainer.device)) for step, vectors in checkpoint["snapshots"]]
        print(f"resumed from {path} at step {trainer.step}")

    with InterruptGuard() as guard, tqdm(total=cfg.STEPS, initial=trainer.step, desc="training") as bar:
        while trainer.step < cfg.STEPS:
            if trainer.step in wanted_frames:
                snapshots.append((trainer.step, trainer.evaluate(animation_grid)))
            trainer.train_step()
            bar.update(1)
            if trainer.step % 200 == 0:  # reading the loss syncs with the device: not every step
                bar.set_postfix(loss=f"{trainer.losses[trainer.step - 1].item():.4g}")
            if guard.requested:
                break
    if trainer.step == cfg.STEPS and not any(step == cfg.STEPS for step, _ in snapshots):
        snapshots.append((cfg.STEPS, trainer.evaluate(animation_grid)))
    save_checkpoint(path, {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                           "scheduler": trainer.scheduler.state_dict(), "step": trainer.step,
                           "losses": trainer.losses[: trainer.step].cpu(),
                           "snapshots": [(step, vectors.cpu()) for step, vectors in snapshots],
                           "constants": run.constants})
    losses = trainer.losses[: trainer.step].cpu().numpy()

    # The metrics: the map of a GRID_SIDE^2 grid of the square, without dropout.
    grid_vectors = trainer.evaluate(square_grid(cfg.GRID_SIDE, run.device)).cpu().numpy()
    metrics = sphere_metrics(grid_vectors)
    unit_error = float(np.abs(np.linalg.norm(grid_vectors, axis=1) - 1.0).max())
    # The article's first 3D figure shows `output`, the last training batch: dropout still on.
    # The same metrics for that noisy map show how much of its "sphere" is dropout noise.
    with torch.no_grad():
        noisy_vectors = trainer.model(square_grid(cfg.GRID_SIDE, run.device)).cpu().numpy()
    noisy_metrics = {f"dropout_on_{name}": value for name, value in sphere_metrics(noisy_vectors).items()}
    print(f"coverage {metrics['coverage']:.4f} (1 = every 5-degree cell reached) | "
          f"uniformity {metrics['uniformity']:.3f} (uniform sphere {UNIFORM_SPHERE_UNIFORMITY:.3f}) | "
          f"largest hole {metrics['largest_hole_deg']:.1f} deg (the missing corner)")

    # The square's points coloured by position, and the same points on the sphere.
    rng = np.random.default_rng(run.seed)
    square_points = rng.random((cfg.SCATTER_POINTS, 2)) - 0.5  # as the article's last batch
    square_colours = figures.position_colours(square_points)
    sphere_points = trainer.evaluate(torch.as_tensor(square_points, dtype=torch.float32)).cpu().numpy()
    square_hex = figures.hex_colours(square_colours)
    add = run.add_artifact
    add(figures.png_loss(losses, run.path("loss.png")), "training loss (log y)")
    add(figures.plotly_loss(losses, run.path("loss.html")), "training loss, interactive")
    add(figures.png_square(square_points, square_colours, run.path("square.png"),
                           "the square, red from x, green from y"), "the square's points, coloured by position")
    add(figures.plotly_square(square_points, square_hex, run.path("square.html"),
                              "the square's points (red from x, green from y)"), "the square, interactive")
    add(figures.png_sphere_views(sphere_points, square_colours, run.path("sphere.png"),
                                 f"the same points on the sphere ({cfg.VARIANT}, step {trainer.step})"),
        "the square's points mapped onto the sphere, front and back")
    with torch.no_grad():  # the article's figure: the batch's points with dropout on
        noisy_points = trainer.model(torch.as_tensor(square_points, dtype=torch.float32, device=trainer.device))
    add(figures.png_sphere_views(noisy_points.cpu().numpy(), square_colours, run.path("sphere_dropout_on.png"),
                                 "the same points with dropout on (the article's training-batch figure)"),
        "the square's points on the sphere with dropout on, as the article drew its training batch")
    add(figures.plotly_sphere(sphere_points, square_hex, run.path("sphere.html"),
                              f"the square on the sphere ({cfg.VARIANT})"), "the sphere, interactive 3D")

    # The picture painted onto the sphere (the article's "render with image").
    print(f"painting {picture_note} resized to {cfg.PICTURE_SIZE}x{cfg.PICTURE_SIZE}")
    pixel_points = figures.picture_points(cfg.PICTURE_SIZE)
    pixel_colours = picture.reshape(-1, 3)
    pixel_hex = figures.hex_colours(pixel_colours)
    painted = trainer.evaluate(torch.as_tensor(pixel_points, dtype=torch.float32)).cpu().numpy()
    add(figures.png_square(pixel_points, pixel_colours, run.path("picture_square.png"),
                           "the picture sampled on the square", flip_y=True), "the picture on the square")
    add(figures.plotly_square(pixel_points, pixel_hex, run.path("picture_square.html"),
                              "the picture sampled on the square", flip_y=True), "the picture on the square, interactive")
    add(figures.png_sphere_views(painted, pixel_colours, run.path("picture_sphere.png"),
                                 f"the picture painted onto the sphere ({cfg.VARIANT})", size=3),
        "the picture painted onto the sphere, front and back")
    add(figures.plotly_sphere(painted, pixel_hex, run.path("picture_sphere.html"),
                              "the picture painted onto the sphere", size=2), "the painted sphere, interactive 3D")

    # The animation: the map of a small grid at log-spaced steps, fixed camera.
    animation_colours = figures.position_colours(square_grid(cfg.ANIMATION_SIDE).numpy())
    frames = figures.animation_frames([(step, vectors.cpu().numpy()) for step, vectors in snapshots],
                                      animation_colours, losses)
    frames = tqdm(frames, total=len(snapshots), desc="animation frames")
    write_gif(frames, run.path("forming.gif"), fps=8)
    add(run.path("forming.gif"), "the sphere forming during training (log-spaced steps)")

    metrics.update(noisy_metrics)
    metrics.update({"variant": cfg.VARIANT, "steps_trained": trainer.step,
                    "final_loss": float(losses[-100:].mean()) if len(losses) else None,
                    "first_loss": float(losses[0]) if len(losses) else None,
                    "max_unit_norm_error": unit_error,
                    "uniform_sphere_uniformity": UNIFORM_SPHERE_UNIFORMITY})
    run.finish(metrics, status="interrupted" if guard.requested else "complete")
    return metrics


if __name__ == "__main__":
    main()
