"""Beyond the article: close the sphere. The article's setup over 10 seeds against variants.

Run: python -m sphere_mapping.experiments [--quick] [--set VARIANTS="['article','wide_uniformity']"]

For every variant (variants.py) and seed, train for STEPS steps and measure the map of a
GRID_SIDE^2 grid of the square (metrics.py): coverage, uniformity, largest hole. Goal of the
issue: a variant with coverage >= 0.99 and largest hole <= 5 degrees on most seeds, while the
article's variant keeps its "missing corner". Writes a table (results.md, results.csv), a plot of
the three metrics per variant and seed, and front/back views of each variant's seed-0 map.
Results are cached per (variant, seed, settings) so a rerun only trains what is new.
"""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lab import LabError, exit_on_lab_error, start_run  # noqa: E402
from lab.checkpoint import atomic_write_text  # noqa: E402
from lab.plots import save_figure  # noqa: E402
from sphere_mapping import figures  # noqa: E402
from sphere_mapping.metrics import UNIFORM_SPHERE_UNIFORMITY, sphere_metrics  # noqa: E402
from sphere_mapping.model import Trainer, square_grid  # noqa: E402
from sphere_mapping.variants import DESCRIPTIONS, check_variant, settings_for  # noqa: E402

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
VARIANTS = ["article", "uniformity", "uniformity_cover", "wide_cover"]  # names from variants.py
SEEDS = 10                # seeds 0 .. SEEDS-1 per variant (issue: 10)
STEPS = 10_000            # optimisation steps per run (article: 10^4)
GRID_SIDE = 200           # metrics on the map of a GRID_SIDE^2 grid of the square (issue: 200)
GOAL_COVERAGE = 0.99      # the goal for a closed sphere
GOAL_HOLE_DEG = 5.0       # the goal for the largest hole
VIEW_SIDE = 60            # the seed-0 views show the map of a VIEW_SIDE^2 grid
TORCH_THREADS = 1         # torch threads on CPU: one is fastest for this tiny net
SEED = 0                  # offset added to every seed (0: seeds 0 .. SEEDS-1)
DEVICE = "auto"           # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"STEPS": 600, "SEEDS": 2, "GRID_SIDE": 100}
DRY_RUN = {"STEPS": 20, "SEEDS": 1, "GRID_SIDE": 30}
# -----------------------------------------------------------------------------

METRICS = ("coverage", "uniformity", "largest_hole_deg")


def train_one(variant: str, seed: int, steps: int, grid_side: int, view_side: int, device: str) -> dict:
    trainer = Trainer(settings_for(variant, steps=steps), device, generator_seed=seed)
    for _ in tqdm(range(steps), desc=f"{variant} seed {seed}", leave=False):
        trainer.train_step()
    vectors = trainer.evaluate(square_grid(grid_side, device)).cpu().numpy()
    result = {"variant": variant, "seed": seed, **sphere_metrics(vectors),
              "final_loss": float(trainer.losses[-100:].mean())}
    result["view"] = trainer.evaluate(square_grid(view_side, device)).cpu().numpy().round(4).tolist()
    return result


def summarise(results: list[dict], variants: list[str], goal_coverage: float, goal_hole: float) -> list[dict]:
    rows = []
    for variant in variants:
        own = [r for r in results if r["variant"] == variant]
        closed = sum(r["coverage"] >= goal_coverage and r["largest_hole_deg"] <= goal_hole for r in own)
        row = {"variant": variant, "seeds": len(own), "closed_seeds": closed}
        for name in METRICS:
            values = np.array([r[name] for r in own])
            row[f"{name}_median"] = float(np.median(values))
            row[f"{name}_min"] = float(values.min())
            row[f"{name}_max"] = float(values.max())
        rows.append(row)
    return rows


def write_tables(results: list[dict], summary: list[dict], run, cfg) -> None:
    lines = ["variant,seed,coverage,uniformity,largest_hole_deg,final_loss"]
    lines += [f"{r['variant']},{r['seed']},{r['coverage']:.4f},{r['uniformity']:.4f},"
              f"{r['largest_hole_deg']:.2f},{r['final_loss']:.4g}" for r in results]
    atomic_write_text(run.path("results.csv"), "\n".join(lines) + "\n")
    md = [f"{cfg.STEPS} steps, {cfg.GRID_SIDE}x{cfg.GRID_SIDE} grid; goal: coverage >= {cfg.GOAL_COVERAGE}"
          f" and largest hole <= {cfg.GOAL_HOLE_DEG} deg", "",
          "| variant | what | seeds closed | coverage median [min, max] | uniformity median [min, max] "
          "| largest hole deg median [min, max] |", "|---|---|---|---|---|---|"]
    for row in summary:
        cells = [f"{row[f'{m}_median']:.3f} [{row[f'{m}_min']:.3f}, {row[f'{m}_max']:.3f}]" for m in METRICS[:2]]
        cells.append(f"{row['largest_hole_deg_median']:.1f} [{row['largest_hole_deg_min']:.1f}, "
                     f"{row['largest_hole_deg_max']:.1f}]")
        md.append(f"| {row['variant']} | {DESCRIPTIONS[row['variant']]} | {row['closed_seeds']}/{row['seeds']} | "
                  + " | ".join(cells) + " |")
    atomic_write_text(run.path("results.md"), "\n".join(md) + "\n")
    print("\n".join(md))


def plot_metrics(results: list[dict], variants: list[str], cfg, path):
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    goals = {"coverage": cfg.GOAL_COVERAGE, "uniformity": UNIFORM_SPHERE_UNIFORMITY,
             "largest_hole_deg": cfg.GOAL_HOLE_DEG}
    labels = {"coverage": "coverage (higher is better)", "uniformity": "uniformity (lower is better)",
              "largest_hole_deg": "largest hole, degrees (lower is better)"}
    jitter = np.random.default_rng(0)
    for axis, name in zip(axes, METRICS, strict=True):
        for index, variant in enumerate(variants):
            values = [r[name] for r in results if r["variant"] == variant]
            axis.scatter(index + jitter.uniform(-0.12, 0.12, len(values)), values, s=25, alpha=0.8)
            axis.hlines(np.median(values), index - 0.3, index + 0.3, color="black")
        axis.axhline(goals[name], color="red", linestyle="--", linewidth=1,
                     label="goal" if name != "uniformity" else "uniform sphere")
        axis.set_xticks(range(len(variants)), variants, rotation=20)
        axis.set_title(labels[name], fontsize=10)
        axis.legend(fontsize=8)
    axes[2].set_yscale("log")
    figure.suptitle(f"{cfg.SEEDS} seeds per variant, {cfg.STEPS} steps (bar: median)")
    return save_figure(figure, path, dpi=100)


def plot_views(results: list[dict], variants: list[str], cfg, path):
    colours = figures.position_colours(square_grid(cfg.VIEW_SIDE).numpy())
    figure = plt.figure(figsize=(8, 4 * len(variants)))
    for row, variant in enumerate(variants):
        first = min((r for r in results if r["variant"] == variant), key=lambda r: r["seed"])
        vectors = np.asarray(first["view"])
        for column, azim in enumerate((figures.CAMERA["azim"], figures.CAMERA["azim"] + 180.0)):
            axis = figure.add_subplot(len(variants), 2, 2 * row + column + 1, projection="3d")
            elev, az = np.radians(figures.CAMERA["elev"]), np.radians(azim)
            order = np.argsort(vectors @ np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)]))
            axis.scatter(*vectors[order].T, c=colours[order], s=3, linewidths=0, depthshade=False)
            axis.view_init(elev=figures.CAMERA["elev"], azim=azim)
            figures.sphere_axis(axis, "")
            axis.set_title(f"{variant}, seed {first['seed']}: coverage {first['coverage']:.3f}, "
                           f"hole {first['largest_hole_deg']:.1f} deg", fontsize=8)
    return save_figure(figure, path, dpi=90)


@exit_on_lab_error
def main(argv=None):
    run = start_run("sphere_mapping", globals(), argv, framework="torch")
    cfg = run.cfg
    if not cfg.VARIANTS:
        raise LabError("VARIANTS is empty; list at least one, e.g. --set VARIANTS=\"['article']\"")
    variants = [check_variant(name) for name in cfg.VARIANTS]
    if cfg.SEEDS < 1:
        raise LabError(f"SEEDS must be at least 1, got {cfg.SEEDS}")
    cache_path = run.checkpoint_path("experiments_cache.json")
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() and not run.fresh else {}
    results = []
    # Seed-major order: an interrupted run still has every variant for the seeds it finished.
    jobs = [(variant, cfg.SEED + offset) for offset in range(cfg.SEEDS) for variant in variants]
    for variant, seed in tqdm(jobs, desc="runs (variant x seed)"):
        settings = repr(sorted(vars(settings_for(variant, steps=cfg.STEPS)).items()))
        key = f"{variant}|{seed}|{cfg.GRID_SIDE}|{cfg.VIEW_SIDE}|{run.device}|{settings}"
        if key not in cache:
            cache[key] = train_one(variant, seed, cfg.STEPS, cfg.GRID_SIDE, cfg.VIEW_SIDE, run.device)
            atomic_write_text(cache_path, json.dumps(cache))  # each finished run survives a Ctrl+C
        result = cache[key]
        tqdm.write(f"{variant:>16} seed {seed}: coverage {result['coverage']:.3f}  uniformity "
                   f"{result['uniformity']:.3f}  largest hole {result['largest_hole_deg']:.1f} deg")
        results.append(result)

    summary = summarise(results, variants, cfg.GOAL_COVERAGE, cfg.GOAL_HOLE_DEG)
    write_tables(results, summary, run, cfg)
    run.add_artifact(plot_metrics(results, variants, cfg, run.path("metrics_by_variant.png")),
                     "coverage, uniformity and largest hole per variant and seed")
    run.add_artifact(plot_views(results, variants, cfg, run.path("views_seed0.png")),
                     "each variant's map (first seed), front and back")
    run.add_artifact(run.path("results.md"), "the table (markdown)")
    run.add_artifact(run.path("results.csv"), "every run (csv)")
    metrics = {row["variant"]: {k: v for k, v in row.items() if k != "variant"} for row in summary}
    run.finish({"per_variant": metrics, "steps": cfg.STEPS, "seeds": cfg.SEEDS})
    return summary


if __name__ == "__main__":
    main()
