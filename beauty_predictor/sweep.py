"""The frontier MAE(X,Y) vs MAE(Y,Z) over K2/K1, for two improvers and two references. Run: python -m beauty_predictor.sweep [--quick]

Beyond the article (k1 = k2 = 0.5): an improver of each SWEEP_VARIANTS is trained per ratio K2/K1
(K1 + K2 = 1) and lands at one point on held-out crops, beside two training-free references,
Gaussian blurs of X and blends Y = X + t*(Z_X - X). An improver "does more than blur" when its
MAE(Y,Z) is at least BEAT_BLUR_BY below the interpolated blur's of equal MAE(X,Y). Each (variant,
ratio) is a cell (beauty_predictor.sweep_cell) that lab.executor runs here one after another, or as
one Ray task each with a cluster's address (RAY_ADDRESS or --set CLUSTER=...); a cell resumes from
its own checkpoint, and the summary names the cells that failed for good, and why.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict

import numpy as np

from beauty_predictor import claims
from beauty_predictor import common as bc
from beauty_predictor import metrics as bmetrics
from beauty_predictor import model as bm
from beauty_predictor.improve import measure, predict_in_chunks, rebuild_in_chunks
from beauty_predictor.settings import check_variant
from beauty_predictor.sweep_cell import CHECKPOINT_FILE, CellPlan, cell_tag
from lab import LabError, exit_on_lab_error, start_run
from lab.executor import Cell, cluster_address, failure_summary, run_cells
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants.
RATIOS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]  # K2/K1 values; K1 + K2 = 1 (the article: 1, i.e. 0.5/0.5)
SWEEP_VARIANTS = ["article", "residual"]  # improvers trained at every ratio
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand) {nonempty}
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels {>= 128}
WIDTH = 32                   # channels of the improver's convolutions {> 0}
DEPTH = 4                    # 3x3 convolutions of the improver {> 0}
CROP = 128                   # side of the training crops (a multiple of 32) {>= 64}
STEPS = 400                  # optimisation steps per ratio {> 0}
CHECKPOINT_EVERY = 50        # steps between a cell's checkpoints; a lost cell redoes at most this many {> 0}
BATCH_SIZE = 8               # crops per step {> 0}
LEARNING_RATE = 1e-3         # Adam's step size {> 0}
EVAL_CROPS = 64              # fixed held-out crops {> 0}
BLUR_SIGMAS = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0]  # the Gaussian-blur reference curve (px)
BLEND_STEPS = [0.1, 0.25, 0.5, 0.75, 1.0]           # the Y = X + t (Z_X - X) reference curve
BEAT_BLUR_BY = 0.10          # the goal: MAE(Y,Z) this fraction below the blur of equal MAE(X,Y) {> 0, < 1}
PANEL_PHOTOS = 2             # held-out photos in the panel of the best point {> 0}
PANEL_SIZE = 192             # side of their central squares {>= 64}
SEED = 0                     # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
CLUSTER = ""                 # a Ray cluster's address ("host:6379", "auto"); "" reads $RAY_ADDRESS, unset: run here
CELL_GPUS = -1               # GPUs each cell asks of the cluster; -1: one when DEVICE resolves to a GPU here {-1 or >= 0}
QUICK = {"RATIOS": [1.0, 8.0], "STEPS": 25, "CHECKPOINT_EVERY": 10, "BATCH_SIZE": 4, "WIDTH": 16, "DEPTH": 3, "LEARNING_RATE": 3e-3,
         "EVAL_CROPS": 8, "BLUR_SIGMAS": [0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0]}
DRY_RUN = {"RATIOS": [1.0], "STEPS": 2, "CHECKPOINT_EVERY": 1, "BATCH_SIZE": 2, "EVAL_CROPS": 2, "PANEL_PHOTOS": 1, "PANEL_SIZE": 128,
           "BLUR_SIGMAS": [1.0, 2.0], "BLEND_STEPS": [0.5]}
# -----------------------------------------------------------------------------

CELLS_FOLDER = "sweep_cells"  # in the checkpoint folder: one folder per cell


@exit_on_lab_error
def main(argv=None):
    run = start_run(bc.EXPERIMENT, globals(), argv, framework="tensorflow", checkpoints=True)
    cfg = run.cfg
    parse(cfg)
    predictor = bm.load_predictor(run.checkpoint_path(bc.PREDICTOR_FILE))
    _, held_photos = bc.load_split(cfg)
    x = bc.held_out_crops(held_photos, cfg.EVAL_CROPS)
    points = trained_points(run, cfg)
    blurs, blends = references(cfg, predictor, x)
    best = beat_the_blur(points, blurs)
    frontier_figure(run, cfg, points, blurs, blends, best)
    if best is not None:
        best_panel(run, cfg, predictor, held_photos, best, x, cell_folder(run, best["variant"], best["k2_over_k1"]))
    run.finish(claims_and_metrics(run, cfg, points, blurs, blends, best))


def parse(cfg) -> None:
    if not cfg.RATIOS or any(not np.isfinite(r) or r <= 0 for r in cfg.RATIOS):
        raise LabError(f"RATIOS must be positive finite K2/K1 values, got {cfg.RATIOS}")
    if not cfg.SWEEP_VARIANTS:
        raise LabError("SWEEP_VARIANTS is empty; name at least one, e.g. --set SWEEP_VARIANTS=['article']")
    for variant in cfg.SWEEP_VARIANTS:
        check_variant(variant)
        if variant == "contrast":
            raise LabError("SWEEP_VARIANTS: 'contrast' has no K1/K2 to sweep; use article, residual or deep")
    if cfg.CROP % bm.CELL:
        raise LabError(f"CROP must be a multiple of {bm.CELL}, got {cfg.CROP}")
    if not cfg.BLUR_SIGMAS or any(s <= 0 for s in cfg.BLUR_SIGMAS):
        raise LabError(f"BLUR_SIGMAS must be positive, got {cfg.BLUR_SIGMAS}")


def cell_folder(run, variant: str, ratio: float):
    return run.checkpoint_dir / CELLS_FOLDER / cell_tag(variant, ratio)


def sweep_cells(run, cfg) -> list[Cell]:
    """One cell per (variant, ratio), in the order of the plot; each with its own folders."""
    gpus = (1 if run.device == "gpu" else 0) if cfg.CELL_GPUS == -1 else cfg.CELL_GPUS
    cells = []
    for index, (variant, ratio) in enumerate((v, r) for v in cfg.SWEEP_VARIANTS for r in cfg.RATIOS):
        plan = CellPlan(
            VARIANT=variant, RATIO=float(ratio), INDEX=index, SEED=run.seed, WIDTH=cfg.WIDTH, DEPTH=cfg.DEPTH,
            CROP=cfg.CROP, STEPS=cfg.STEPS, BATCH_SIZE=cfg.BATCH_SIZE, LEARNING_RATE=cfg.LEARNING_RATE,
            EVAL_CROPS=cfg.EVAL_CROPS, CHECKPOINT_EVERY=cfg.CHECKPOINT_EVERY,
            PHOTOS_DIR=str(cfg.PHOTOS_DIR), HELD_OUT_PHOTOS=list(cfg.HELD_OUT_PHOTOS), MAX_SIDE=cfg.MAX_SIDE,
            PREDICTOR_DIR=str(run.checkpoint_dir.resolve()),
            CELL_DIR=str(cell_folder(run, variant, ratio).resolve()),
            CURVES_DIR=str(run.path("cells", cell_tag(variant, ratio)).resolve()))
        cells.append(Cell(plan.tag, "beauty_predictor.sweep_cell:train_cell", asdict(plan),
                          resources={"num_cpus": 1, "num_gpus": gpus}))
    return cells


def trained_points(run, cfg) -> list[dict]:
    """Every cell's point, trained here or over a Ray cluster; a cell that failed for good is an error naming
    it (a rerun trains only the unfinished cells)."""
    cells = sweep_cells(run, cfg)
    if run.fresh:
        for cell in cells:
            shutil.rmtree(cell.kwargs["CELL_DIR"], ignore_errors=True)
    cluster = cluster_address(cfg.CLUSTER)
    print(f"sweep: {len(cells)} cells " + (f"on the Ray cluster at {cluster}" if cluster else "in this process"))
    outcomes = run_cells(cells, cluster=cluster, desc="sweep cells")
    failures = failure_summary(outcomes)
    if failures:
        raise LabError(f"{len(failures.splitlines())} of {len(cells)} sweep cells failed for good:\n{failures}\n"
                       "rerun the sweep to retry them; the finished cells are kept")
    points = []
    run.metrics["cells"] = {}  # where each cell started (a resumed one: after 0) and its seconds of work
    for cell, outcome in zip(cells, outcomes, strict=True):
        point = {key: value for key, value in outcome.result.items() if key not in ("resumed_from_step", "seconds")}
        points.append(point)
        run.metrics["cells"][cell.name] = {key: outcome.result[key] for key in ("resumed_from_step", "seconds")}
        resumed = outcome.result["resumed_from_step"]
        print(f"{point['variant']} K2/K1={point['k2_over_k1']:g}: MAE(X,Y) {point['mae_x_y']:.4f}, MAE(Y,Z) "
              f"{point['mae_y_zy']:.4f}" + (f" (resumed at step {resumed})" if resumed else ""))
    return points


def references(cfg, predictor, x):
    """The training-free curves: Gaussian blurs of X, and blends of X towards its rebuild Z_X."""
    blurs = [{"sigma": s, **measure(x, bmetrics.blur(x, s), predictor)} for s in sorted(cfg.BLUR_SIGMAS)]
    z_x = rebuild_in_chunks(predictor, x)
    blends = [{"t": t, **measure(x, x + t * (z_x - x), predictor)} for t in cfg.BLEND_STEPS]
    return blurs, blends


def blur_curve(blurs, mae_x_zx: float):
    """The blur curve as (MAE(X,Y), MAE(Y,Z)) arrays from sigma 0 (X itself) on, MAE(X,Y) increasing."""
    xs = np.array([0.0] + [b["mae_x_y"] for b in blurs])
    ys = np.array([mae_x_zx] + [b["mae_y_zy"] for b in blurs])
    order = np.argsort(xs)
    return xs[order], ys[order]


def beat_the_blur(points, blurs) -> dict | None:
    """Each point's advantage over the blur of equal MAE(X,Y); returns the best point (None if none in range)."""
    if not points:
        return None
    xs, ys = blur_curve(blurs, points[0]["mae_x_zx"])
    best = None
    for p in points:
        inside = p["mae_x_y"] <= xs[-1]  # the blur curve is only known up to its widest sigma
        p["blur_mae_y_zy_at_same_mae_x_y"] = float(np.interp(p["mae_x_y"], xs, ys)) if inside else None
        p["advantage_over_blur"] = (1.0 - p["mae_y_zy"] / p["blur_mae_y_zy_at_same_mae_x_y"]) if inside else None
        if inside and (best is None or p["advantage_over_blur"] > best["advantage_over_blur"]):
            best = p
    return best


def frontier_figure(run, cfg, points, blurs, blends, best) -> None:
    import matplotlib.pyplot as plt

    mae_x_zx = points[0]["mae_x_zx"]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    xs, ys = blur_curve(blurs, mae_x_zx)
    ax.plot(xs, ys, "s--", color="C1", label="Gaussian blur of X (σ labelled)")
    for b in blurs:
        ax.annotate(f"σ{b['sigma']:g}", (b["mae_x_y"], b["mae_y_zy"]), textcoords="offset points", xytext=(5, -12),
                    color="C1", fontsize=7)
    ax.plot([0] + [b["mae_x_y"] for b in blends], [mae_x_zx] + [b["mae_y_zy"] for b in blends], "^:", color="C2",
            label="blend X + t (Z_X - X)")
    for colour, variant in zip(("C0", "C3", "C4"), cfg.SWEEP_VARIANTS, strict=False):
        mine = [p for p in points if p["variant"] == variant]
        ax.plot([p["mae_x_y"] for p in mine], [p["mae_y_zy"] for p in mine], "o-", color=colour,
                label=f"trained improver '{variant}', K2/K1 labelled")
        for p in mine:
            ax.annotate(f"{p['k2_over_k1']:g}", (p["mae_x_y"], p["mae_y_zy"]), textcoords="offset points",
                        xytext=(5, 4), color=colour, fontsize=7)
    ax.plot(xs, ys * (1 - cfg.BEAT_BLUR_BY), color="gray", lw=0.8, ls="--",
            label=f"goal: {cfg.BEAT_BLUR_BY:.0%} below the blur curve")
    if best is not None:
        ax.plot([best["mae_x_y"]], [best["mae_y_zy"]], "o", ms=12, mfc="none", color="k",
                label=f"best: {best['variant']} K2/K1={best['k2_over_k1']:g} ({best['advantage_over_blur']:+.0%})")
    ax.set_xlabel("MAE(X, Y): likeness lost")
    ax.set_ylabel("MAE(Y, Z): unpredictability left")
    ax.set_title("frontier on held-out crops (lower-left is better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, run.path("tradeoff.png"), dpi=100)
    run.add_artifact(run.path("tradeoff.png"), "frontier MAE(X,Y) vs MAE(Y,Z): blur, blend and trained improvers "
                     "(article and residual) over K2/K1")


def best_panel(run, cfg, predictor, held_photos, best, x, folder) -> None:
    """The best trained point beside the blur of the same MAE(X,Y): what the improver does differently."""
    improver, _ = bm.load_improver(folder / CHECKPOINT_FILE, best["variant"])
    views = bc.held_out_views(held_photos, cfg.PANEL_PHOTOS, cfg.PANEL_SIZE)
    y = predict_in_chunks(improver, views)
    sigmas = np.linspace(0.1, max(cfg.BLUR_SIGMAS), 80)  # the sigma whose blur of the crops loses as much likeness as Y does
    losses = [bmetrics.mae(x, bmetrics.blur(x, s)) for s in sigmas]
    sigma = float(np.interp(best["mae_x_y"], losses, sigmas))
    blurred = bmetrics.blur(views, sigma)
    z_y, z_b = rebuild_in_chunks(predictor, y), rebuild_in_chunks(predictor, blurred)
    rows = [[views[i], y[i], blurred[i], np.abs(y[i] - views[i]).mean(-1), np.abs(blurred[i] - views[i]).mean(-1),
             np.abs(y[i] - z_y[i]).mean(-1), np.abs(blurred[i] - z_b[i]).mean(-1)] for i in range(len(views))]
    bc.image_grid(run.path("best_vs_blur.png"), rows, [p.name for p in held_photos[:len(views)]],
                  ["X", f"Y: {best['variant']} K2/K1={best['k2_over_k1']:g}", f"blur σ={sigma:.2f} (same MAE(X,Y))",
                   "|Y - X|", "|blur - X|", "|Y - Z(Y)|", "|blur - Z(blur)|"],
                  title=f"best trained point vs the blur of equal likeness: MAE(Y,Z) {best['mae_y_zy']:.4f} vs "
                        f"{best['blur_mae_y_zy_at_same_mae_x_y']:.4f} ({best['advantage_over_blur']:+.1%})",
                  cmap_cols=(3, 4, 5, 6), cell_size=2.0)
    run.add_artifact(run.path("best_vs_blur.png"), "the best trained improver beside the blur that loses as much "
                     "likeness: where each changes the photo, and what stays unpredictable")


def claims_and_metrics(run, cfg, points, blurs, blends, best) -> dict:
    meets = [p for p in points if p["advantage_over_blur"] is not None and p["advantage_over_blur"] >= cfg.BEAT_BLUR_BY]
    if best is None:
        measured = "no trained point within the blur curve's range of MAE(X,Y)"
    else:
        measured = (f"best: {best['variant']} at K2/K1={best['k2_over_k1']:g}, MAE(Y,Z) {best['mae_y_zy']:.4f} vs "
                    f"blur {best['blur_mae_y_zy_at_same_mae_x_y']:.4f} at MAE(X,Y) {best['mae_x_y']:.4f} "
                    f"({best['advantage_over_blur']:+.1%}; goal -{cfg.BEAT_BLUR_BY:.0%})")
    run.add_claim(claims.BEATS_BLUR, measured, bool(meets), claims.FULL_PROFILE[claims.BEATS_BLUR])
    return {"points": points, "blur_reference": blurs, "blend_reference": blends,
            "best_point": best, "points_beating_blur_by_goal": [(p["variant"], p["k2_over_k1"]) for p in meets]}


if __name__ == "__main__":
    main()
