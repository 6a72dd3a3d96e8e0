"""Apply the trained improver again and again: does it end in a black square? Run: python -m beauty_predictor.recursive [--quick]

Beyond the article: its readers predicted that applying the improver recursively ends in
Malevich's "Black Square". Two chains on held-out photos: Y_n = improver(Y_{n-1}) (VARIANT's
checkpoint) and Y_n = Z(Y_{n-1}) (the rebuild, no improver), both from Y_0 = X; per n the measures
of metrics.image_stats, and what each chain ends in (metrics.describe_end).

Where the rebuild chain ends follows the predictor's small biases (white for one predictor, black or
still drifting for another, or for the same one trained on another CPU), so it is followed for
REBUILD_PREDICTORS predictors: the trained one and more trained like it with the next seeds (cells of
lab.executor: here, or one Ray task each), and the claim is a share with its Wilson interval.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from tqdm import tqdm

from beauty_predictor import claims
from beauty_predictor import common as bc
from beauty_predictor import metrics as bmetrics
from beauty_predictor import model as bm
from beauty_predictor.common import EXPERIMENT, PREDICTOR_FILE, held_out_views, image_grid, improver_file, load_split
from beauty_predictor.improve import predict_in_chunks, rebuild_in_chunks
from beauty_predictor.saving import load_checkpoint_file
from beauty_predictor.settings import check_variant
from lab import LabError, exit_on_lab_error, start_run
from lab.executor import Cell, cluster_address, failure_summary, run_cells
from lab.media import write_gif
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants.
REPEATS = 50                 # applications in each chain (the goal: 50) {> 0}
VARIANT = "article"          # which trained improver: "article", "residual", "contrast" or "deep"
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand) {nonempty}
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels {>= 128}
PHOTOS = 3                   # held-out photos followed {> 0}
SIZE = 256                   # side of the central square of each photo {>= 64}
FLAT_TOL = 0.01              # "flat" when the MAE to the nearest flat image is below this (2.5/255) {> 0}
STILL_TOL = 1e-3             # "converged" when every later application moves the images less (MAE) {> 0}
STRIP_AT = [0, 1, 2, 5, 10, 20, 50]  # the n shown in the strips
REBUILD_PREDICTORS = 6       # predictors whose rebuild chain is followed: the trained one, then more trained with its constants and the next seeds {> 0}
SEED = 0                     # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
CLUSTER = ""                 # a Ray cluster's address for those trainings ("host:6379", "auto"); "" reads $RAY_ADDRESS, unset: here
QUICK = {"SIZE": 128, "PHOTOS": 2}
DRY_RUN = {"REPEATS": 2, "PHOTOS": 1, "SIZE": 128, "STRIP_AT": [0, 2], "REBUILD_PREDICTORS": 2}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv, framework="tensorflow", checkpoints=True)
    cfg = run.cfg
    check_variant(cfg.VARIANT)
    predictor = bm.load_predictor(run.checkpoint_path(PREDICTOR_FILE))
    improver, _ = bm.load_improver(run.checkpoint_path(improver_file(cfg.VARIANT)), cfg.VARIANT)
    first_seed, more = more_predictors(run, cfg)
    predictors = [predictor, *more]
    _, held_photos = load_split(cfg)
    x = held_out_views(held_photos, cfg.PHOTOS, cfg.SIZE)
    chains = {f"improver '{cfg.VARIANT}'": iterate(lambda y, z: predict_in_chunks(improver, y), x, predictor,
                                                   cfg.REPEATS, "improver applied")}
    rebuilds = [iterate(rebuild, x, p, cfg.REPEATS, f"rebuild applied, predictor {i + 1}/{len(predictors)}")
                for i, p in enumerate(predictors)]
    chains["rebuild Y <- Z(Y)"] = rebuilds[0]
    metrics = report(run, cfg, chains, [p.name for p in held_photos[:len(x)]])
    metrics["rebuild_predictors"] = rebuild_claim(run, cfg, rebuilds, first_seed, [p.name for p in held_photos[:len(x)]])
    run.finish(metrics)


def rebuild(y, z):
    """The predictor's output is not bounded (border mean + correction); a picture is, so Z is clipped to
    [0, 1] before it is fed back (unclipped, the values run away from [0, 1] within a few dozen rounds)."""
    return np.clip(z, 0.0, 1.0)


def more_predictors(run, cfg) -> tuple[int, list]:
    """The trained predictor's seed (its checkpoint's SEED; this run's if that was drawn), and REBUILD_PREDICTORS - 1
    predictors trained with its constants and the next seeds: one cell each, kept in a folder named by seed
    and constants (so a retrained predictor gets new companions), resumed when stopped, reused when finished."""
    path = run.checkpoint_path(PREDICTOR_FILE)
    constants = load_checkpoint_file(path).get("constants")
    if cfg.REBUILD_PREDICTORS > 1 and not (isinstance(constants, dict) and isinstance(constants.get("SEED"), int)):
        raise LabError(f"{path} does not record the constants its predictor was trained with, which the more "
                       "predictors are trained with; retrain it (python -m beauty_predictor.train_predictor) or "
                       "follow it alone (--set REBUILD_PREDICTORS=1)")
    first_seed = constants["SEED"] if constants and constants["SEED"] >= 0 else run.seed
    cells = []
    for seed in range(first_seed + 1, first_seed + cfg.REBUILD_PREDICTORS):
        plan = {**constants, "SEED": seed}
        digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:10]
        folder = run.checkpoint_dir / "rebuild_predictors" / f"seed_{seed}-{digest}"
        if run.fresh:
            shutil.rmtree(folder, ignore_errors=True)
        cells.append(Cell(f"predictor seed {seed}", "beauty_predictor.train_predictor:train_cell",
                          {"constants": plan, "folder": str(folder.resolve()),
                           "curves": str(run.path("predictors", f"seed_{seed}").resolve())},
                          resources={"num_cpus": 1, "num_gpus": 1 if run.device == "gpu" else 0}))
    outcomes = run_cells(cells, cluster=cluster_address(cfg.CLUSTER), desc="more predictors")
    failures = failure_summary(outcomes)
    if failures:
        raise LabError(f"{len(failures.splitlines())} of {len(cells)} predictor trainings failed for good:\n"
                       f"{failures}\nrerun to retry them; the finished ones are kept")
    # Their held-out MAE beside the trained one's (train_predictor's run.json): companions of like quality.
    run.metrics["more_predictors_held_out_mae"] = {cell.name: outcome.result["held_out_mae"]
                                                   for cell, outcome in zip(cells, outcomes, strict=True)}
    return first_seed, [bm.load_predictor(Path(cell.kwargs["folder"]) / PREDICTOR_FILE) for cell in cells]


def iterate(apply, x, predictor, repeats: int, desc: str):
    """Y_0 = X, Y_n = apply(Y_{n-1}, Z(Y_{n-1})); the images and the per-application record (Z once per n)."""
    images, record, previous = [x], {}, None
    y, z = x, rebuild_in_chunks(predictor, x)
    with tqdm(range(repeats + 1), desc=desc) as bar:
        for n in bar:
            if n > 0:
                previous, y = y, apply(y, z)
                z = rebuild_in_chunks(predictor, y)
                images.append(y)
            stats = bmetrics.image_stats(y, x, z, previous)
            for key, value in {"n": n, **stats}.items():
                record.setdefault(key, []).append(value)
            bar.set_postfix(flat_distance=f"{stats['flat_distance']:.4f}", mae_y_z=f"{stats['mae_y_z']:.4f}")
    return images, record


def report(run, cfg, chains, names) -> dict:
    metrics = {"repeats": cfg.REPEATS}
    for label, (images, record) in chains.items():
        key = "improver" if label.startswith("improver") else "rebuild"
        end = bmetrics.describe_end(record, cfg.FLAT_TOL, cfg.STILL_TOL)
        first, last = {k: v[0] for k, v in record.items()}, {k: v[-1] for k, v in record.items()}
        sentence = (f"{label}, {cfg.REPEATS} applications: ends in {end['end_state']}"
                    + (f", still from n = {end['converged_at']}" if end["converged_at"] else "")
                    + f"; brightness {first['brightness']:.3f} -> {last['brightness']:.3f}, contrast "
                    f"{first['contrast']:.3f} -> {last['contrast']:.3f}, distance to a flat image "
                    f"{first['flat_distance']:.4f} -> {last['flat_distance']:.4f}, MAE(Y,Z) "
                    f"{first['mae_y_z']:.4f} -> {last['mae_y_z']:.4f}, distance to X {last['mae_y_x']:.4f}")
        print(sentence)
        metrics[key] = {**end, "summary": sentence, "initial": first, "final": last, "curves": record}
        if key == "improver":
            run.add_claim(claims.BLACK_SQUARE, sentence, end["is_black"], claims.FULL_PROFILE[claims.BLACK_SQUARE])
        shown = [n for n in cfg.STRIP_AT if n <= cfg.REPEATS]
        image_grid(run.path(f"strip_{key}.png"), [[images[n][i] for n in shown] for i in range(len(names))], names,
                   [f"n = {n}" for n in shown], title=f"{label}: applied n times")
        run.add_artifact(run.path(f"strip_{key}.png"), f"{label}: the images after n applications")
    curves_figure(run, cfg, chains)
    frames = [np.concatenate([np.concatenate(list(images[n]), axis=1) for images, _ in chains.values()], axis=0)
              for n in range(cfg.REPEATS + 1)]
    write_gif(frames, run.path("repeated.gif"), fps=6, max_side=768)
    run.add_artifact(run.path("repeated.gif"), "animation over n: top the improver chain, bottom the rebuild chain")
    return metrics


def rebuild_claim(run, cfg, rebuilds, first_seed: int, names) -> dict:
    """Where the rebuild chain of each predictor ends; the claim: a black square for most of them, i.e. the
    95 % Wilson interval of that share lies above one half."""
    ends = [bmetrics.describe_end(record, cfg.FLAT_TOL, cfg.STILL_TOL) for _, record in rebuilds]
    seeds = [first_seed + i for i in range(len(rebuilds))]
    # Every end state in one order, zeros included: the same sentence on every machine, number for number.
    counts = {state: sum(e["end_state"] == state for e in ends) for state in bmetrics.END_STATES}
    black = sum(e["is_black"] for e in ends)
    low, high = binomtest(black, len(ends)).proportion_ci(0.95, method="wilson")
    brightness = [record["brightness"][-1] for _, record in rebuilds]
    sentence = (f"rebuild Y <- Z(Y), {cfg.REPEATS} applications, {len(ends)} predictors (seeds {seeds[0]}-{seeds[-1]}): "
                f"a black square for {black}/{len(ends)} (95 % Wilson interval {100 * low:.0f}-{100 * high:.0f} %; "
                "most means the interval above 50 %); "
                + ", ".join(f"{state} {count}/{len(ends)}" for state, count in counts.items() if state != "a black square")
                + f"; end brightness {min(brightness):.3f} to {max(brightness):.3f}")
    print(sentence)
    run.add_claim(claims.REBUILD_BLACK_SQUARE, sentence, low > 0.5, claims.FULL_PROFILE[claims.REBUILD_BLACK_SQUARE])
    titles = [f"seed {seed}: {end['end_state'].split(' (')[0]}" for seed, end in zip(seeds, ends, strict=True)]
    image_grid(run.path("rebuild_ends.png"), [[images[-1][i] for images, _ in rebuilds] for i in range(len(names))],
               names, titles, title=f"rebuild Y <- Z(Y) after {cfg.REPEATS} applications, one predictor per column")
    run.add_artifact(run.path("rebuild_ends.png"), "where the rebuild chain ends, for each predictor")
    bc.curves_plot(run.path("rebuild_brightness.png"),
                {f"seed {seed}": (record["n"], record["brightness"]) for seed, (_, record) in zip(seeds, rebuilds, strict=True)},
                "n (applications)", "mean brightness", "rebuild Y <- Z(Y): brightness per predictor (0: black)")
    run.add_artifact(run.path("rebuild_brightness.png"), "the rebuild chain's brightness over n, one line per predictor")
    return {"seeds": seeds, "black": black, "black_interval": [low, high], "states": counts,
            "ends": [{"seed": seed, **end, "brightness": b} for seed, end, b in zip(seeds, ends, brightness, strict=True)],
            "summary": sentence}


def curves_figure(run, cfg, chains) -> None:
    """One panel per measure, both chains in each: what a black square would drive to 0 and what not."""
    import matplotlib.pyplot as plt

    panels = [("brightness", "mean brightness"), ("contrast", "contrast (std of pixels)"),
              ("flat_distance", "MAE to the nearest flat image"), ("hf_energy", "high-frequency energy"),
              ("mae_y_z", "MAE(Y_n, Z(Y_n)) unpredictability"), ("mae_y_x", "MAE(Y_n, X) distance to the original")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for label, (_, record) in chains.items():
            ax.plot(record["n"], record[key], label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("n (applications)", fontsize=8)
        if key == "hf_energy":
            ax.set_yscale("log")
        if key == "flat_distance":
            ax.axhline(cfg.FLAT_TOL, color="gray", ls="--", lw=0.8, label=f"flat below {cfg.FLAT_TOL:g}")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("repeated application on held-out photos: does it end in a black square?", fontsize=10)
    save_figure(fig, run.path("repeated.png"), dpi=90)
    run.add_artifact(run.path("repeated.png"), "per-application brightness, contrast, flatness, HF energy, "
                     "unpredictability and distance to the original, for both chains")


if __name__ == "__main__":
    main()
