"""The improver's training loop and its held-out measurements, shared by train_improver and sweep.

Article 001: another network sits inside the loss, so the loop is written by hand with
tf.GradientTape instead of model.fit(); the predictor stays frozen.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from beauty_predictor import model as bm
from beauty_predictor.photos import random_crops


def make_train_step(improver, predictor, bad_predictor, optimizer, loss_name: str, k1: float, k2: float):
    """One tf.function step: Y = improver(X), Z = rebuild(Y), the loss (model.article_loss or
    model.contrast_loss), Adam on the improver."""
    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            y = improver(x, training=True)
            z = bm.rebuild(predictor, y)
            if loss_name == "contrast":
                loss, first, second = bm.contrast_loss(y, bm.rebuild(bad_predictor, y), z)
            else:
                loss, first, second = bm.article_loss(x, y, z, k1, k2)
        gradients = tape.gradient(loss, improver.trainable_variables)
        optimizer.apply_gradients(zip(gradients, improver.trainable_variables, strict=True))
        return loss, first, second

    return train_step


def term_names(loss_name: str) -> tuple[str, str]:
    """What the two loss terms measure, for logs and plots."""
    return ("mae_y_zbad", "mae_y_zgood") if loss_name == "contrast" else ("mae_x_y", "mae_y_z")


def train_improver(improver, predictor, bad_predictor, optimizer, photos, *, loss_name: str, k1: float, k2: float,
                   steps: int, start: int, batch_size: int, crop: int, rng: np.random.Generator, desc: str,
                   on_step=None, guard=None) -> int:
    """Run the loop from `start` to `steps`; calls on_step(done, loss, first, second); returns steps done."""
    train_step = make_train_step(improver, predictor, bad_predictor, optimizer, loss_name, k1, k2)
    first_name, second_name = term_names(loss_name)
    done = start
    with tqdm(range(start, steps), initial=start, total=steps, desc=desc) as bar:
        for step in bar:
            x = random_crops(photos, batch_size, crop, rng)
            loss, first, second = (float(v) for v in train_step(tf.constant(x)))
            done = step + 1
            bar.set_postfix({"loss": f"{loss:.4f}", first_name: f"{first:.4f}", second_name: f"{second:.4f}"})
            if on_step is not None:
                on_step(done, loss, first, second)
            if guard is not None and guard.requested:
                break
    return done


def predict_in_chunks(model, images: np.ndarray, chunk: int = 16) -> np.ndarray:
    return np.concatenate([model(images[i:i + chunk], training=False).numpy() for i in range(0, len(images), chunk)])


def rebuild_in_chunks(predictor, images: np.ndarray, chunk: int = 16) -> np.ndarray:
    return np.concatenate([bm.rebuild(predictor, images[i:i + chunk]).numpy() for i in range(0, len(images), chunk)])


def measure(x: np.ndarray, y: np.ndarray, predictor, bad_predictor=None) -> dict[str, float]:
    """Held-out figures: fidelity MAE(X,Y), predictability MAE(Y,Z_Y) against MAE(X,Z_X)."""
    z_x, z_y = rebuild_in_chunks(predictor, x), rebuild_in_chunks(predictor, y)
    figures = {
        "mae_x_y": float(np.mean(np.abs(x - y))),
        "mae_x_zx": float(np.mean(np.abs(x - z_x))),
        "mae_y_zy": float(np.mean(np.abs(y - z_y))),
    }
    figures["predictability_gain"] = 1.0 - figures["mae_y_zy"] / figures["mae_x_zx"]
    if bad_predictor is not None:
        bad_x, bad_y = rebuild_in_chunks(bad_predictor, x), rebuild_in_chunks(bad_predictor, y)
        figures["ratio_bad_good_x"] = float(np.mean(np.abs(x - bad_x)) / figures["mae_x_zx"])
        figures["ratio_bad_good_y"] = float(np.mean(np.abs(y - bad_y)) / figures["mae_y_zy"])
    return figures
