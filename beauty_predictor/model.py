"""The article's networks in Keras 3 (TensorFlow backend): centre predictor, rebuild, improvers, losses.

Article 001: "a network predicts from the surroundings (128,128,3) their centre (32,32,3);
predictability is the pixel-wise difference between the original picture and the picture
assembled from predicted centres." The improver is trained on k1*MAE(X,Y) + k2*MAE(Y,Z), Z being Y
rebuilt from predicted centres; the second experiment maximises MAE(Y,Z_bad)/MAE(Y,Z_good).
"""

from __future__ import annotations

from pathlib import Path

import keras  # the TensorFlow backend is pinned in beauty_predictor/__init__.py, before any import of keras
import numpy as np
import tensorflow as tf

from beauty_predictor.saving import load_checkpoint_file, restore_weights
from beauty_predictor.settings import ImproverSettings, PredictorSettings
from lab import LabError
from lab.safe_load import settings_from_checkpoint

CONTEXT = 128  # side of the surroundings the predictor sees (article)
CELL = 32      # side of the centre it predicts (article)
HOLE_START = (CONTEXT - CELL) // 2  # 48: the centre occupies rows/columns 48..79
BORDER = 4     # width of the ring around the hole whose mean colour is the simple baseline


def centre_mask(margin: int = 0) -> np.ndarray:
    """1 inside the centre square grown by `margin` px on each side, 0 elsewhere; shape (CONTEXT, CONTEXT, 1)."""
    mask = np.zeros((CONTEXT, CONTEXT, 1), np.float32)
    mask[HOLE_START - margin:HOLE_START + CELL + margin, HOLE_START - margin:HOLE_START + CELL + margin] = 1.0
    return mask


class MaskCentre(keras.layers.Layer):
    """Zero the centre and append the mask channel: the predictor never sees the pixels it predicts."""

    def call(self, images):
        mask = tf.constant(centre_mask())[None]
        masked = images * (1.0 - mask)
        return tf.concat([masked, tf.broadcast_to(mask, tf.shape(images[..., :1]))], axis=-1)


class BorderMean(keras.layers.Layer):
    """Mean colour of the ring around the hole, as a (batch, 1, 1, 3) tensor (the simple baseline)."""

    def call(self, images):
        ring = centre_mask(BORDER) - centre_mask()  # the BORDER-px ring just outside the hole
        weights = tf.constant(ring / ring.sum())[None]
        return tf.reduce_sum(images * weights, axis=[1, 2], keepdims=True)


class CentreCrop(keras.layers.Layer):
    """The central `size` x `size` window of a feature map."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, features):
        start = (tf.shape(features)[1] - self.size) // 2
        return features[:, start:start + self.size, start:start + self.size, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])


def _conv(filters, stride=1, activation="relu", name=None):
    return keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation=activation, name=name)


def build_predictor(settings: PredictorSettings | None = None) -> keras.Model:
    """128x128x3 surroundings -> 32x32x3 centre: an encoder down to 8x8 (it sees all the surroundings), a
    decoder over the middle only with U-Net skips, predicting a correction to the hole border's mean colour
    (an untrained network starts at that baseline)."""
    width = (settings or PredictorSettings()).width
    images = keras.Input((CONTEXT, CONTEXT, 3), name="surroundings")
    x = MaskCentre(name="mask_centre")(images)                            # 128, 4 channels
    e2 = _conv(width, 2, name="enc_64")(x)                                # 64x64
    e4 = _conv(2 * width, 2, name="enc_32")(e2)                           # 32x32
    e8 = _conv(3 * width, 2, name="enc_16")(e4)                           # 16x16
    e16 = _conv(4 * width, 2, name="enc_8")(e8)                           # 8x8
    h = _conv(4 * width, name="mid_a")(e16)
    h = _conv(4 * width, name="mid_b")(h)
    h = keras.layers.UpSampling2D(name="up_16")(h)                        # 16x16, stride 8
    h = keras.layers.Concatenate()([h, e8])
    h = CentreCrop(8)(_conv(3 * width, name="dec_16")(h))                 # pixels 32..95
    h = keras.layers.UpSampling2D(name="up_32")(h)                        # 16x16, stride 4
    h = keras.layers.Concatenate()([h, CentreCrop(16)(e4)])
    h = CentreCrop(8)(_conv(2 * width, name="dec_32")(h))                 # pixels 48..79
    h = keras.layers.UpSampling2D(name="up_64")(h)                        # 16x16, stride 2
    h = keras.layers.Concatenate()([h, CentreCrop(16)(e2)])
    h = _conv(width, name="dec_64")(h)
    h = keras.layers.UpSampling2D(interpolation="bilinear", name="up_128")(h)  # 32x32, stride 1
    h = _conv(width, name="dec_128")(h)
    correction = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros", name="correction")(h)
    centre = keras.layers.Add(name="centre")([BorderMean(name="border_mean")(images), correction])
    return keras.Model(images, centre, name="center_predictor")


def build_improver(settings: ImproverSettings) -> keras.Model:
    """settings.kind: "plain", the article's "very simple" 3x3 convolutions from random weights whose last layer
    outputs Y (it must learn to copy X); "residual", the same stack adding a zero-initialised residual to X (it
    starts as the identity); "unet", the article's "more complex" improver as a U-Net, plain output."""
    if settings.kind == "unet":
        return _build_unet_improver(settings.width)
    images = keras.Input((None, None, 3), name="x")
    h = images
    for i in range(settings.depth):
        h = _conv(settings.width, name=f"conv_{i}")(h)
    if settings.kind == "plain":
        # Y directly: no path copies X, so the network has to learn the copy (as the article's did).
        y = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="output")(h)
        return keras.Model(images, y, name="plain_improver")
    # Residual: the last layer starts at zero, so the untrained improver is the identity (Y = X).
    residual = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros", name="output")(h)
    improved = keras.layers.Add()([images, residual])
    clipped = keras.layers.Activation(lambda t: tf.clip_by_value(t, 0.0, 1.0), name="clip01")(improved)
    return keras.Model(images, clipped, name="residual_improver")


def _build_unet_improver(width: int) -> keras.Model:
    """The "more complex" improver: a U-Net (two halvings, skips) whose last layer outputs Y."""
    images = keras.Input((None, None, 3), name="x")
    e1 = _conv(width)(_conv(width)(images))
    e2 = _conv(2 * width)(_conv(2 * width, 2)(e1))
    e3 = _conv(4 * width)(_conv(4 * width, 2)(e2))
    d2 = _conv(2 * width)(keras.layers.Concatenate()([keras.layers.UpSampling2D()(e3), e2]))
    d1 = _conv(width)(keras.layers.Concatenate()([keras.layers.UpSampling2D()(d2), e1]))
    y = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="output")(d1)
    return keras.Model(images, y, name="unet_improver")


def check_rebuild_shape(height: int, width: int) -> None:
    if height % CELL or width % CELL or height < 2 * CELL or width < 2 * CELL:
        raise LabError(f"rebuild needs an image whose sides are multiples of {CELL} and at least {2 * CELL} px, "
                       f"got {height}x{width}; crop it first (photos.centre_crop)")


def surroundings(images: tf.Tensor) -> tf.Tensor:
    """Every cell's 128x128 surroundings, (batch * rows * cols, 128, 128, 3): reflect-padded by 48 px (a border
    cell sees a mirror image of its neighbours), then one window per cell (stride 32)."""
    pad = (CONTEXT - CELL) // 2
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    patches = tf.image.extract_patches(padded, sizes=[1, CONTEXT, CONTEXT, 1], strides=[1, CELL, CELL, 1],
                                       rates=[1, 1, 1, 1], padding="VALID")
    return tf.reshape(patches, [-1, CONTEXT, CONTEXT, images.shape[-1] or 3])


def tile_centres(centres: tf.Tensor, batch: int, height: int, width: int) -> tf.Tensor:
    """(batch * rows * cols, 32, 32, 3) predicted centres back into (batch, height, width, 3) images."""
    rows, cols = height // CELL, width // CELL
    grid = tf.reshape(centres, [batch, rows, cols, CELL, CELL, 3])
    return tf.reshape(tf.transpose(grid, [0, 1, 3, 2, 4, 5]), [batch, height, width, 3])


def rebuild(predictor: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """Z = rebuild(Y): every 32x32 cell predicted from its 128x128 surroundings in one batched call;
    differentiable in `images`, so the improver's loss flows through it."""
    images = tf.convert_to_tensor(images, tf.float32)
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    check_rebuild_shape(height, width)
    centres = predictor(surroundings(images), training=False)
    return tile_centres(centres, batch, height, width)


def rebuild_per_cell(predictor: keras.Model, image: np.ndarray, limit: int | None = None) -> np.ndarray:
    """The naive rebuild for the benchmark, one predictor call per cell; only the first `limit` cells (reading
    order) when given, the rest stay 0."""
    height, width = image.shape[:2]
    check_rebuild_shape(height, width)
    pad = (CONTEXT - CELL) // 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    rebuilt = np.zeros_like(image)
    corners = [(top, left) for top in range(0, height, CELL) for left in range(0, width, CELL)]
    for top, left in corners[:limit]:
        window = padded[None, top:top + CONTEXT, left:left + CONTEXT]
        rebuilt[top:top + CELL, left:left + CELL] = predictor(window, training=False).numpy()[0]
    return rebuilt


def cell_errors(images: tf.Tensor, rebuilt: tf.Tensor) -> np.ndarray:
    """Mean absolute error of each 32x32 cell: (batch, rows, cols), the heat map of unpredictability."""
    diff = tf.reduce_mean(tf.abs(tf.convert_to_tensor(images) - rebuilt), axis=-1)
    return tf.nn.avg_pool2d(diff[..., None], CELL, CELL, "VALID")[..., 0].numpy()


def mae(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.abs(a - b))


def article_loss(x, y, z, k1: float, k2: float):
    """k1*MAE(X,Y) + k2*MAE(Y,Z) (article, K1 = K2 = 0.5): stay close to X, become predictable."""
    fidelity, predictability = mae(x, y), mae(y, z)
    return k1 * fidelity + k2 * predictability, fidelity, predictability


def contrast_loss(y, z_bad, z_good):
    """The article's second experiment maximises MAE(Y,Z_bad)/MAE(Y,Z_good), no X term. Minimising the inverse
    ratio has the same optimum but is bounded below by 0: a step never divides by a vanishing error."""
    good, bad = mae(y, z_good), mae(y, z_bad)
    return good / (bad + 1e-6), bad, good


def _checkpoint(path: Path, kind: str, settings_type, what: str, script: str):
    """The checkpoint at `path` and the settings of its `kind` model; LabErrors say what to run."""
    path = Path(path)
    if not path.is_file():
        raise LabError(f"no trained {what} at {path}; run {script} first "
                       "(with the same profile: add --quick if this run is quick)")
    state = load_checkpoint_file(path)
    if kind not in state:
        raise LabError(f"{path} is not a checkpoint of the {what}; rerun {script} --fresh")
    return state, settings_from_checkpoint(settings_type, state[kind], path, script)


def load_predictor(path: Path, script: str = "python -m beauty_predictor.train_predictor") -> keras.Model:
    """The centre predictor of a checkpoint, rebuilt from the checkpoint's settings, frozen."""
    state, settings = _checkpoint(path, "predictor", PredictorSettings, "centre predictor", script)
    model = build_predictor(settings)
    restore_weights(model, state, path)
    model.trainable = False
    return model


def load_improver(path: Path, variant: str) -> tuple[keras.Model, dict]:
    """The trained improver of `variant`, rebuilt from its checkpoint's settings, and the checkpoint; one of
    another variant (a copied or renamed file) is refused, naming both."""
    script = f"python -m beauty_predictor.train_improver --set VARIANT={variant}"
    state, settings = _checkpoint(path, "improver", ImproverSettings, "improver", script)
    if settings.variant != variant:
        raise LabError(f"{path} holds an improver of VARIANT={settings.variant!r}, not the {variant!r} asked for; "
                       f"use --set VARIANT={settings.variant}, or retrain with {script} --fresh")
    model = build_improver(settings)
    restore_weights(model, state, path)
    return model, state
