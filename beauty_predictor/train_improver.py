"""Train the improver that makes photos more predictable. Run: python -m beauty_predictor.train_improver [--quick] [--set VARIANT=contrast]

Article 001: loss = k1*MAE(X,Y) + k2*MAE(Y,Z), X the photos, Y the improver's output, Z the picture
rebuilt from centres predicted on Y; k1 = k2 = 0.5; a hand-written tf.GradientTape loop with the
predictor frozen, weights saved every save_period steps. VARIANT picks the experiment:
  article  - the loss above with the simple convolutional improver;
  contrast - the second experiment: maximise MAE(Y,Z_bad)/MAE(Y,Z_good) between the early ("bad")
             and the trained ("good") predictor, with no X term;
  deep     - the "more complex" improver (a U-Net here) with the article's loss.
Outputs go to outputs/beauty_predictor/improver_<variant>/.
"""

from __future__ import annotations

import numpy as np

from beauty_predictor import model as bm
from beauty_predictor.common import (
    BAD_PREDICTOR_FILE,
    EXPERIMENT,
    PREDICTOR_FILE,
    check_variant,
    curves_plot,
    held_out_crops,
    held_out_views,
    image_grid,
    load_split,
    read_state,
    restore_optimizer,
    save_optimizer,
    smooth,
    write_state,
)
from beauty_predictor.improve import measure, predict_in_chunks, rebuild_in_chunks, train_improver
from lab import exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, check_compatible
from lab.paths import outputs_root

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
VARIANT = "article"          # "article", "contrast" (MAE(Y,Z_bad)/MAE(Y,Z_good)) or "deep" (U-Net improver)
K1 = 0.5                     # weight of MAE(X,Y), likeness to the original (article)
K2 = 0.5                     # weight of MAE(Y,Z), predictability (article)
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand)
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels
WIDTH = 32                   # channels of the improver's convolutions
DEPTH = 4                    # 3x3 convolutions of the simple improver ("deep" is a U-Net of fixed depth)
CROP = 128                   # side of the training crops (a multiple of 32: 16 cells each)
STEPS = 1500                 # optimisation steps
BATCH_SIZE = 8               # crops per step
LEARNING_RATE = 1e-3         # Adam's step size
SAVE_PERIOD = 100            # save the improver every this many steps (article: save_period)
EVAL_CROPS = 64              # fixed held-out 128x128 crops for the figures in run.json
PANEL_PHOTOS = 3             # held-out photos shown before/after
PANEL_SIZE = 256             # side of the central square of each photo in the panels
SEED = 0                     # -1 draws a random seed and prints it
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
QUICK = {"STEPS": 30, "BATCH_SIZE": 4, "WIDTH": 16, "DEPTH": 3, "LEARNING_RATE": 3e-3, "SAVE_PERIOD": 20,
         "EVAL_CROPS": 16, "PANEL_PHOTOS": 2, "PANEL_SIZE": 192}
DRY_RUN = {"STEPS": 2, "BATCH_SIZE": 2, "EVAL_CROPS": 2, "PANEL_PHOTOS": 1, "PANEL_SIZE": 128, "SAVE_PERIOD": 1}
# -----------------------------------------------------------------------------

ARCHITECTURE = ["VARIANT", "WIDTH", "DEPTH"]


def improver_file(variant: str) -> str:
    return f"improver_{variant}.keras"


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv, framework="tensorflow")
    cfg = run.cfg
    check_variant(cfg.VARIANT)
    default_dir = run.out_dir
    run.out_dir = outputs_root() / EXPERIMENT / f"improver_{cfg.VARIANT}"
    run.out_dir.mkdir(parents=True, exist_ok=True)
    if default_dir != run.out_dir and default_dir.is_dir() and not any(default_dir.iterdir()):
        default_dir.rmdir()
    if cfg.CROP % bm.CELL or cfg.CROP < 2 * bm.CELL:
        from lab import LabError

        raise LabError(f"CROP must be a multiple of {bm.CELL} and at least {2 * bm.CELL}, got {cfg.CROP}")
    import keras

    predictor = bm.load_predictor(run.checkpoint_path(PREDICTOR_FILE))
    bad_predictor = bm.load_predictor(run.checkpoint_path(BAD_PREDICTOR_FILE)) if cfg.VARIANT == "contrast" else None
    train_photos, held_photos = load_split(cfg)

    path = run.checkpoint_path(improver_file(cfg.VARIANT))
    optimizer_path = path.with_suffix(".optimizer.npz")
    optimizer = keras.optimizers.Adam(cfg.LEARNING_RATE)
    step, history = 0, {}
    if path.exists() and not run.fresh:  # rerunning resumes
        state = read_state(path)
        check_compatible(state["constants"], run.constants, ARCHITECTURE, path)
        improver = keras.models.load_model(path, compile=False)
        restore_optimizer(optimizer, improver.trainable_variables, optimizer_path)
        step, history = min(int(state["step"]), cfg.STEPS), state.get("history", {})
        print(f"resuming {path} at step {step}")
    else:
        improver = bm.build_improver_for(cfg.VARIANT, cfg.WIDTH, cfg.DEPTH)
    print(f"improver ({cfg.VARIANT}): {improver.count_params():,} parameters")

    def save(done):
        bm.save_model(improver, path)
        save_optimizer(optimizer, optimizer_path)
        write_state(path, done, run.constants, history)

    def every_save_period(done):
        if done % cfg.SAVE_PERIOD == 0:
            save(done)

    rng = np.random.default_rng(run.seed + step)
    with InterruptGuard() as guard:
        step = train_improver(improver, predictor, bad_predictor, optimizer, train_photos, variant=cfg.VARIANT,
                              k1=cfg.K1, k2=cfg.K2, steps=cfg.STEPS, start=step, batch_size=cfg.BATCH_SIZE,
                              crop=cfg.CROP, rng=rng, desc=f"improver ({cfg.VARIANT})", history=history,
                              on_step=every_save_period, guard=guard)
    save(step)

    # Held-out figures on fixed crops (the same crops in every variant and run).
    x = held_out_crops(held_photos, cfg.EVAL_CROPS)
    y = predict_in_chunks(improver, x)
    figures = measure(x, y, predictor, bad_predictor)
    metrics = {"steps": step, **figures}
    if cfg.VARIANT != "contrast":
        metrics["goal_predictability_gain_ge_0.2"] = figures["predictability_gain"] >= 0.2
        metrics["goal_mae_x_y_le_0.05"] = figures["mae_x_y"] <= 0.05
    print("held-out: MAE(X,Y) {mae_x_y:.4f}, MAE(X,Z_X) {mae_x_zx:.4f} -> MAE(Y,Z_Y) {mae_y_zy:.4f} "
          "(predictability gain {predictability_gain:.1%})".format(**figures))

    # Panels: before / after / Z / per-cell error maps on held-out photos.
    views = held_out_views(held_photos, cfg.PANEL_PHOTOS, cfg.PANEL_SIZE)
    improved = predict_in_chunks(improver, views)
    z_views, z_improved = rebuild_in_chunks(predictor, views), rebuild_in_chunks(predictor, improved)
    err_views, err_improved = bm.cell_errors(views, z_views), bm.cell_errors(improved, z_improved)
    rows = [[views[i], z_views[i], err_views[i], improved[i], z_improved[i], err_improved[i]] for i in range(len(views))]
    vmax_note = f"mean cell error {err_views.mean():.3f} -> {err_improved.mean():.3f}"
    image_grid(run.path("panels.png"), rows, [p.name for p in held_photos[:len(views)]],
               ["X (before)", "Z_X rebuilt", "cell error X", "Y (after)", "Z_Y rebuilt", "cell error Y"],
               title=f"improver '{cfg.VARIANT}' on held-out photos; {vmax_note}", cmap_cols=(2, 5))
    run.add_artifact(run.path("panels.png"), f"{cfg.VARIANT}: before / rebuilt / cell-error heat map, after")

    steps_axis = list(range(1, len(history.get("loss", [])) + 1))
    if cfg.VARIANT == "contrast":
        curves = {"MAE(Y, Z_bad)": (steps_axis, smooth(history.get("first", []))),
                  "MAE(Y, Z_good)": (steps_axis, smooth(history.get("second", [])))}
        ylabel = "MAE (smoothed over 10 steps)"
    else:
        curves = {"MAE(X, Y) fidelity": (steps_axis, smooth(history.get("first", []))),
                  "MAE(Y, Z) predictability": (steps_axis, smooth(history.get("second", []))),
                  f"loss {cfg.K1}*MAE(X,Y) + {cfg.K2}*MAE(Y,Z)": (steps_axis, smooth(history.get("loss", [])))}
        ylabel = "training-batch value (smoothed over 10 steps)"
    curves_plot(run.path("loss_terms.png"), curves, "step", ylabel, f"improver '{cfg.VARIANT}': both loss terms")
    run.add_artifact(run.path("loss_terms.png"), f"{cfg.VARIANT}: both loss terms over training")
    run.finish(metrics, status="interrupted" if guard.requested else "complete")


if __name__ == "__main__":
    main()
