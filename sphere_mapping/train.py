"""Train the article's square-to-sphere map, measure it, and draw it.

Run: python -m sphere_mapping.train [--quick] [--set VARIANT=wide_cover] [--set PICTURE=path.jpg]

Article 003: 1000 random points of the square per step, two random half-splits, the loss
sum_splits (sum_i cos(a_i, b_i))^2, Adam lr 0.05, StepLR(1000, 0.8), parameters clamped to
[-2, 2], 10^4 steps. Then: the loss curve (log y), the square's points coloured by position,
the same points on the sphere, a picture painted onto the sphere, an animation of the sphere
forming, three numbers for the map of a 200x200 grid (coverage, uniformity, largest hole), and
where the largest hole sits in the square.
"""

import numpy as np
import torch
from tqdm import tqdm

from lab import exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, resume, save_checkpoint
from lab.constants import constant_name, settings_from
from lab.media import write_gif
from sphere_mapping import figures
from sphere_mapping.metrics import BORDER_BAND, UNIFORM_SPHERE_UNIFORMITY, sphere_metrics
from sphere_mapping.model import ARTICLE, SETTING_NAMES, SphereSettings, Trainer, square_grid
from sphere_mapping.variants import DESCRIPTIONS, VARIANTS, variant_constants

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set. A VARIANT's
# values beat the defaults, --quick beats the variant, --set beats everything (--help shows which won).
VARIANT = "article"       # training setup from variants.py: article, uniformity, uniformity_cover, wide_cover, ... {nonempty}
STEPS = 10_000            # optimisation steps (article: 10^4) {> 0}
# The run's settings, one per model.SphereSettings field, which holds their one default (the article's).
WIDTHS = ARTICLE.widths                    # hidden widths: Linear 2->4->12 (ReLU) ->6->3 (article: 4, 12, 6)
POINTS_PER_STEP = ARTICLE.points_per_step  # uniform points of [-0.5, 0.5]^2 per step (article: n2 = 1000) {>= 2}
SPLITS = ARTICLE.splits                    # random half-splits per step, each its own dropout pass (article: 2) {> 0}
DROPOUT = ARTICLE.dropout                  # dropout after the ReLU and after the 12->6 layer (article: 0.2) {>= 0, < 1}
ARTICLE_WEIGHT = ARTICLE.article_weight    # weight of the article's split-halves loss (0: off) {>= 0}
UNIFORMITY_WEIGHT = ARTICLE.uniformity_weight  # weight of Wang & Isola's uniformity loss (0: off) {>= 0}
UNIFORMITY_TEMPERATURE = ARTICLE.uniformity_temperature  # t of the uniformity loss (Wang & Isola: 2) {> 0}
COVER_WEIGHT = ARTICLE.cover_weight        # weight of the covering loss (0: off) {>= 0}
COVER_TARGETS = ARTICLE.cover_targets      # random sphere directions per step for the covering loss {> 0}
LEARNING_RATE = ARTICLE.learning_rate      # Adam's step size (article: 0.05) {> 0}
LR_STEP = ARTICLE.lr_step                  # StepLR step_size (article: 1e3) {> 0}
LR_GAMMA = ARTICLE.lr_gamma                # StepLR gamma (article: 0.8) {> 0, <= 1}
CLAMP = ARTICLE.clamp                      # every parameter clamped to [-CLAMP, CLAMP] after each step (article: 2) {> 0}
CHECKPOINT_EVERY = 1000   # steps between checkpoints: a crash loses at most this many {> 0}
LOG_EVERY = 50            # steps between loss points in scalars.csv / TensorBoard (mean of the interval) {> 0}
GRID_SIDE = 200           # the metrics use the map of a GRID_SIDE^2 grid of the square {>= 2}
SCATTER_POINTS = 1000     # random square points drawn in the square/sphere figures (article: one batch) {> 0}
PICTURE = "astronaut"     # a scikit-image picture name, or a path to any image file {nonempty}
PICTURE_SIZE = 100        # the picture is resized to PICTURE_SIZE^2 pixels (article: 100x100) {>= 2}
ANIMATION_FRAMES = 60     # frames of the GIF of the sphere forming (log-spaced steps) {> 0}
ANIMATION_SIDE = 30       # the animation shows the map of an ANIMATION_SIDE^2 grid {>= 2}
TORCH_THREADS = 1         # torch threads on CPU: one is fastest for this tiny net (see bench.py) {>= 0}
SEED = 2                  # the article gives none; 2 draws its "sphere with a missing corner" (0 a ribbon: README) {>= 0}
DEVICE = "auto"           # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"ANIMATION_FRAMES": 30, "GRID_SIDE": 150}  # the article's full 10^4 steps: ~5 s of training
DRY_RUN = {"STEPS": 30, "ANIMATION_FRAMES": 4, "GRID_SIDE": 40, "PICTURE_SIZE": 20, "CHECKPOINT_EVERY": 10}
# -----------------------------------------------------------------------------

# A checkpoint made with other settings (or another VARIANT or SEED) is not resumed.
ARCHITECTURE = ["VARIANT", "SEED", *(constant_name(name) for name in SETTING_NAMES)]
BORDER_AREA = 1.0 - (1.0 - 2 * BORDER_BAND) ** 2  # share of the square in its border band (0.19)


def configure(argv) -> tuple:
    """The run and its settings: the block's defaults, beaten by the VARIANT's values, beaten by
    --quick / --dry-run, beaten by --set (lab.constants.resolve_layers), then one SphereSettings."""
    run = start_run("sphere_mapping", globals(), argv, framework="torch", variants=variant_constants(),
                    checkpoints=True)
    return run, settings_from(SphereSettings, run.cfg)


def snapshot_steps(steps: int, frames: int) -> list[int]:
    """Steps at which the animation samples the map: 0, then log-spaced up to `steps`.

    The sphere forms in the first few hundred steps and then only settles, so log spacing gives
    the forming its share of the frames.
    """
    if frames < 2 or steps < 1:
        return [steps]
    spaced = np.unique(np.round(np.geomspace(1, steps, frames - 1)).astype(int))
    return [0, *spaced.tolist()]


def resume_training(run, cfg, settings: SphereSettings):
    """A fresh Trainer, or the checkpoint's (weights, Adam, each generator, losses, frames)."""
    trainer = Trainer([settings], [run.seed], run.device)
    ckpt = resume(run, f"{cfg.VARIANT}.pt", architecture=ARCHITECTURE, steps=cfg.STEPS, map_location="cpu")
    losses = torch.zeros(cfg.STEPS, device=trainer.device)
    snapshots: list[tuple[int, torch.Tensor]] = []
    if ckpt.state is not None:
        trainer.load_state_dict(ckpt.state["trainer"])
        losses[: ckpt.step] = ckpt.state["losses"].to(trainer.device)
        snapshots = [(step, vectors.to(trainer.device)) for step, vectors in ckpt.state["snapshots"]]
    return trainer, ckpt, losses, snapshots


def save(ckpt, trainer: Trainer, losses: torch.Tensor, snapshots) -> None:
    save_checkpoint(ckpt.path, {"settings": trainer.members[0].to_dict(), "trainer": trainer.state_dict(),
                                "losses": losses[: trainer.step].cpu(),
                                "snapshots": [(step, vectors.cpu()) for step, vectors in snapshots],
                                **ckpt.meta(trainer.step)})


def train(run, cfg, trainer: Trainer, ckpt, losses: torch.Tensor, snapshots: list) -> bool:
    """Train up to STEPS, a checkpoint every CHECKPOINT_EVERY steps; False when stopped by Ctrl+C."""
    animation_grid = square_grid(cfg.ANIMATION_SIDE, run.device)
    wanted = set(snapshot_steps(cfg.STEPS, cfg.ANIMATION_FRAMES))
    taken = {step for step, _ in snapshots}
    with InterruptGuard() as guard, tqdm(total=cfg.STEPS, initial=trainer.step, desc="training (loss)") as bar:
        while trainer.step < cfg.STEPS:
            if trainer.step in wanted and trainer.step not in taken:
                snapshots.append((trainer.step, trainer.evaluate(animation_grid)[0]))
                taken.add(trainer.step)
            step = trainer.step
            losses[step] = trainer.train_step()[0]
            bar.update(1)
            if trainer.step % cfg.LOG_EVERY == 0 or trainer.step == cfg.STEPS:
                # Reading the loss waits for the device: once per interval, not every step.
                recent = float(losses[max(0, trainer.step - cfg.LOG_EVERY) : trainer.step].mean())
                run.log_scalars(trainer.step, loss=recent, learning_rate=float(trainer.lr[0]))
                bar.set_postfix(loss=f"{recent:.4g}")
            if trainer.step % cfg.CHECKPOINT_EVERY == 0:
                save(ckpt, trainer, losses, snapshots)
            if guard.requested:
                break
    if trainer.step == cfg.STEPS and cfg.STEPS not in taken:
        snapshots.append((cfg.STEPS, trainer.evaluate(animation_grid)[0]))
    save(ckpt, trainer, losses, snapshots)
    return not guard.requested


def measure(run, cfg, trainer: Trainer) -> tuple[dict, np.ndarray, dict]:
    """Coverage, uniformity and largest hole of the GRID_SIDE^2 grid's map, dropout off and on,
    and where the largest hole sits in the square."""
    grid = square_grid(cfg.GRID_SIDE, run.device)
    vectors = trainer.evaluate(grid)[0].cpu().numpy()
    square = grid.cpu().numpy()
    metrics = sphere_metrics(vectors, square)
    rim_mask = metrics.pop("rim_mask")
    metrics["max_unit_norm_error"] = float(np.abs(np.linalg.norm(vectors, axis=1) - 1.0).max())
    # The article's first 3D figure shows `output`, the last training batch: dropout still on.
    # The same metrics for that noisy map show how much of its "sphere" is dropout noise.
    generator = torch.Generator(device=trainer.device).manual_seed(run.seed)
    noisy = trainer.evaluate_with_dropout(grid, generator)[0].cpu().numpy()
    metrics.update({f"dropout_on_{name}": value for name, value in sphere_metrics(noisy).items()})
    print(f"coverage {metrics['coverage']:.4f} (1 = every 5-degree cell reached) | "
          f"uniformity {metrics['uniformity']:.3f} (uniform sphere {UNIFORM_SPHERE_UNIFORMITY:.3f}) | "
          f"largest hole {metrics['largest_hole_deg']:.1f} deg (the missing corner); its rim is "
          f"{100 * metrics['rim_on_border']:.0f}% square border (the border band is 19% of the area)")
    rim = {"rim_mask": rim_mask, "hole_deg": metrics["largest_hole_deg"], "rim_on_border": metrics["rim_on_border"],
           "border_area": BORDER_AREA}
    return metrics, vectors, rim


def draw(run, cfg, trainer: Trainer, losses: np.ndarray, snapshots, picture, picture_note, rim) -> None:
    """Every figure: loss, square, sphere (dropout off and on), the painted picture, the hole, the GIF."""
    add = run.add_artifact
    rng = np.random.default_rng(run.seed)
    square_points = rng.random((cfg.SCATTER_POINTS, 2)) - 0.5  # as the article's last batch
    square_colours = figures.position_colours(square_points)
    square_hex = figures.hex_colours(square_colours)
    sphere_points = trainer.evaluate(torch.as_tensor(square_points))[0].cpu().numpy()
    add(figures.png_loss(losses, run.path("loss.png")), "training loss (log y)")
    add(figures.plotly_loss(losses, run.path("loss.html")), "training loss, interactive")
    add(figures.png_square(square_points, square_colours, run.path("square.png"),
                           "the square, red from x, green from y"), "the square's points, coloured by position")
    add(figures.plotly_square(square_points, square_hex, run.path("square.html"),
                              "the square's points (red from x, green from y)"), "the square, interactive")
    add(figures.png_sphere_views(sphere_points, square_colours, run.path("sphere.png"),
                                 f"the same points on the sphere ({cfg.VARIANT}, step {trainer.step})"),
        "the square's points mapped onto the sphere, front and back")
    generator = torch.Generator(device=trainer.device).manual_seed(run.seed + 1)
    noisy_points = trainer.evaluate_with_dropout(torch.as_tensor(square_points), generator)[0].cpu().numpy()
    add(figures.png_sphere_views(noisy_points, square_colours, run.path("sphere_dropout_on.png"),
                                 "the same points with dropout on (the article's training-batch figure)"),
        "the square's points on the sphere with dropout on, as the article drew its training batch")
    add(figures.plotly_sphere(sphere_points, square_hex, run.path("sphere.html"),
                              f"the square on the sphere ({cfg.VARIANT})"), "the sphere, interactive 3D")

    # The picture painted onto the sphere (the article's "render with image").
    print(f"painting {picture_note} resized to {cfg.PICTURE_SIZE}x{cfg.PICTURE_SIZE}")
    pixel_points = figures.picture_points(cfg.PICTURE_SIZE)
    pixel_colours = picture.reshape(-1, 3)
    pixel_hex = figures.hex_colours(pixel_colours)
    painted = trainer.evaluate(torch.as_tensor(pixel_points))[0].cpu().numpy()
    add(figures.png_square(pixel_points, pixel_colours, run.path("picture_square.png"),
                           "the picture sampled on the square", flip_y=True), "the picture on the square")
    add(figures.plotly_square(pixel_points, pixel_hex, run.path("picture_square.html"),
                              "the picture sampled on the square", flip_y=True), "the picture on the square, interactive")
    add(figures.png_sphere_views(painted, pixel_colours, run.path("picture_sphere.png"),
                                 f"the picture painted onto the sphere ({cfg.VARIANT})", size=3),
        "the picture painted onto the sphere, front and back")
    add(figures.plotly_sphere(painted, pixel_hex, run.path("picture_sphere.html"),
                              "the picture painted onto the sphere", size=2), "the painted sphere, interactive 3D")
    add(figures.png_hole_in_square(square_grid(cfg.GRID_SIDE).numpy(), rim, run.path("hole_in_square.png")),
        "where the largest hole sits in the square: the grid points that map onto its rim")

    # The animation: the map of a small grid at log-spaced steps, fixed camera.
    animation_colours = figures.position_colours(square_grid(cfg.ANIMATION_SIDE).numpy())
    frames = figures.animation_frames([(step, vectors.cpu().numpy()) for step, vectors in sorted(snapshots, key=lambda s: s[0])],
                                      animation_colours, losses)
    write_gif(tqdm(frames, total=len(snapshots), desc="animation frames"), run.path("forming.gif"), fps=8)
    add(run.path("forming.gif"), "the sphere forming during training (log-spaced steps)")


def record_claims(run, cfg, metrics: dict) -> None:
    """The article's two pictures as claims, with this run's numbers (full profile in the README)."""
    if cfg.VARIANT != "article":
        return
    coverage, hole = metrics["coverage"], metrics["largest_hole_deg"]
    # "A sphere with a missing corner": most of the sphere reached, one large empty cap.
    run.add_claim("the square wraps into a sphere with a missing corner (dropout off, the painted picture)",
                  f"coverage {coverage:.2f}, largest hole {hole:.0f} deg (seed {run.seed}, {metrics['steps_trained']} steps)",
                  coverage >= 0.5 and 20.0 <= hole < 90.0, full_profile="coverage 0.71, hole 50 deg (seed 2)")
    noisy_coverage, noisy_hole = metrics["dropout_on_coverage"], metrics["dropout_on_largest_hole_deg"]
    run.add_claim("the training batch (dropout on) forms a sphere",
                  f"coverage {noisy_coverage:.2f}, largest hole {noisy_hole:.0f} deg",
                  noisy_coverage >= 0.8, full_profile="coverage 1.00, hole 6.2 deg (seed 2)")


@exit_on_lab_error
def main(argv=None):
    run, settings = configure(argv)
    cfg = run.cfg
    picture, picture_note = figures.load_picture(cfg.PICTURE, cfg.PICTURE_SIZE)  # bad paths fail early
    print(f"variant {cfg.VARIANT}: {DESCRIPTIONS[cfg.VARIANT]}" + ("" if not VARIANTS[cfg.VARIANT] else f" ({settings})"))
    trainer, ckpt, losses, snapshots = resume_training(run, cfg, settings)
    completed = train(run, cfg, trainer, ckpt, losses, snapshots)
    losses = losses[: trainer.step].cpu().numpy()
    metrics, _, rim = measure(run, cfg, trainer)
    draw(run, cfg, trainer, losses, snapshots, picture, picture_note, rim)
    metrics.update({"variant": cfg.VARIANT, "steps_trained": trainer.step,
                    "final_loss": float(losses[-100:].mean()) if len(losses) else None,
                    "first_loss": float(losses[0]) if len(losses) else None,
                    "uniform_sphere_uniformity": UNIFORM_SPHERE_UNIFORMITY})
    record_claims(run, cfg, metrics)
    run.finish(metrics, status="complete" if completed else "interrupted")
    return metrics


if __name__ == "__main__":
    main()
