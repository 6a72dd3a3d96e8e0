"""Beyond the article: close the sphere. The article's setup over seeds against variants.

Run: python -m sphere_mapping.experiments [--quick] [--set VARIANTS="['article','wide_uniformity']"]
     [--set OVERRIDES="{'learning_rate': 0.02, 'lr_step': 2000}"]

Every variant (variants.py) and seed trains for STEPS steps; the map of a GRID_SIDE^2 grid is
measured (metrics.py). Goal: coverage >= 0.99 and largest hole <= 5 degrees on most seeds. Writes
results.md / results.csv, a plot of the metrics, and views of each variant's first seed.

Runs of the same shapes train as one stacked model (model.Trainer), a group, split so that every
worker has one. Each group is a cell of lab.executor (`group_cell`): WORKERS at a time in threads
here, or one Ray task each with a cluster address (RAY_ADDRESS or --set CLUSTER=...). A cell keeps
its checkpoint (every CHECKPOINT_EVERY steps, and its results at the end) in its own folder, so a
rerun or a retried task goes on from there; finished runs are cached per (variant, seed, settings).
"""

import hashlib
import json
import shutil
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, atomic_write_text, lock_folder, resume, save_checkpoint
from lab.executor import Cell, cluster_address, failure_summary, run_cells
from lab.paths import read_text_file
from lab.plots import save_figure
from lab.scalars import ScalarLog
from sphere_mapping import figures
from sphere_mapping.metrics import OUTCOMES, UNIFORM_SPHERE_UNIFORMITY, classify_outcome, sphere_metrics
from sphere_mapping.model import TRAINER_VERSION, SphereSettings, Trainer, square_grid
from sphere_mapping.variants import DESCRIPTIONS, check_variant, settings_for

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
VARIANTS = ["article", "uniformity", "uniformity_cover", "wide_cover"]  # names from variants.py
SEEDS = 10                # seeds SEED .. SEED+SEEDS-1 per variant (the goal: 10) {> 0}
STEPS = 10_000            # optimisation steps per run (article: 10^4) {> 0}
OVERRIDES = {}            # settings (model.SphereSettings fields) applied to every variant, a dict (see above)
GRID_SIDE = 200           # metrics on the map of a GRID_SIDE^2 grid of the square (the goal: 200) {>= 2}
GOAL_COVERAGE = 0.99      # the goal for a closed sphere {>= 0, <= 1}
GOAL_HOLE_DEG = 5.0       # the goal for the largest hole {> 0}
VIEW_SIDE = 60            # the views show the map of a VIEW_SIDE^2 grid {>= 2}
CHECKPOINT_EVERY = 2000   # steps between checkpoints of the group in training {> 0}
LOG_EVERY = 100           # steps between loss points in scalars.csv / TensorBoard {> 0}
TORCH_THREADS = 1         # torch threads on CPU: one is fastest for this tiny net {>= 0}
WORKERS = 2               # stacked groups trained side by side here, one thread each (2: one per core here) {> 0}
CLUSTER = ""              # a Ray cluster's address ("host:6379", "auto"); "" reads $RAY_ADDRESS, unset: run here
SEED = 0                  # the first seed (seeds SEED .. SEED+SEEDS-1) {>= 0}
DEVICE = "auto"           # "auto" (CUDA if available), "cpu" or "cuda"
# The quick table runs the variant that closes most seeds (7/10 in the full search), so that "it can be
# closed" does not hang on one or two seeds; a closure at 10^4 steps (3/10 seeds) flipped with the CPU.
QUICK = {"VARIANTS": ["wide_cover_w1000"], "STEPS": 30_000, "GRID_SIDE": 100}
DRY_RUN = {"STEPS": 20, "SEEDS": 2, "GRID_SIDE": 30, "CHECKPOINT_EVERY": 10}
# -----------------------------------------------------------------------------

METRICS = ("coverage", "uniformity", "largest_hole_deg", "rim_on_border")
GROUPS_FOLDER = "groups"  # in the checkpoint folder: one folder per group (cell)
CHECKPOINT_FILE = "group.pt"
# Ctrl+C here: run_all's guard, which the cells running in this process read (a Ray task has its own).
_GUARD_HERE: dict[str, InterruptGuard] = {}


def plan(cfg) -> list[dict]:
    """One job per (variant, seed), with its settings and the key its result is cached under."""
    if not cfg.VARIANTS:
        raise LabError("VARIANTS is empty; list at least one, e.g. --set VARIANTS=\"['article']\"")
    if not isinstance(cfg.OVERRIDES, dict):
        raise LabError(f"OVERRIDES must be a dict of settings, e.g. {{'learning_rate': 0.02}}; got {cfg.OVERRIDES!r}")
    jobs = []
    for variant in [check_variant(name) for name in cfg.VARIANTS]:
        settings = settings_for(variant, cfg.OVERRIDES)
        for seed in range(cfg.SEED, cfg.SEED + cfg.SEEDS):
            key = f"v{TRAINER_VERSION}|{variant}|{seed}|{cfg.STEPS}|{cfg.GRID_SIDE}|{cfg.VIEW_SIDE}|{sorted(settings.to_dict().items())}"
            jobs.append({"variant": variant, "seed": seed, "settings": settings, "key": key})
    return jobs


def group_cell(folder: str, curves: str, jobs: list[dict], steps: int, grid_side: int, view_side: int,
               checkpoint_every: int, log_every: int, device: str, torch_threads: int, position: int = 0):
    """One cell: train the jobs (plain dicts, the same shapes) as one stacked model, resuming the
    checkpoint in `folder`, and measure each; None when stopped by Ctrl+C (the checkpoint is kept)."""
    torch.set_num_threads(torch_threads)  # OpenMP's count is per thread: a new one would spin on every core
    trainer = Trainer([SphereSettings(**job["settings"]) for job in jobs], [job["seed"] for job in jobs], device)

    def checkpoint_path(name: str) -> Path:
        lock_folder(folder)  # one process per cell
        return Path(folder) / name

    ckpt = resume(SimpleNamespace(constants={}, fresh=False, checkpoint_path=checkpoint_path), CHECKPOINT_FILE,
                  steps=steps, map_location="cpu")
    if ckpt.finished and "results" in ckpt.state:
        return ckpt.state["results"]
    tail = torch.zeros(trainer.count, device=trainer.device)  # loss summed over the last 100 steps
    if ckpt.state is not None:
        trainer.load_state_dict(ckpt.state["trainer"])
        tail = ckpt.state["tail"].to(trainer.device)
    variants = sorted({job["variant"] for job in jobs})
    columns = {v: [i for i, job in enumerate(jobs) if job["variant"] == v] for v in variants}
    interval = torch.zeros(trainer.count, device=trainer.device)
    log = ScalarLog(Path(curves))

    def save(**results):
        save_checkpoint(ckpt.path, {"trainer": trainer.state_dict(), "tail": tail.cpu(), **ckpt.meta(trainer.step),
                                    **results})

    here = _GUARD_HERE.get("guard")
    with (nullcontext(here) if here else InterruptGuard()) as guard, \
            tqdm(total=steps, initial=trainer.step, position=position,
                 desc=f"{trainer.count} runs of {'+'.join(variants)} (median loss)") as bar:
        while trainer.step < steps and not guard.requested:
            losses = trainer.train_step()
            interval += losses
            if trainer.step > steps - 100:
                tail += losses
            bar.update(1)
            if trainer.step % log_every == 0:
                means = (interval / log_every).cpu()
                interval.zero_()
                medians = {f"loss_{v}": float(means[c].median()) for v, c in columns.items()}
                log.log(trainer.step, **medians)
                bar.set_postfix({v[-12:]: f"{m:.3g}" for v, m in medians.items()})
            if trainer.step % checkpoint_every == 0:
                save()
    log.close()
    if trainer.step < steps:
        save()
        return None
    results = measure_group(trainer, jobs, tail / min(100, steps), grid_side, view_side)
    save(results=results)
    return results


def measure_group(trainer: Trainer, jobs: list[dict], final_losses: torch.Tensor, grid_side: int,
                  view_side: int) -> list[dict]:
    """Each member's metrics on the grid_side^2 grid, where its hole sits, and its view grid."""
    grid = square_grid(grid_side, trainer.device)
    maps = trainer.evaluate(grid).cpu().numpy()
    views = trainer.evaluate(square_grid(view_side, trainer.device)).cpu().numpy()
    square = grid.cpu().numpy()
    results = []
    for index, job in enumerate(tqdm(jobs, desc="metrics (coverage, hole)", leave=False)):
        metrics = sphere_metrics(maps[index], square)
        metrics.pop("rim_mask")
        results.append({"variant": job["variant"], "seed": job["seed"], **metrics,
                        "final_loss": float(final_losses[index]), "view": views[index].round(4).tolist()})
    return results


def read_cache(path: Path) -> dict:
    """The results measured so far; an unreadable cache (a write cut short) is measured again."""
    try:
        cache = json.loads(read_text_file(path, "the results cache"))
    except (LabError, json.JSONDecodeError) as error:
        print(f"note: the results cache {path} cannot be read ({error}); its runs are trained again")
        return {}
    return cache if isinstance(cache, dict) else {}


def group_cells(run, cfg, missing: list[dict]) -> list[Cell]:
    """The jobs to train as cells: one per group of shapes, halved until every worker has one (a
    member's numbers do not depend on its group)."""
    by_shape: dict[tuple, list[dict]] = {}
    for job in missing:
        by_shape.setdefault(job["settings"].shape_key, []).append(job)
    groups = list(by_shape.values())
    while groups and len(groups) < cfg.WORKERS and max(len(group) for group in groups) > 1:
        largest = max(groups, key=len)
        groups.remove(largest)
        groups += [largest[: len(largest) // 2], largest[len(largest) // 2 :]]
    cells = []
    for position, jobs in enumerate(groups, start=1):
        name = "group-" + hashlib.sha1(("\n".join(job["key"] for job in jobs)).encode()).hexdigest()[:12]
        plain = [{**job, "settings": job["settings"].to_dict()} for job in jobs]
        cells.append(Cell(name, "sphere_mapping.experiments:group_cell", {
            "folder": str((run.checkpoint_dir / GROUPS_FOLDER / name).resolve()),
            "curves": str(run.path("groups", name).resolve()), "jobs": plain, "steps": cfg.STEPS,
            "grid_side": cfg.GRID_SIDE, "view_side": cfg.VIEW_SIDE, "checkpoint_every": cfg.CHECKPOINT_EVERY,
            "log_every": cfg.LOG_EVERY, "device": str(run.device), "torch_threads": torch.get_num_threads(),
            "position": position}, resources={"num_cpus": 1, "num_gpus": int(str(run.device).startswith("cuda"))}))
    return cells


def run_all(run, cfg, jobs: list[dict]) -> tuple[list[dict], bool]:
    """Every job's result: cached ones read, the others trained as cells (group_cell)."""
    cache_path = run.checkpoint_path("experiments_cache.json")
    cache = read_cache(cache_path) if cache_path.is_file() and not run.fresh else {}
    missing = [job for job in jobs if job["key"] not in cache]
    cells = group_cells(run, cfg, missing)
    if run.fresh:
        for cell in cells:
            shutil.rmtree(cell.kwargs["folder"], ignore_errors=True)
    cluster = cluster_address(cfg.CLUSTER)
    workers = max(1, min(cfg.WORKERS, len(cells)))
    print(f"{len(jobs)} runs: {len(jobs) - len(missing)} cached, {len(missing)} to train in {len(cells)} stacked "
          f"group(s), " + (f"on the Ray cluster at {cluster}" if cluster else f"{workers} at a time"))
    with InterruptGuard() as guard:
        _GUARD_HERE["guard"] = guard
        try:
            outcomes = run_cells(cells, cluster=cluster, workers=workers, desc="groups")
        finally:
            _GUARD_HERE.clear()
    for cell, outcome in zip(cells, outcomes, strict=True):
        for job, result in zip(cell.kwargs["jobs"], outcome.result or [], strict=False):
            cache[job["key"]] = result
    atomic_write_text(cache_path, json.dumps(cache))
    failures = failure_summary(outcomes)
    if failures:
        raise LabError(f"{len(failures.splitlines())} of {len(cells)} groups failed:\n{failures}\n"
                       "rerun to retry them; the finished runs are kept")
    if guard.requested or not all(outcome.result is not None for outcome in outcomes):
        return [cache[job["key"]] for job in jobs if job["key"] in cache], False
    results = [cache[job["key"]] for job in jobs]
    for result in results:
        tqdm.write(f"{result['variant']:>16} seed {result['seed']}: coverage {result['coverage']:.3f}  uniformity "
                   f"{result['uniformity']:.3f}  largest hole {result['largest_hole_deg']:.1f} deg, rim "
                   f"{100 * result['rim_on_border']:.0f}% square border")
    return results, True


def summarise(results: list[dict], variants: list[str], goal_coverage: float, goal_hole: float) -> list[dict]:
    """Per variant: seeds, seeds closed, and median / min / max of each metric over all its seeds."""
    rows = []
    for variant in variants:
        own = [r for r in results if r["variant"] == variant]
        closed = sum(r["coverage"] >= goal_coverage and r["largest_hole_deg"] <= goal_hole for r in own)
        row = {"variant": variant, "seeds": len(own), "closed_seeds": closed}
        shapes = [classify_outcome(r["coverage"], r["largest_hole_deg"]) for r in own]
        row.update({f"{outcome.replace(' ', '_')}_seeds": shapes.count(outcome) for outcome in OUTCOMES})
        for name in METRICS:
            values = np.array([r[name] for r in own], dtype=np.float64)
            row.update({f"{name}_median": float(np.median(values)), f"{name}_min": float(values.min()),
                        f"{name}_max": float(values.max())})
        rows.append(row)
    return rows


def write_tables(results: list[dict], summary: list[dict], run, cfg) -> None:
    lines = ["variant,seed,coverage,uniformity,largest_hole_deg,rim_on_border,rim_at_corners,final_loss"]
    lines += [f"{r['variant']},{r['seed']},{r['coverage']:.4f},{r['uniformity']:.4f},{r['largest_hole_deg']:.2f},"
              f"{r['rim_on_border']:.3f},{r['rim_at_corners']:.3f},{r['final_loss']:.4g}" for r in results]
    atomic_write_text(run.path("results.csv"), "\n".join(lines) + "\n")
    md = [f"{cfg.STEPS} steps, {cfg.GRID_SIDE}x{cfg.GRID_SIDE} grid; goal: coverage >= {cfg.GOAL_COVERAGE}"
          f" and largest hole <= {cfg.GOAL_HOLE_DEG} deg; rim on border: share of the hole's rim that comes"
          " from the square's outer 5% band (19% of its area)", "",
          "| variant | what | seeds closed | shapes: corner / ribbon / other | coverage median [min, max] "
          "| uniformity median [min, max] | largest hole deg median [min, max] | rim on border median |",
          "|---|---|---|---|---|---|---|---|"]
    for row in summary:
        cells = [f"{row[f'{m}_median']:.3f} [{row[f'{m}_min']:.3f}, {row[f'{m}_max']:.3f}]" for m in METRICS[:2]]
        cells.append(f"{row['largest_hole_deg_median']:.1f} [{row['largest_hole_deg_min']:.1f}, "
                     f"{row['largest_hole_deg_max']:.1f}]")
        cells.append(f"{row['rim_on_border_median']:.2f}")
        shapes = f"{row['missing_corner_seeds']} / {row['ribbon_seeds']} / {row['other_seeds']}"
        md.append(f"| {row['variant']} | {DESCRIPTIONS[row['variant']]} | {row['closed_seeds']}/{row['seeds']} | "
                  f"{shapes} | " + " | ".join(cells) + " |")
    atomic_write_text(run.path("results.md"), "\n".join(md) + "\n")
    print("\n".join(md))


def plot_metrics(results: list[dict], variants: list[str], cfg, path):
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    goals = {"coverage": cfg.GOAL_COVERAGE, "uniformity": UNIFORM_SPHERE_UNIFORMITY,
             "largest_hole_deg": cfg.GOAL_HOLE_DEG}
    labels = {"coverage": "coverage (higher is better)", "uniformity": "uniformity (lower is better)",
              "largest_hole_deg": "largest hole, degrees (lower is better)"}
    jitter = np.random.default_rng(0)
    for axis, name in zip(axes, METRICS[:3], strict=True):
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
        figures.sphere_views(figure, len(variants), row, np.asarray(first["view"]), colours, 3, fontsize=8,
                             title=f"{variant}, seed {first['seed']}: coverage {first['coverage']:.3f}, "
                                   f"hole {first['largest_hole_deg']:.1f} deg")
    return save_figure(figure, path, dpi=90)


def record_claims(run, cfg, summary: list[dict]) -> None:
    """The article's "cannot close it" against the best variant (the article's share of shapes,
    its other claim over seeds, is train.py's)."""
    best = min(summary, key=lambda row: row["largest_hole_deg_median"])
    closed = sum(row["closed_seeds"] for row in summary)
    run.add_claim("a map from the square cannot be closed into a whole sphere (the author tried for a day)",
                  f"best variant {best['variant']}: hole median {best['largest_hole_deg_median']:.1f} deg, "
                  f"{best['closed_seeds']}/{best['seeds']} seeds closed to <= {cfg.GOAL_HOLE_DEG:g} deg",
                  closed == 0, full_profile="wide_cover_w1000 at 3x10^4 steps: hole median 4.5 deg, 7/10 seeds closed (README)")


@exit_on_lab_error
def main(argv=None):
    run = start_run("sphere_mapping", globals(), argv, framework="torch", checkpoints=True)
    cfg = run.cfg
    jobs = plan(cfg)
    variants = list(dict.fromkeys(job["variant"] for job in jobs))
    results, completed = run_all(run, cfg, jobs)
    if not results:
        run.finish({"runs": 0}, status="interrupted")
        return []
    variants = [v for v in variants if any(r["variant"] == v for r in results)]
    summary = summarise(results, variants, cfg.GOAL_COVERAGE, cfg.GOAL_HOLE_DEG)
    write_tables(results, summary, run, cfg)
    run.add_artifact(plot_metrics(results, variants, cfg, run.path("metrics_by_variant.png")),
                     "coverage, uniformity and largest hole per variant and seed")
    run.add_artifact(plot_views(results, variants, cfg, run.path("views_seed0.png")),
                     "each variant's map (first seed), front and back")
    run.add_artifact(run.path("results.md"), "the table (markdown)")
    run.add_artifact(run.path("results.csv"), "every run (csv)")
    record_claims(run, cfg, summary)
    metrics = {row["variant"]: {k: v for k, v in row.items() if k != "variant"} for row in summary}
    run.finish({"per_variant": metrics, "steps": cfg.STEPS, "seeds": cfg.SEEDS},
               status="complete" if completed else "interrupted")
    return summary


if __name__ == "__main__":
    main()
