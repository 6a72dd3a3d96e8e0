"""The trade-off curve MAE(X,Y) vs MAE(Y,Z) over K2/K1. Run: python -m beauty_predictor.sweep [--quick]

Beyond the article: it fixed k1 = k2 = 0.5. Here one article-variant improver is trained per
ratio K2/K1 (K1 + K2 = 1), and each lands at one point (likeness lost, predictability gained) on
the held-out crops. Two training-free references share the plot: Gaussian blurs of X (the article
saw "something like smoothing") and the straight blend Y = X + t*(Z_X - X).
"""

from __future__ import annotations

import numpy as np

from beauty_predictor import model as bm
from beauty_predictor.common import EXPERIMENT, PREDICTOR_FILE, held_out_crops, load_split
from beauty_predictor.improve import measure, predict_in_chunks, rebuild_in_chunks, train_improver
from lab import LabError, exit_on_lab_error, start_run
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants.
RATIOS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]  # K2/K1 values; K1 + K2 = 1 (the article: 1, i.e. 0.5/0.5)
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand)
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels
WIDTH = 32                   # channels of the improver's convolutions
DEPTH = 4                    # 3x3 convolutions of the improver
CROP = 128                   # side of the training crops
STEPS = 400                  # optimisation steps per ratio
BATCH_SIZE = 8               # crops per step
LEARNING_RATE = 1e-3         # Adam's step size
EVAL_CROPS = 64              # fixed held-out crops
BLUR_SIGMAS = [0.5, 1.0, 2.0, 3.0, 5.0]  # the Gaussian-blur reference curve
BLEND_STEPS = [0.25, 0.5, 0.75, 1.0]     # the Y = X + t (Z_X - X) reference curve
SEED = 0                     # -1 draws a random seed and prints it
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
QUICK = {"STEPS": 12, "BATCH_SIZE": 4, "WIDTH": 16, "DEPTH": 3, "LEARNING_RATE": 3e-3, "EVAL_CROPS": 8}
DRY_RUN = {"RATIOS": [1.0], "STEPS": 2, "BATCH_SIZE": 2, "EVAL_CROPS": 2}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv, framework="tensorflow")
    cfg = run.cfg
    if not cfg.RATIOS or any(r <= 0 for r in cfg.RATIOS):
        raise LabError(f"RATIOS must be positive K2/K1 values, got {cfg.RATIOS}")
    import keras
    import matplotlib.pyplot as plt
    from scipy.ndimage import gaussian_filter

    predictor = bm.load_predictor(run.checkpoint_path(PREDICTOR_FILE))
    train_photos, held_photos = load_split(cfg)
    x = held_out_crops(held_photos, cfg.EVAL_CROPS)

    points = []
    for index, ratio in enumerate(cfg.RATIOS):
        k1, k2 = 1.0 / (1.0 + ratio), ratio / (1.0 + ratio)
        keras.utils.set_random_seed(run.seed + index)
        improver = bm.build_improver(cfg.WIDTH, cfg.DEPTH)
        train_improver(improver, predictor, None, keras.optimizers.Adam(cfg.LEARNING_RATE), train_photos,
                       variant="article", k1=k1, k2=k2, steps=cfg.STEPS, start=0, batch_size=cfg.BATCH_SIZE,
                       crop=cfg.CROP, rng=np.random.default_rng(run.seed), desc=f"K2/K1={ratio:g}", history={})
        figures = measure(x, predict_in_chunks(improver, x), predictor)
        points.append({"k2_over_k1": ratio, "k1": k1, "k2": k2, **figures})
        print(f"K2/K1={ratio:g}: MAE(X,Y) {figures['mae_x_y']:.4f}, MAE(Y,Z) {figures['mae_y_zy']:.4f}")

    blurs = []
    for sigma in cfg.BLUR_SIGMAS:
        blurs.append({"sigma": sigma, **measure(x, gaussian_filter(x, (0, sigma, sigma, 0), mode="reflect"), predictor)})
    z_x = rebuild_in_chunks(predictor, x)
    blends = [{"t": t, **measure(x, x + t * (z_x - x), predictor)} for t in cfg.BLEND_STEPS]

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot([p["mae_x_y"] for p in points], [p["mae_y_zy"] for p in points], "o-", color="C0",
            label="trained improver (article loss), K2/K1 labelled")
    for p in points:
        ax.annotate(f"{p['k2_over_k1']:g}", (p["mae_x_y"], p["mae_y_zy"]), textcoords="offset points", xytext=(5, 5))
    ax.plot([0] + [b["mae_x_y"] for b in blurs], [points[0]["mae_x_zx"]] + [b["mae_y_zy"] for b in blurs], "s--",
            color="C1", label="Gaussian blur of X, sigma labelled")
    for b in blurs:
        ax.annotate(f"σ{b['sigma']:g}", (b["mae_x_y"], b["mae_y_zy"]), textcoords="offset points", xytext=(5, -12),
                    color="C1", fontsize=8)
    ax.plot([0] + [b["mae_x_y"] for b in blends], [points[0]["mae_x_zx"]] + [b["mae_y_zy"] for b in blends], "^:",
            color="C2", label="blend X + t (Z_X - X)")
    ax.axhline(0.8 * points[0]["mae_x_zx"], color="gray", lw=0.8, ls="--", label="goal: 20 % below MAE(X, Z_X)")
    ax.axvline(0.05, color="gray", lw=0.8, ls=":", label="goal: MAE(X, Y) = 0.05")
    ax.set_xlabel("MAE(X, Y): likeness lost")
    ax.set_ylabel("MAE(Y, Z): unpredictability")
    ax.set_title("trade-off on held-out crops (lower-left is better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, run.path("tradeoff.png"), dpi=100)
    run.add_artifact(run.path("tradeoff.png"), "trade-off MAE(X,Y) vs MAE(Y,Z) over K2/K1, with blur and blend references")
    meets = [p["k2_over_k1"] for p in points if p["predictability_gain"] >= 0.2 and p["mae_x_y"] <= 0.05]
    run.finish({"points": points, "blur_reference": blurs, "blend_reference": blends,
                "ratios_meeting_goal": meets})


if __name__ == "__main__":
    main()
