"""Apply the trained improver again and again: does it end in a black square? Run: python -m beauty_predictor.recursive [--quick]

Beyond the article: its readers predicted that applying the improver recursively ends in
Malevich's "Black Square". Two chains on held-out photos: Y_n = improver(Y_{n-1}) (VARIANT's
checkpoint) and Y_n = Z(Y_{n-1}) (the rebuild, no improver), both from Y_0 = X; per n the measures
of metrics.image_stats, and what each chain ends in (metrics.describe_end).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from beauty_predictor import claims
from beauty_predictor import metrics as bmetrics
from beauty_predictor import model as bm
from beauty_predictor.common import EXPERIMENT, PREDICTOR_FILE, held_out_views, image_grid, improver_file, load_split
from beauty_predictor.improve import predict_in_chunks, rebuild_in_chunks
from beauty_predictor.settings import check_variant
from lab import exit_on_lab_error, start_run
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
SEED = 0                     # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
QUICK = {"SIZE": 128, "PHOTOS": 2}
DRY_RUN = {"REPEATS": 2, "PHOTOS": 1, "SIZE": 128, "STRIP_AT": [0, 2]}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv, framework="tensorflow", checkpoints=True)
    cfg = run.cfg
    check_variant(cfg.VARIANT)
    predictor = bm.load_predictor(run.checkpoint_path(PREDICTOR_FILE))
    improver, _ = bm.load_improver(run.checkpoint_path(improver_file(cfg.VARIANT)), cfg.VARIANT)
    _, held_photos = load_split(cfg)
    x = held_out_views(held_photos, cfg.PHOTOS, cfg.SIZE)
    chains = {
        f"improver '{cfg.VARIANT}'": iterate(lambda y, z: predict_in_chunks(improver, y), x, predictor, cfg.REPEATS,
                                             "improver applied"),
        # The predictor's output is not bounded (border mean + correction); a picture is, so Z is clipped
        # to [0, 1] before it is fed back (unclipped, the values run away from [0, 1] within a few dozen rounds).
        "rebuild Y <- Z(Y)": iterate(lambda y, z: np.clip(z, 0.0, 1.0), x, predictor, cfg.REPEATS, "rebuild applied"),
    }
    metrics = report(run, cfg, chains, [p.name for p in held_photos[:len(x)]])
    run.finish(metrics)


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
        claim = claims.BLACK_SQUARE if key == "improver" else claims.REBUILD_BLACK_SQUARE
        run.add_claim(claim, sentence, end["is_black"], claims.FULL_PROFILE[claim])
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
