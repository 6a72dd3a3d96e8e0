"""Train the centre predictor: 128x128 surroundings -> 32x32 centre. Run: python -m beauty_predictor.train_predictor [--quick]

Article 001: "first we build and train a network that predicts the centre (32,32,3) from its
surroundings (128,128,3)". Saves center_predictor.npz and an early snapshot, center_predictor_bad.npz,
the "poorly trained predictor" of the article's second experiment. Reports the held-out MAE against
two baselines on the same crops: the hole border's mean colour and biharmonic inpainting.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

from beauty_predictor import claims
from beauty_predictor import common as bc
from beauty_predictor import model as bm
from beauty_predictor.photos import random_crops
from beauty_predictor.saving import resume_training, save_checkpoint_file, save_training
from beauty_predictor.settings import PredictorSettings, settings_dict
from lab import exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard
from lab.run import start_cell

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand) {nonempty}
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels {>= 128}
WIDTH = 16                   # channels of the predictor's first layer (later layers: 2x, 3x, 4x) {> 0}
STEPS = 6000                 # optimisation steps {> 0}
BATCH_SIZE = 32              # random 128x128 crops (with flips) per step {> 0}
LEARNING_RATE = 1e-3         # Adam's step size {> 0}
BAD_SNAPSHOT_STEP = 150      # the "poorly trained" predictor is the snapshot at this step {> 0}
EVAL_CROPS = 256             # fixed held-out crops for the MAE against the baselines {> 0}
EVAL_EVERY = 500             # held-out MAE every this many steps (the curve in loss.png) {> 0}
CHECKPOINT_EVERY = 1000      # save the model every this many steps {> 0}
SEED = 0                     # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
QUICK = {"STEPS": 300, "LEARNING_RATE": 2e-3, "BAD_SNAPSHOT_STEP": 40, "EVAL_CROPS": 64, "EVAL_EVERY": 100,
         "CHECKPOINT_EVERY": 100}
DRY_RUN = {"STEPS": 4, "BAD_SNAPSHOT_STEP": 2, "EVAL_CROPS": 4, "EVAL_EVERY": 2, "CHECKPOINT_EVERY": 2,
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
    run = start_run(bc.EXPERIMENT, globals(), argv, framework="tensorflow", checkpoints=True)
    cfg = run.cfg
    train_photos, held_photos = bc.load_split(cfg)
    eval_crops = bc.held_out_crops(held_photos, cfg.EVAL_CROPS)
    predictor, optimizer, ckpt, history, rng = resume_predictor(run, cfg, train_photos + held_photos)
    step, interrupted = train(run, cfg, predictor, optimizer, train_photos, eval_crops, ckpt, history, rng)
    metrics = report(run, predictor, eval_crops, history, step)
    run.finish(metrics, status="interrupted" if interrupted else "complete")


def train_cell(*, constants: dict[str, Any], folder: str, curves: str) -> dict[str, Any]:
    """One more predictor, as a lab.executor cell: this script's training with `constants` (a checkpoint's,
    with its own SEED), checkpoint in `folder`, curves in `curves`; resumed when the folder holds one.
    recursive.py follows the rebuild of several. Ctrl+C saves, then stops the caller too."""
    run = start_cell(constants, folder, curves, "tensorflow")  # as start_run seeds main(): same SEED, same weights
    cfg = SimpleNamespace(**constants)
    train_photos, held_photos = bc.load_split(cfg)
    eval_crops = bc.held_out_crops(held_photos, cfg.EVAL_CROPS)
    predictor, optimizer, ckpt, history, rng = resume_predictor(run, cfg, train_photos + held_photos)
    step, interrupted = train(run, cfg, predictor, optimizer, train_photos, eval_crops, ckpt, history, rng)
    run.close()
    if interrupted:
        raise KeyboardInterrupt
    return {"steps": step, "held_out_mae": evaluate(predictor, eval_crops)}


def resume_predictor(run, cfg, photos):
    """A fresh predictor, or the checkpoint's (refused if made with another WIDTH, data or more steps)."""
    predictor = bm.build_predictor(PredictorSettings(cfg.WIDTH))
    ckpt, optimizer, rng = resume_training(run, bc.PREDICTOR_FILE, predictor, photos, architecture=ARCHITECTURE,
                                           steps=cfg.STEPS, learning_rate=cfg.LEARNING_RATE, seed=run.seed)
    history = {"loss": [], "eval_steps": [], "eval_mae": []}
    if ckpt.state is not None:
        saved = ckpt.state.get("history", {})
        history = {"loss": saved.get("loss", [])[:ckpt.step],
                   "eval_steps": [s for s in saved.get("eval_steps", []) if s <= ckpt.step]}
        history["eval_mae"] = saved.get("eval_mae", [])[:len(history["eval_steps"])]
    else:  # a fresh start: the old snapshot belongs to another training run
        run.checkpoint_path(bc.BAD_PREDICTOR_FILE).unlink(missing_ok=True)
    print(f"centre predictor: {predictor.count_params():,} parameters")
    return predictor, optimizer, ckpt, history, rng


def train(run, cfg, predictor, optimizer, photos, eval_crops, ckpt, history, rng):
    """MAE on the centre (the article's measure), a checkpoint every CHECKPOINT_EVERY steps."""
    import tensorflow as tf

    settings = settings_dict(PredictorSettings(cfg.WIDTH))
    bad_path = run.checkpoint_path(bc.BAD_PREDICTOR_FILE)

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
        save_training(ckpt, predictor, optimizer, rng, at_step, predictor=settings, history=history)

    done = ckpt.step
    if ckpt.finished:
        print(f"{ckpt.path} already has {ckpt.step} steps of {cfg.STEPS}: measuring only")
    with InterruptGuard() as guard, tqdm(range(ckpt.step, cfg.STEPS), initial=ckpt.step, total=cfg.STEPS,
                                         desc="predictor") as bar:
        for step in bar:
            loss = float(train_step(random_crops(photos, cfg.BATCH_SIZE, 128, rng)))
            done = step + 1
            history["loss"].append(loss)
            bar.set_postfix(train_mae=f"{loss:.4f}")
            scalars = {"train_mae": loss}
            if done == cfg.BAD_SNAPSHOT_STEP:
                save_checkpoint_file(bad_path, predictor, predictor=settings, step=done)
            if done % cfg.EVAL_EVERY == 0:
                history["eval_steps"].append(done)
                history["eval_mae"].append(evaluate(predictor, eval_crops))
                scalars["held_out_mae"] = history["eval_mae"][-1]
                bar.set_postfix(train_mae=f"{loss:.4f}", held_out_mae=f"{history['eval_mae'][-1]:.4f}")
            run.log_scalars(done, **scalars)
            if done % cfg.CHECKPOINT_EVERY == 0:
                save(done)
            if guard.requested:
                break
    if done % cfg.CHECKPOINT_EVERY and not ckpt.finished:
        save(done)
    if not bad_path.exists():  # fewer steps than BAD_SNAPSHOT_STEP
        save_checkpoint_file(bad_path, predictor, predictor=settings, step=done)
    return done, guard.requested


def report(run, predictor, eval_crops, history, step) -> dict:
    """Held-out MAE against the two baselines, on the very same crops; figures; claims."""
    s, e = bm.HOLE_START, bm.HOLE_START + bm.CELL
    truth = eval_crops[:, s:e, s:e]
    predicted = predictor.predict(eval_crops, batch_size=64, verbose=0)
    border_mean = np.broadcast_to(bm.BorderMean()(eval_crops).numpy(), truth.shape)
    biharmonic = biharmonic_centres(eval_crops)
    bad_predictor = bm.load_predictor(run.checkpoint_path(bc.BAD_PREDICTOR_FILE))
    bad_predicted = bad_predictor.predict(eval_crops, batch_size=64, verbose=0)
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
    for claim, baseline, beats in ((claims.PREDICTOR_BEATS_BORDER, "border_mean", "beats_border_mean"),
                                   (claims.PREDICTOR_BEATS_BIHARMONIC, "biharmonic", "beats_biharmonic")):
        run.add_claim(claim, f"held-out MAE {metrics['held_out_mae']:.4f} vs {baseline.replace('_', ' ')} "
                      f"{metrics[baseline + '_mae']:.4f} ({step} steps)", metrics[beats], claims.FULL_PROFILE[claim])
    examples_figure(run, eval_crops, predicted, border_mean, biharmonic, metrics)
    curves = {"train MAE (smoothed)": (list(range(1, len(history["loss"]) + 1)), bc.smooth(history["loss"], 20))}
    if history["eval_steps"]:
        curves["held-out MAE"] = (history["eval_steps"], history["eval_mae"])
    curves["border-mean baseline"] = ([1, max(step, 2)], [metrics["border_mean_mae"]] * 2)
    curves["biharmonic baseline"] = ([1, max(step, 2)], [metrics["biharmonic_mae"]] * 2)
    bc.curves_plot(run.path("loss.png"), curves, "step", "MAE of the 32x32 centre (pixels in [0,1])",
                   "centre predictor training")
    run.add_artifact(run.path("loss.png"), "predictor MAE over training vs the baselines")
    return metrics


def examples_figure(run, eval_crops, predicted, border_mean, biharmonic, metrics) -> None:
    """Surroundings / truth / prediction / baselines for a few held-out crops."""
    s, e = bm.HOLE_START, bm.HOLE_START + bm.CELL
    rows = []
    for i in np.linspace(0, len(eval_crops) - 1, min(5, len(eval_crops))).astype(int):
        def filled(centre, i=i):
            image = eval_crops[i].copy()
            image[s:e, s:e] = centre
            return image
        rows.append([eval_crops[i] * (1 - bm.centre_mask()), eval_crops[i], filled(predicted[i]),
                     filled(border_mean[i]), filled(biharmonic[i])])
    bc.image_grid(run.path("examples.png"), rows, [f"crop {i}" for i in range(len(rows))],
                  ["surroundings", "truth", f"predictor ({metrics['held_out_mae']:.3f})",
                   f"border mean ({metrics['border_mean_mae']:.3f})", f"biharmonic ({metrics['biharmonic_mae']:.3f})"],
                  title="held-out crops: the 32x32 centre filled by each method (MAE over all held-out crops)")
    run.add_artifact(run.path("examples.png"), "held-out centres: truth, predictor, border-mean and biharmonic baselines")


if __name__ == "__main__":
    main()
