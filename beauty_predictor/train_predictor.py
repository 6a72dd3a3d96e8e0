"""Train the centre predictor: 128x128 surroundings -> 32x32 centre. Run: python -m beauty_predictor.train_predictor [--quick]

Article 001: "first we build and train a network that predicts the centre (32,32,3) from its
surroundings (128,128,3)". Saves center_predictor.keras and an early snapshot,
center_predictor_bad.keras, the "poorly trained predictor" of the article's second experiment.
Reports the held-out MAE against two baselines on the same crops: the mean colour of the hole's
border and scikit-image's biharmonic inpainting.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from beauty_predictor import model as bm
from beauty_predictor.common import (
    BAD_PREDICTOR_FILE,
    EXPERIMENT,
    PREDICTOR_FILE,
    curves_plot,
    held_out_crops,
    image_grid,
    load_split,
    read_state,
    restore_optimizer,
    save_optimizer,
    smooth,
    write_state,
)
from beauty_predictor.photos import random_crops
from lab import exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, check_compatible

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand)
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels
WIDTH = 16                   # channels of the predictor's first layer (later layers: 2x, 3x, 4x)
STEPS = 6000                 # optimisation steps
BATCH_SIZE = 32              # random 128x128 crops (with flips) per step
LEARNING_RATE = 1e-3         # Adam's step size
BAD_SNAPSHOT_STEP = 150      # the "poorly trained" predictor is the snapshot at this step
EVAL_CROPS = 256             # fixed held-out crops for the MAE against the baselines
EVAL_PERIOD = 500            # held-out MAE every this many steps (the curve in loss.png)
SAVE_PERIOD = 1000           # save the model every this many steps
SEED = 0                     # -1 draws a random seed and prints it
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
QUICK = {"STEPS": 300, "LEARNING_RATE": 2e-3, "BAD_SNAPSHOT_STEP": 40, "EVAL_CROPS": 64, "EVAL_PERIOD": 100, "SAVE_PERIOD": 200}
DRY_RUN = {"STEPS": 4, "BAD_SNAPSHOT_STEP": 2, "EVAL_CROPS": 4, "EVAL_PERIOD": 2, "SAVE_PERIOD": 2,
           "BATCH_SIZE": 4}
# -----------------------------------------------------------------------------

ARCHITECTURE = ["WIDTH"]


def biharmonic_centres(crops: np.ndarray) -> np.ndarray:
    """Baseline: scikit-image's biharmonic inpainting of the 32x32 hole, crop by crop."""
    from skimage.restoration import inpaint_biharmonic

    hole = bm.centre_mask()[..., 0].astype(bool)
    s = bm.HOLE_START
    centres = []
    for crop in tqdm(crops, desc="biharmonic baseline", leave=False):
        centres.append(inpaint_biharmonic(crop, hole, channel_axis=-1)[s:s + bm.CELL, s:s + bm.CELL])
    return np.clip(np.stack(centres), 0, 1).astype(np.float32)


def evaluate(predictor, crops: np.ndarray) -> float:
    s = bm.HOLE_START
    predicted = predictor.predict(crops, batch_size=64, verbose=0)
    return float(np.mean(np.abs(predicted - crops[:, s:s + bm.CELL, s:s + bm.CELL])))


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv, framework="tensorflow")
    cfg = run.cfg
    import keras
    import tensorflow as tf

    train_photos, held_photos = load_split(cfg)
    eval_crops = held_out_crops(held_photos, cfg.EVAL_CROPS)
    truth = eval_crops[:, bm.HOLE_START:bm.HOLE_START + bm.CELL, bm.HOLE_START:bm.HOLE_START + bm.CELL]

    path, bad_path = run.checkpoint_path(PREDICTOR_FILE), run.checkpoint_path(BAD_PREDICTOR_FILE)
    optimizer_path = path.with_suffix(".optimizer.npz")
    optimizer = keras.optimizers.Adam(cfg.LEARNING_RATE)
    step, history = 0, {"loss": [], "eval_steps": [], "eval_mae": []}
    if path.exists() and not run.fresh:  # rerunning resumes
        state = read_state(path)
        check_compatible(state["constants"], run.constants, ARCHITECTURE, path)
        predictor = bm.load_predictor(path)
        predictor.trainable = True
        restore_optimizer(optimizer, predictor.trainable_variables, optimizer_path)
        step = min(int(state["step"]), cfg.STEPS)
        history = {**history, **state.get("history", {})}
        print(f"resuming {path} at step {step}")
    else:
        predictor = bm.build_predictor(cfg.WIDTH)
    print(f"centre predictor: {predictor.count_params():,} parameters")

    @tf.function
    def train_step(crops):
        s = bm.HOLE_START
        with tf.GradientTape() as tape:
            predicted = predictor(crops, training=True)
            loss = bm.mae(predicted, crops[:, s:s + bm.CELL, s:s + bm.CELL])  # MAE, the article's measure
        gradients = tape.gradient(loss, predictor.trainable_variables)
        optimizer.apply_gradients(zip(gradients, predictor.trainable_variables, strict=True))
        return loss

    def save(at_step):
        bm.save_model(predictor, path)
        save_optimizer(optimizer, optimizer_path)
        write_state(path, at_step, run.constants, history)

    rng = np.random.default_rng(run.seed + step)  # a resumed run draws fresh crops
    if step == 0:  # a fresh start: the old snapshot belongs to another training run
        bad_path.unlink(missing_ok=True)
    done = step
    with InterruptGuard() as guard, tqdm(range(step, cfg.STEPS), initial=step, total=cfg.STEPS,
                                         desc="predictor") as bar:
        for step in bar:
            loss = float(train_step(random_crops(train_photos, cfg.BATCH_SIZE, 128, rng)))
            done = step + 1
            history["loss"].append(loss)
            bar.set_postfix(train_mae=f"{loss:.4f}")
            if step + 1 == cfg.BAD_SNAPSHOT_STEP:
                bm.save_model(predictor, bad_path)
            if (step + 1) % cfg.EVAL_PERIOD == 0:
                history["eval_steps"].append(step + 1)
                history["eval_mae"].append(evaluate(predictor, eval_crops))
                bar.set_postfix(train_mae=f"{loss:.4f}", held_out_mae=f"{history['eval_mae'][-1]:.4f}")
            if (step + 1) % cfg.SAVE_PERIOD == 0:
                save(step + 1)
            if guard.requested:
                break
    step = done
    save(step)
    if not bad_path.exists():  # resumed past the snapshot, or fewer steps than BAD_SNAPSHOT_STEP
        bm.save_model(predictor, bad_path)

    # Held-out MAE against the two baselines, on the very same crops.
    predicted = predictor.predict(eval_crops, batch_size=64, verbose=0)
    border_mean = np.broadcast_to(bm.BorderMean()(eval_crops).numpy(), truth.shape)
    biharmonic = biharmonic_centres(eval_crops)
    bad_predicted = bm.load_predictor(bad_path).predict(eval_crops, batch_size=64, verbose=0)
    metrics = {
        "steps": step,
        "held_out_mae": float(np.mean(np.abs(predicted - truth))),
        "bad_predictor_held_out_mae": float(np.mean(np.abs(bad_predicted - truth))),
        "border_mean_mae": float(np.mean(np.abs(border_mean - truth))),
        "biharmonic_mae": float(np.mean(np.abs(biharmonic - truth))),
        "final_train_mae": float(np.mean(history["loss"][-20:])) if history["loss"] else None,
        "held_out_crops": len(eval_crops),
    }
    metrics["beats_border_mean"] = metrics["held_out_mae"] < metrics["border_mean_mae"]
    metrics["beats_biharmonic"] = metrics["held_out_mae"] < metrics["biharmonic_mae"]
    print("held-out MAE: predictor {held_out_mae:.4f}, border mean {border_mean_mae:.4f}, "
          "biharmonic {biharmonic_mae:.4f}, bad snapshot {bad_predictor_held_out_mae:.4f}".format(**metrics))

    # Figure: surroundings / truth / prediction / baselines for a few held-out crops.
    s, e = bm.HOLE_START, bm.HOLE_START + bm.CELL
    rows = []
    for i in np.linspace(0, len(eval_crops) - 1, min(5, len(eval_crops))).astype(int):
        masked = eval_crops[i] * (1 - bm.centre_mask())
        def filled(centre, i=i):
            image = eval_crops[i].copy()
            image[s:e, s:e] = centre
            return image
        rows.append([masked, filled(truth[i]), filled(predicted[i]), filled(border_mean[i]), filled(biharmonic[i])])
    image_grid(run.path("examples.png"), rows, [f"crop {i}" for i in range(len(rows))],
               ["surroundings", "truth", f"predictor ({metrics['held_out_mae']:.3f})",
                f"border mean ({metrics['border_mean_mae']:.3f})", f"biharmonic ({metrics['biharmonic_mae']:.3f})"],
               title="held-out crops: the 32x32 centre filled by each method (MAE over all held-out crops)")
    run.add_artifact(run.path("examples.png"), "held-out centres: truth, predictor, border-mean and biharmonic baselines")
    curves = {"train MAE (smoothed)": (list(range(1, len(history["loss"]) + 1)), smooth(history["loss"], 20))}
    if history["eval_steps"]:
        curves["held-out MAE"] = (history["eval_steps"], history["eval_mae"])
    curves["border-mean baseline"] = ([1, max(step, 2)], [metrics["border_mean_mae"]] * 2)
    curves["biharmonic baseline"] = ([1, max(step, 2)], [metrics["biharmonic_mae"]] * 2)
    curves_plot(run.path("loss.png"), curves, "step", "MAE of the 32x32 centre (pixels in [0,1])",
                "centre predictor training")
    run.add_artifact(run.path("loss.png"), "predictor MAE over training vs the baselines")
    write_state(path, step, run.constants, history)
    run.finish(metrics, status="interrupted" if guard.requested else "complete")


if __name__ == "__main__":
    main()
