"""Train the article's square-to-sphere map over many seeds at once, measure each, and draw one.

Run: python -m sphere_mapping.train [--quick] [--set VARIANT=wide_cover] [--set PICTURE=path.jpg]
     [--set SEEDS=1 --set SEED=7]   (one given seed instead of the rule's pick)

Article 003: 1000 points per step, two random half-splits, loss sum_splits (sum_i cos(a_i, b_i))^2,
Adam lr 0.05, StepLR(1000, 0.8), parameters clamped to [-2, 2], 10^4 steps. Which shape a seed draws
is chaotic (it can flip with the CPU), so SEEDS seeds train as one stacked model and each is
classified: the claim is the share that draws the "sphere with a missing corner" (Wilson interval).
The figures show the seed a stated rule picks (PICTURE_OUTCOME), and every seed's sphere.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, atomic_write_text, resume, save_checkpoint
from lab.constants import constant_name, settings_from
from lab.media import write_gif
from sphere_mapping import figures
from sphere_mapping.metrics import (
    BORDER_BAND,
    OUTCOMES,
    UNIFORM_SPHERE_UNIFORMITY,
    classify_outcome,
    coverage,
    hole_rim,
    largest_hole,
    share_interval,
    sphere_metrics,
)
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
SEED = 0                  # the first seed: seeds SEED .. SEED+SEEDS-1 are trained (the article gives none) {>= 0}
SEEDS = 32                # seeds trained at once as one stacked model: the share that draws each shape {> 0}
PICTURE_OUTCOME = "missing corner"  # the figures show the seed of median coverage of those that drew this: missing corner, ribbon, other or any {nonempty}
OUTCOME_GRID_SIDE = 100   # each seed's shape is measured on the map of an OUTCOME_GRID_SIDE^2 grid {>= 2}
VIEW_SIDE = 40            # each seed's small sphere (seeds.png) shows the map of a VIEW_SIDE^2 grid {>= 2}
WORKERS = 2               # the seeds train in this many groups side by side, one thread each (2: one per core) {> 0}
DEVICE = "auto"           # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"ANIMATION_FRAMES": 30, "GRID_SIDE": 150}  # the article's full 10^4 steps, 32 seeds: ~25 s of training
DRY_RUN = {"STEPS": 30, "SEEDS": 3, "ANIMATION_FRAMES": 4, "GRID_SIDE": 40, "OUTCOME_GRID_SIDE": 30,
           "VIEW_SIDE": 12, "PICTURE_SIZE": 20, "CHECKPOINT_EVERY": 10}
# -----------------------------------------------------------------------------

# A checkpoint made with other settings (or another VARIANT, SEED, SEEDS or grouping) is not resumed.
ARCHITECTURE = ["VARIANT", "SEED", "SEEDS", "WORKERS", *(constant_name(name) for name in SETTING_NAMES)]
BORDER_AREA = 1.0 - (1.0 - 2 * BORDER_BAND) ** 2  # share of the square in its border band (0.19)

# The article's loop, over seeds, draws the missing corner on some and a ribbon on others, as this
# trainer does: "most" holds when more than MOST of the seeds draw the corner and ribbons are most
# of the rest (README: 22-27 of 32 seeds across numeric environments).
MOST_CLAIM = "most of the article's seeds draw the sphere with a missing corner, the rest fold into ribbons"
MOST = 0.5
ARTICLE_LOOP_SHARE = "4/10 corner, 5/10 ribbon (seeds 0-9, an independent restatement of the article's loop)"
DROPOUT_SPHERE_COVERAGE = 0.8  # the noisy training batch "forms a sphere": the seeds' median coverage with dropout on


def configure(argv) -> tuple:
    """The run and its SphereSettings: defaults < VARIANT < --quick / --dry-run < --set."""
    run = start_run("sphere_mapping", globals(), argv, framework="torch", variants=variant_constants(),
                    checkpoints=True)
    return run, settings_from(SphereSettings, run.cfg)


def snapshot_steps(steps: int, frames: int) -> list[int]:
    """Steps at which the animation samples the map: 0, then log-spaced (the sphere forms early)."""
    if frames < 2 or steps < 1:
        return [steps]
    spaced = np.unique(np.round(np.geomspace(1, steps, frames - 1)).astype(int))
    return [0, *spaced.tolist()]


class SeedStack:
    """SEEDS runs of one setup as WORKERS stacked Trainers, one thread each, in lock-step (so one
    checkpoint holds them all); each member is its single run, whatever the grouping."""

    def __init__(self, settings: SphereSettings, seeds: list[int], workers: int, device):
        self.settings, self.seeds = settings, list(seeds)
        chunks = np.array_split(np.array(self.seeds), max(1, min(workers, len(self.seeds))))
        self.groups = [Trainer([settings] * len(chunk), chunk.tolist(), device) for chunk in chunks]
        self.device = self.groups[0].device
        # OpenMP's thread count is per thread: each worker takes the caller's (else all cores, spinning).
        threads = torch.get_num_threads()
        self.pool = (ThreadPoolExecutor(len(self.groups), initializer=torch.set_num_threads, initargs=(threads,))
                     if len(self.groups) > 1 else None)

    @property
    def step(self) -> int:
        return self.groups[0].step

    @property
    def learning_rate(self) -> float:
        return float(self.groups[0].lr[0])

    def train_step(self) -> torch.Tensor:
        """One step of every seed; their losses (SEEDS,), on the device."""
        if self.pool is None:
            return self.groups[0].train_step()
        return torch.cat(list(self.pool.map(Trainer.train_step, self.groups)))

    def evaluate(self, points: torch.Tensor) -> torch.Tensor:
        """Every seed's map of points (n, 2), dropout off: (SEEDS, n, 3)."""
        return torch.cat([group.evaluate(points) for group in self.groups])

    def single(self, seed: int) -> Trainer:
        """The run with this seed as a one-member Trainer (its weights; evaluation only)."""
        index = self.seeds.index(seed)
        for group in self.groups:
            if index < group.count:
                trainer = Trainer([self.settings], [seed], self.device)
                trainer.theta = group.theta[index : index + 1].clone()
                trainer.step = group.step
                return trainer
            index -= group.count
        raise IndexError(seed)

    def state_dict(self) -> list[dict]:
        return [group.state_dict() for group in self.groups]

    def load_state_dict(self, states: list[dict]) -> None:
        if len(states) != len(self.groups):
            raise LabError("the checkpoint's seeds were trained in another grouping; rerun with --fresh")
        for group, state in zip(self.groups, states, strict=True):
            group.load_state_dict(state)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def resume_training(run, cfg, settings: SphereSettings):
    """A fresh SeedStack, or the checkpoint's (weights, Adam, each generator, losses, frames)."""
    stack = SeedStack(settings, list(range(run.seed, run.seed + cfg.SEEDS)), cfg.WORKERS, run.device)
    ckpt = resume(run, f"{cfg.VARIANT}.pt", architecture=ARCHITECTURE, steps=cfg.STEPS, map_location="cpu")
    losses = torch.zeros(cfg.STEPS, cfg.SEEDS, device=stack.device)
    snapshots: list[tuple[int, torch.Tensor]] = []
    if ckpt.state is not None:
        stack.load_state_dict(ckpt.state["groups"])
        losses[: ckpt.step] = ckpt.state["losses"].to(stack.device)
        snapshots = [(step, vectors.to(stack.device)) for step, vectors in ckpt.state["snapshots"]]
    return stack, ckpt, losses, snapshots


def save(ckpt, stack: SeedStack, losses: torch.Tensor, snapshots) -> None:
    save_checkpoint(ckpt.path, {"settings": stack.settings.to_dict(), "seeds": stack.seeds,
                                "groups": stack.state_dict(), "losses": losses[: stack.step].cpu(),
                                "snapshots": [(step, vectors.cpu()) for step, vectors in snapshots],
                                **ckpt.meta(stack.step)})


def train(run, cfg, stack: SeedStack, ckpt, losses: torch.Tensor, snapshots: list) -> bool:
    """Train every seed up to STEPS, a checkpoint every CHECKPOINT_EVERY steps; False when stopped by Ctrl+C."""
    animation_grid = square_grid(cfg.ANIMATION_SIDE, run.device)
    wanted = set(snapshot_steps(cfg.STEPS, cfg.ANIMATION_FRAMES))
    taken = {step for step, _ in snapshots}
    with InterruptGuard() as guard, tqdm(total=cfg.STEPS, initial=stack.step,
                                         desc=f"training {cfg.SEEDS} seeds (median loss)") as bar:
        while stack.step < cfg.STEPS:
            if stack.step in wanted and stack.step not in taken:
                snapshots.append((stack.step, stack.evaluate(animation_grid)))
                taken.add(stack.step)
            step = stack.step
            losses[step] = stack.train_step()
            bar.update(1)
            if stack.step % cfg.LOG_EVERY == 0 or stack.step == cfg.STEPS:
                # Reading the loss waits for the device: once per interval, not every step.
                recent = float(losses[max(0, stack.step - cfg.LOG_EVERY) : stack.step].mean(dim=0).median())
                run.log_scalars(stack.step, loss=recent, learning_rate=stack.learning_rate)
                bar.set_postfix(loss=f"{recent:.4g}")
            if stack.step % cfg.CHECKPOINT_EVERY == 0:
                save(ckpt, stack, losses, snapshots)
            if guard.requested:
                break
    if stack.step == cfg.STEPS and cfg.STEPS not in taken:
        snapshots.append((cfg.STEPS, stack.evaluate(animation_grid)))
    save(ckpt, stack, losses, snapshots)
    return not guard.requested


def measure_seeds(cfg, stack: SeedStack) -> tuple[list[dict], np.ndarray]:
    """Each seed's metrics on the OUTCOME_GRID_SIDE^2 grid, its shape, its coverage with dropout on;
    and the centre of each seed's largest hole."""
    grid = square_grid(cfg.OUTCOME_GRID_SIDE, stack.device)
    square = grid.cpu().numpy()
    maps = stack.evaluate(grid).cpu().numpy()
    rows, centres = [], []
    for seed, vectors in zip(stack.seeds, tqdm(maps, desc="each seed's shape", leave=False), strict=True):
        hole_deg, centre = largest_hole(vectors)
        reached = coverage(vectors)
        noisy = stack.single(seed).evaluate_with_dropout(grid, torch.Generator().manual_seed(seed))[0]
        rows.append({"seed": seed, "outcome": classify_outcome(reached, hole_deg), "coverage": reached,
                     "largest_hole_deg": hole_deg,
                     "rim_on_border": hole_rim(square, vectors, hole=(hole_deg, centre))["rim_on_border"],
                     "dropout_on_coverage": coverage(noisy.cpu().numpy())})
        centres.append(centre)
    return rows, np.array(centres)


def summarise_outcomes(rows: list[dict]) -> dict:
    """How many seeds drew each shape, and each share with its 95% Wilson interval."""
    summary = {"seeds": len(rows)}
    for outcome in OUTCOMES:
        count = sum(row["outcome"] == outcome for row in rows)
        share, low, high = share_interval(count, len(rows))
        key = outcome.replace(" ", "_")
        summary.update({f"{key}_seeds": count, f"{key}_share": share, f"{key}_share_low": low,
                        f"{key}_share_high": high})
    return summary


def check_outcome(wanted: str) -> str:
    if wanted != "any" and wanted not in OUTCOMES:
        raise LabError(f"PICTURE_OUTCOME {wanted!r} is not a shape; use one of: {', '.join(OUTCOMES)}, any")
    return wanted


def pick_seed(rows: list[dict], wanted: str) -> tuple[dict, str]:
    """The pictured seed: of those that drew `wanted` (all for "any", or if none did), the one whose
    coverage is nearest their median (ties: the lower seed); coverage, not the hole, tells a typical
    sheet from a thin folded one. Returns its row and the rule as said in captions."""
    pool = [row for row in rows if wanted == "any" or row["outcome"] == wanted]
    what = "all seeds" if wanted == "any" else f"the {len(pool)}/{len(rows)} seeds that drew a {wanted}"
    if not pool:
        pool, what = rows, f"all {len(rows)} seeds (none drew a {wanted})"
    median = float(np.median([row["coverage"] for row in pool]))
    chosen = min(pool, key=lambda row: (abs(row["coverage"] - median), row["seed"]))
    return chosen, f"seed {chosen['seed']}: of {what}, the one whose coverage is nearest their median ({median:.3f})"


def write_seeds_table(run, rows: list[dict]) -> None:
    lines = ["seed,outcome,coverage,largest_hole_deg,rim_on_border,dropout_on_coverage"]
    lines += [f"{r['seed']},{r['outcome']},{r['coverage']:.4f},{r['largest_hole_deg']:.2f},{r['rim_on_border']:.3f},"
              f"{r['dropout_on_coverage']:.4f}" for r in rows]
    atomic_write_text(run.path("seeds.csv"), "\n".join(lines) + "\n")
    run.add_artifact(run.path("seeds.csv"), "every seed: its shape, coverage, largest hole (csv)")


def measure(run, cfg, trainer: Trainer, seed: int) -> tuple[dict, np.ndarray, dict]:
    """The pictured seed's metrics on the GRID_SIDE^2 grid, dropout off and on, and its hole's rim."""
    grid = square_grid(cfg.GRID_SIDE, run.device)
    vectors = trainer.evaluate(grid)[0].cpu().numpy()
    square = grid.cpu().numpy()
    metrics = sphere_metrics(vectors, square)
    rim_mask = metrics.pop("rim_mask")
    metrics["max_unit_norm_error"] = float(np.abs(np.linalg.norm(vectors, axis=1) - 1.0).max())
    # The article's first 3D figure shows the last training batch, dropout on: how much is noise.
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    noisy = trainer.evaluate_with_dropout(grid, generator)[0].cpu().numpy()
    metrics.update({f"dropout_on_{name}": value for name, value in sphere_metrics(noisy).items()})
    print(f"seed {seed}: coverage {metrics['coverage']:.4f} (1 = every 5-degree cell reached) | "
          f"uniformity {metrics['uniformity']:.3f} (uniform sphere {UNIFORM_SPHERE_UNIFORMITY:.3f}) | "
          f"largest hole {metrics['largest_hole_deg']:.1f} deg (the missing corner); its rim is "
          f"{100 * metrics['rim_on_border']:.0f}% square border (the border band is 19% of the area)")
    rim = {"rim_mask": rim_mask, "hole_deg": metrics["largest_hole_deg"], "rim_on_border": metrics["rim_on_border"],
           "border_area": BORDER_AREA}
    return metrics, vectors, rim


def draw(run, cfg, trainer: Trainer, seed: int, rule: str, losses: np.ndarray, snapshots, picture, picture_note,
         rim) -> None:
    """Every figure of the pictured seed: loss, square, sphere, painted picture, hole, GIF."""
    add = run.add_artifact
    rng = np.random.default_rng(seed)
    square_points = rng.random((cfg.SCATTER_POINTS, 2)) - 0.5  # as the article's last batch
    square_colours = figures.position_colours(square_points)
    square_hex = figures.hex_colours(square_colours)
    sphere_points = trainer.evaluate(torch.as_tensor(square_points))[0].cpu().numpy()
    which = f"{cfg.VARIANT}, {rule}"
    add(figures.png_loss(losses, run.path("loss.png")), f"training loss (log y), seed {seed}")
    add(figures.plotly_loss(losses, run.path("loss.html")), "training loss, interactive")
    add(figures.png_square(square_points, square_colours, run.path("square.png"),
                           "the square, red from x, green from y"), "the square's points, coloured by position")
    add(figures.plotly_square(square_points, square_hex, run.path("square.html"),
                              "the square's points (red from x, green from y)"), "the square, interactive")
    add(figures.png_sphere_views(sphere_points, square_colours, run.path("sphere.png"),
                                 f"the same points on the sphere ({cfg.VARIANT}, seed {seed}, step {trainer.step})"),
        f"the square's points mapped onto the sphere, front and back ({which})")
    generator = torch.Generator(device=trainer.device).manual_seed(seed + 1)
    noisy_points = trainer.evaluate_with_dropout(torch.as_tensor(square_points), generator)[0].cpu().numpy()
    add(figures.png_sphere_views(noisy_points, square_colours, run.path("sphere_dropout_on.png"),
                                 f"the same points with dropout on (the article's training-batch figure), seed {seed}"),
        "the square's points on the sphere with dropout on, as the article drew its training batch")
    add(figures.plotly_sphere(sphere_points, square_hex, run.path("sphere.html"),
                              f"the square on the sphere ({cfg.VARIANT}, seed {seed})"), "the sphere, interactive 3D")

    # The picture painted onto the sphere (the article's "render with image").
    print(f"painting {picture_note} resized to {cfg.PICTURE_SIZE}x{cfg.PICTURE_SIZE} onto {rule}")
    pixel_points = figures.picture_points(cfg.PICTURE_SIZE)
    pixel_colours = picture.reshape(-1, 3)
    pixel_hex = figures.hex_colours(pixel_colours)
    painted = trainer.evaluate(torch.as_tensor(pixel_points))[0].cpu().numpy()
    add(figures.png_square(pixel_points, pixel_colours, run.path("picture_square.png"),
                           "the picture sampled on the square", flip_y=True), "the picture on the square")
    add(figures.plotly_square(pixel_points, pixel_hex, run.path("picture_square.html"),
                              "the picture sampled on the square", flip_y=True), "the picture on the square, interactive")
    add(figures.png_sphere_views(painted, pixel_colours, run.path("picture_sphere.png"),
                                 f"the picture painted onto the sphere ({cfg.VARIANT}, seed {seed})\n{rule}", size=3),
        f"the picture painted onto the sphere, front and back ({which})")
    add(figures.plotly_sphere(painted, pixel_hex, run.path("picture_sphere.html"),
                              f"the picture painted onto the sphere (seed {seed})", size=2),
        "the painted sphere, interactive 3D")
    add(figures.png_hole_in_square(square_grid(cfg.GRID_SIDE).numpy(), rim, run.path("hole_in_square.png")),
        f"where the largest hole sits in the square: the grid points that map onto its rim (seed {seed})")

    # The animation: the map of a small grid at log-spaced steps, fixed camera.
    animation_colours = figures.position_colours(square_grid(cfg.ANIMATION_SIDE).numpy())
    frames = figures.animation_frames([(step, vectors.cpu().numpy()) for step, vectors in sorted(snapshots, key=lambda s: s[0])],
                                      animation_colours, losses)
    write_gif(tqdm(frames, total=len(snapshots), desc="animation frames"), run.path("forming.gif"), fps=8)
    add(run.path("forming.gif"), f"the sphere forming during training (log-spaced steps, seed {seed})")


def draw_seeds(run, cfg, stack: SeedStack, rows: list[dict], centres: np.ndarray, pictured: int) -> None:
    """Every seed's sphere side by side (its hole facing the camera) and the shapes' histogram."""
    view_grid = square_grid(cfg.VIEW_SIDE, stack.device)
    maps = stack.evaluate(view_grid).cpu().numpy()
    colours = figures.position_colours(view_grid.cpu().numpy())
    run.add_artifact(figures.png_seed_spheres(maps, colours, rows, centres, pictured, run.path("seeds.png"),
                                              f"{cfg.VARIANT}, {cfg.STEPS} steps: every seed's map of the square"),
                     "every seed's sphere, its largest hole at the top (in red: the pictured seed)")
    run.add_artifact(figures.png_outcomes(rows, run.path("outcomes.png"),
                                          f"{cfg.VARIANT}, {len(rows)} seeds, {cfg.STEPS} steps"),
                     "the seeds' coverage and largest hole: the two shapes and the thresholds between them")


def record_claims(run, cfg, metrics: dict, rows: list[dict], outcomes: dict, rule: str) -> None:
    """The article's pictures as claims over this run's seeds (full profile in the README)."""
    if cfg.VARIANT != "article":
        return
    seed, coverage_share, hole = metrics["pictured_seed"], metrics["coverage"], metrics["largest_hole_deg"]
    run.add_claim("the square wraps into a sphere with a missing corner (dropout off, the painted picture)",
                  f"coverage {coverage_share:.2f}, largest hole {hole:.0f} deg (seed {seed} of {len(rows)}, picked "
                  f"by rule: {rule.split(': ', 1)[1]})",
                  classify_outcome(coverage_share, hole) == "missing corner",
                  full_profile="coverage 0.62, hole 63 deg (seed 27 of 32, 200x200 grid)")
    noisy = np.array([row["dropout_on_coverage"] for row in rows])
    run.add_claim("the training batch (dropout on) forms a sphere",
                  f"coverage with dropout on: median {np.median(noisy):.2f} over {len(rows)} seeds (quartiles "
                  f"{np.quantile(noisy, 0.25):.2f}-{np.quantile(noisy, 0.75):.2f}, range {noisy.min():.2f}-"
                  f"{noisy.max():.2f}; the pictured seed {metrics['dropout_on_coverage']:.2f})",
                  float(np.median(noisy)) >= DROPOUT_SPHERE_COVERAGE,
                  full_profile="median 0.89 over 32 seeds (0.54-0.97)")
    corner, ribbon = outcomes["missing_corner_seeds"], outcomes["ribbon_seeds"]
    low, high = outcomes["missing_corner_share_low"], outcomes["missing_corner_share_high"]
    run.add_claim(MOST_CLAIM,
                  f"missing corner {corner}/{len(rows)} seeds ({100 * corner / len(rows):.0f}%, 95% Wilson interval "
                  f"{100 * low:.0f}-{100 * high:.0f}%), ribbon {ribbon}/{len(rows)}; the article's own loop: "
                  f"{ARTICLE_LOOP_SHARE}",
                  corner > MOST * len(rows) and ribbon > len(rows) - corner - ribbon,
                  full_profile="27/32 (84%, interval 68-93%), ribbon 5/32")


@exit_on_lab_error
def main(argv=None):
    run, settings = configure(argv)
    cfg = run.cfg
    check_outcome(cfg.PICTURE_OUTCOME)  # a misspelt shape fails before training
    picture, picture_note = figures.load_picture(cfg.PICTURE, cfg.PICTURE_SIZE)  # bad paths fail early
    print(f"variant {cfg.VARIANT}: {DESCRIPTIONS[cfg.VARIANT]}" + ("" if not VARIANTS[cfg.VARIANT] else f" ({settings})"))
    stack, ckpt, losses, snapshots = resume_training(run, cfg, settings)
    completed = train(run, cfg, stack, ckpt, losses, snapshots)
    rows, centres = measure_seeds(cfg, stack)
    outcomes = summarise_outcomes(rows)
    chosen, rule = pick_seed(rows, cfg.PICTURE_OUTCOME)
    print(", ".join(f"{outcome}: {outcomes[outcome.replace(' ', '_') + '_seeds']}" for outcome in OUTCOMES)
          + f" of {len(rows)} seeds; pictured: {rule}")
    index = stack.seeds.index(chosen["seed"])
    pictured = stack.single(chosen["seed"])
    losses = losses[: stack.step, index].cpu().numpy()
    metrics, _, rim = measure(run, cfg, pictured, chosen["seed"])
    draw(run, cfg, pictured, chosen["seed"], rule, losses, [(step, maps[index]) for step, maps in snapshots],
         picture, picture_note, rim)
    draw_seeds(run, cfg, stack, rows, centres, chosen["seed"])
    write_seeds_table(run, rows)
    stack.close()
    metrics.update({"variant": cfg.VARIANT, "steps_trained": stack.step, "pictured_seed": chosen["seed"],
                    "picture_rule": rule, **outcomes, "per_seed": rows,
                    "final_loss": float(losses[-100:].mean()) if len(losses) else None,
                    "first_loss": float(losses[0]) if len(losses) else None,
                    "uniform_sphere_uniformity": UNIFORM_SPHERE_UNIFORMITY})
    record_claims(run, cfg, metrics, rows, outcomes, rule)
    run.finish(metrics, status="complete" if completed else "interrupted")
    return metrics


if __name__ == "__main__":
    main()
