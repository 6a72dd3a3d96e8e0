"""The sweep's cells: restartable units that give the same point however often they were stopped.

A cell runs from plain arguments (so a Ray worker can run it), checkpoints in its own folder, and a
cell stopped after a checkpoint resumes there and ends with the figures of an uninterrupted one.
The sweep run on a real local Ray cluster, with a worker killed, is in tests/test_lab_executor.py
(slow).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from lab import LabError
from tests.test_beauty_predictor import random_predictor, small_photo_folder

pytest.importorskip("tensorflow")

FIGURES = ("mae_x_y", "mae_x_zx", "mae_y_zy", "predictability_gain", "hf_energy_kept")


def saved_predictor(folder: Path) -> Path:
    from beauty_predictor.common import PREDICTOR_FILE
    from beauty_predictor.saving import save_checkpoint_file
    from beauty_predictor.settings import PredictorSettings

    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint_file(folder / PREDICTOR_FILE, random_predictor(), predictor=asdict(PredictorSettings(8)), step=1)
    return folder


def cell_plan(tmp_path: Path, photos: Path, name: str, steps: int, **changes) -> dict:
    from beauty_predictor.sweep_cell import CellPlan

    plan = CellPlan(VARIANT="article", RATIO=2.0, INDEX=1, SEED=0, WIDTH=8, DEPTH=2, CROP=128, STEPS=steps,
                    BATCH_SIZE=2, LEARNING_RATE=3e-3, EVAL_CROPS=2, CHECKPOINT_EVERY=2, PHOTOS_DIR=str(photos),
                    HELD_OUT_PHOTOS=["chelsea", "coffee"], MAX_SIDE=256,
                    PREDICTOR_DIR=str(tmp_path / "predictor"), CELL_DIR=str(tmp_path / name / "cell"),
                    CURVES_DIR=str(tmp_path / name / "curves"))
    return {**asdict(plan), **changes}


def test_a_stopped_cell_resumes_from_its_checkpoint_to_the_same_point(tmp_path):
    from beauty_predictor.sweep_cell import train_cell
    from lab.scalars import read_scalars

    photos = small_photo_folder(tmp_path)
    saved_predictor(tmp_path / "predictor")
    whole = train_cell(**cell_plan(tmp_path, photos, "whole", steps=4))
    assert whole["resumed_from_step"] == 0
    # Stopped after its checkpoint at step 2, then started again with the same plan.
    train_cell(**cell_plan(tmp_path, photos, "stopped", steps=2))
    resumed = train_cell(**cell_plan(tmp_path, photos, "stopped", steps=4))
    assert resumed["resumed_from_step"] == 2
    for name in FIGURES:
        np.testing.assert_allclose(resumed[name], whole[name], rtol=1e-5, err_msg=name)
    assert [step for step, _ in read_scalars(tmp_path / "stopped/curves/scalars.csv")["loss"]][-2:] == [3, 4]
    # A finished cell returns its stored point without training.
    again = train_cell(**cell_plan(tmp_path, photos, "stopped", steps=4))
    assert again["resumed_from_step"] == 4 and again["mae_y_zy"] == resumed["mae_y_zy"]
    # Other architecture constants: refused, naming the difference, never mixed.
    with pytest.raises(LabError, match="WIDTH"):
        train_cell(**cell_plan(tmp_path, photos, "stopped", steps=4, WIDTH=4))
