"""Benchmark: rebuild of a 512x512 image, batched vs one call per cell; improver steps per second. Run: python -m beauty_predictor.bench [--quick]

Both rebuilds on the same image and predictor, medians of REPEATS runs after a warm-up. Goal: batched >= 10x faster.
"""

from __future__ import annotations

import time

import numpy as np

from beauty_predictor import model as bm
from beauty_predictor.common import EXPERIMENT, PREDICTOR_FILE
from beauty_predictor.improve import make_train_step
from beauty_predictor.settings import ImproverSettings
from lab import exit_on_lab_error, start_run

# -----------------------------------------------------------------------------
# Constants.
IMAGE_SIZE = 512             # side of the rebuilt image (goal: 512, 256 cells) {>= 64}
REPEATS = 5                  # timed runs of each method (the median is reported) {> 0}
IMPROVER_WIDTH = 32          # the improver timed for steps per second (train_improver's full profile) {> 0}
IMPROVER_DEPTH = 4           # its 3x3 convolutions {> 0}
BATCH_SIZE = 8               # crops per improver step {> 0}
CROP = 128                   # side of the crops {>= 64}
TRAIN_STEPS = 10             # timed improver steps {> 0}
PER_CELL_CELLS = 0           # cells timed one by one (0: all of them; fewer: the time is scaled up to all) {>= 0}
SEED = 0                     # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
QUICK = {"REPEATS": 3, "TRAIN_STEPS": 3, "PER_CELL_CELLS": 32, "BATCH_SIZE": 4}
DRY_RUN = {"IMAGE_SIZE": 128, "REPEATS": 1, "TRAIN_STEPS": 1, "BATCH_SIZE": 2}
# -----------------------------------------------------------------------------


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: tracing and memory allocation are not what is measured
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv, framework="tensorflow", checkpoints=True)
    cfg = run.cfg
    import keras
    import tensorflow as tf

    bm.check_rebuild_shape(cfg.IMAGE_SIZE, cfg.IMAGE_SIZE)
    path = run.checkpoint_path(PREDICTOR_FILE)
    predictor = bm.load_predictor(path) if path.is_file() else bm.build_predictor()
    image = np.random.default_rng(run.seed).random((cfg.IMAGE_SIZE, cfg.IMAGE_SIZE, 3), dtype=np.float32)
    batched_fn = tf.function(lambda images: bm.rebuild(predictor, images))
    batched = median_seconds(lambda: batched_fn(tf.constant(image[None])).numpy(), cfg.REPEATS)
    cells = (cfg.IMAGE_SIZE // bm.CELL) ** 2
    timed = cells if cfg.PER_CELL_CELLS <= 0 else min(cells, cfg.PER_CELL_CELLS)
    # With PER_CELL_CELLS below the number of cells, the time of that many is scaled to all (every cell costs the same).
    bm.rebuild_per_cell(predictor, image, limit=2)  # warm-up
    per_cell = cells / timed * median_seconds(lambda: bm.rebuild_per_cell(predictor, image, limit=timed),
                                               1 if timed < cells else cfg.REPEATS)
    rows = timed * bm.CELL // cfg.IMAGE_SIZE * bm.CELL  # whole rows of cells that both methods computed
    same = float(np.max(np.abs(batched_fn(tf.constant(image[None])).numpy()[0, :rows]
                               - bm.rebuild_per_cell(predictor, image, limit=timed)[:rows])))
    print(f"rebuild {cfg.IMAGE_SIZE}x{cfg.IMAGE_SIZE} ({cells} cells): batched {batched * 1000:.0f} ms, "
          f"per cell {per_cell * 1000:.0f} ms, ratio {per_cell / batched:.1f}x (max difference {same:.2e})")

    improver = bm.build_improver(ImproverSettings("article", cfg.IMPROVER_WIDTH, cfg.IMPROVER_DEPTH))
    step = make_train_step(improver, predictor, None, keras.optimizers.Adam(1e-3), "article", 0.5, 0.5)
    crops = tf.constant(np.random.default_rng(1).random((cfg.BATCH_SIZE, cfg.CROP, cfg.CROP, 3), dtype=np.float32))
    step(crops)
    start = time.perf_counter()
    for _ in range(cfg.TRAIN_STEPS):
        step(crops)
    steps_per_second = cfg.TRAIN_STEPS / (time.perf_counter() - start)
    print(f"improver training: {steps_per_second:.2f} steps/s (batch {cfg.BATCH_SIZE} of {cfg.CROP}x{cfg.CROP})")
    run.finish({"rebuild_batched_s": batched, "rebuild_per_cell_s": per_cell, "speedup": per_cell / batched,
                "goal_speedup_ge_10": per_cell / batched >= 10, "batched_vs_per_cell_max_abs_diff": same,
                "cells": cells, "per_cell_timed_cells": timed, "improver_steps_per_s": steps_per_second})


if __name__ == "__main__":
    main()
