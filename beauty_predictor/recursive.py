"""Apply the trained improver N times in a row. Run: python -m beauty_predictor.recursive [--quick]

Beyond the article: its readers guessed that applying the improver again and again ends in
Malevich's "Black Square" ("every pixel predictable"). Here Y_0 = X, Y_n = improver(Y_{n-1}); for
each n we measure the predictability MAE(Y_n, Z(Y_n)), the distance to the original MAE(Y_n, X),
and the mean brightness and contrast (standard deviation) that a black square would drive to 0.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from beauty_predictor import model as bm
from beauty_predictor.common import (
    EXPERIMENT,
    PREDICTOR_FILE,
    check_variant,
    curves_plot,
    held_out_views,
    image_grid,
    load_split,
)
from beauty_predictor.improve import predict_in_chunks, rebuild_in_chunks
from lab import LabError, exit_on_lab_error, start_run
from lab.media import write_gif

# -----------------------------------------------------------------------------
# Constants.
REPEATS = 20                 # how many times the improver is applied (issue: 20)
VARIANT = "article"          # which trained improver: "article", "contrast" or "deep"
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand)
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels
PHOTOS = 3                   # held-out photos followed
SIZE = 256                   # side of the central square of each photo
STRIP_AT = [0, 1, 2, 5, 10, 20]  # the n shown in the strip of images
SEED = 0                     # -1 draws a random seed and prints it
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
QUICK = {"SIZE": 128, "PHOTOS": 2}
DRY_RUN = {"REPEATS": 2, "PHOTOS": 1, "SIZE": 128, "STRIP_AT": [0, 2]}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv, framework="tensorflow")
    cfg = run.cfg
    check_variant(cfg.VARIANT)
    if cfg.REPEATS < 1:
        raise LabError(f"REPEATS must be at least 1, got {cfg.REPEATS}")
    import keras

    predictor = bm.load_predictor(run.checkpoint_path(PREDICTOR_FILE))
    improver_path = run.checkpoint_path(f"improver_{cfg.VARIANT}.keras")
    if not improver_path.is_file():
        raise LabError(f"no trained improver at {improver_path}; run python -m beauty_predictor.train_improver "
                       f"--set VARIANT={cfg.VARIANT} first (same profile: add --quick if this run is quick)")
    improver = keras.models.load_model(improver_path, compile=False)
    _, held_photos = load_split(cfg)
    x = held_out_views(held_photos, cfg.PHOTOS, cfg.SIZE)

    images, record = [x], {"n": [], "mae_y_zy": [], "mae_y_x": [], "brightness": [], "contrast": []}
    y = x
    for n in tqdm(range(cfg.REPEATS + 1), desc="repeated improvement"):
        if n > 0:
            y = predict_in_chunks(improver, y)
            images.append(y)
        z = rebuild_in_chunks(predictor, y)
        record["n"].append(n)
        record["mae_y_zy"].append(float(np.mean(np.abs(y - z))))
        record["mae_y_x"].append(float(np.mean(np.abs(y - x))))
        record["brightness"].append(float(y.mean()))
        record["contrast"].append(float(y.std(axis=(1, 2)).mean()))

    curves_plot(run.path("repeated.png"), {
        "MAE(Y_n, Z(Y_n)) unpredictability": (record["n"], record["mae_y_zy"]),
        "MAE(Y_n, X) distance to the original": (record["n"], record["mae_y_x"]),
        "mean brightness": (record["n"], record["brightness"]),
        "contrast (std of pixels)": (record["n"], record["contrast"]),
    }, "n (times the improver was applied)", "value (pixels in [0, 1])",
        f"improver '{cfg.VARIANT}' applied repeatedly to held-out photos")
    run.add_artifact(run.path("repeated.png"), "predictability, distance, brightness and contrast against n")

    shown = [n for n in cfg.STRIP_AT if n <= cfg.REPEATS]
    rows = [[images[n][i] for n in shown] for i in range(len(x))]
    image_grid(run.path("strip.png"), rows, [p.name for p in held_photos[:len(x)]], [f"n = {n}" for n in shown],
               title="Y_n: the improver applied n times")
    run.add_artifact(run.path("strip.png"), "the strip of images Y_0 .. Y_N")
    frames = [np.concatenate(list(step), axis=1) for step in images]
    write_gif(frames, run.path("repeated.gif"), fps=4, max_side=768)
    run.add_artifact(run.path("repeated.gif"), "animation over n")

    black = record["brightness"][-1] < 0.05 and record["contrast"][-1] < 0.02
    flat = record["contrast"][-1] < 0.02
    verdict = ("a black square" if black else "a flat square (not black)" if flat else
               "no square: the images keep their structure")
    print(f"after {cfg.REPEATS} applications: unpredictability {record['mae_y_zy'][0]:.4f} -> "
          f"{record['mae_y_zy'][-1]:.4f}, distance {record['mae_y_x'][-1]:.4f}, brightness "
          f"{record['brightness'][0]:.3f} -> {record['brightness'][-1]:.3f}, contrast "
          f"{record['contrast'][0]:.3f} -> {record['contrast'][-1]:.3f}: {verdict}")
    run.finish({"repeats": cfg.REPEATS, "verdict": verdict, "ends_in_black_square": black, **{
        "final_" + key: values[-1] for key, values in record.items() if key != "n"},
        "initial_mae_y_zy": record["mae_y_zy"][0], "initial_brightness": record["brightness"][0],
        "initial_contrast": record["contrast"][0], "curves": record})


if __name__ == "__main__":
    main()
