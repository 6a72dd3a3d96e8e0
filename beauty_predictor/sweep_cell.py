"""One cell of the sweep: train one improver at one K2/K1 and measure its point. A restartable unit.

lab.executor.run_cells calls `train_cell` in this process or as a Ray task on any node, so it takes
plain arguments (a CellPlan as a dict), reads the photos and predictor itself, and keeps its
checkpoint (sweep_cells/<variant>_k2_over_k1_<ratio>/improver.npz in the checkpoint folder) and
curves (sweep/cells/<cell>/) under the outputs root, which every node must see. A cell started again
resumes from its last checkpoint; a finished one just returns the figures its last checkpoint holds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from beauty_predictor.common import PREDICTOR_FILE, held_out_crops, load_split
from lab.executor import CellRun
from lab.scalars import ScalarLog

CHECKPOINT_FILE = "improver.npz"
# What must match to resume a cell's checkpoint (the rest of its plan is the folder's name or the data).
MUST_MATCH = ["VARIANT", "RATIO", "WIDTH", "DEPTH", "CROP", "BATCH_SIZE", "LEARNING_RATE", "EVAL_CROPS", "SEED"]


@dataclass(frozen=True)
class CellPlan:
    """Everything one cell needs, as plain values (it travels to the node that runs it)."""

    VARIANT: str
    RATIO: float
    INDEX: int                 # the cell's place in the sweep: its weights' seed is SEED + INDEX
    SEED: int
    WIDTH: int
    DEPTH: int
    CROP: int
    STEPS: int
    BATCH_SIZE: int
    LEARNING_RATE: float
    EVAL_CROPS: int
    CHECKPOINT_EVERY: int
    PHOTOS_DIR: str
    HELD_OUT_PHOTOS: list[str] = field(default_factory=list)
    MAX_SIDE: int = 512
    PREDICTOR_DIR: str = ""    # the folder holding the trained centre predictor
    CELL_DIR: str = ""         # this cell's checkpoint folder
    CURVES_DIR: str = ""       # this cell's TensorBoard folder

    @property
    def tag(self) -> str:
        return cell_tag(self.VARIANT, self.RATIO)


def cell_tag(variant: str, ratio: float) -> str:
    return f"{variant}_k2_over_k1_{ratio:g}"


def train_cell(**plan_fields: Any) -> dict[str, Any]:
    """Train (or resume) the improver of one (variant, ratio) and return its point on the frontier."""
    import keras

    from beauty_predictor import metrics as bmetrics
    from beauty_predictor import model as bm
    from beauty_predictor.improve import measure, predict_in_chunks, train_improver
    from beauty_predictor.saving import resume_training, save_training
    from beauty_predictor.settings import ImproverSettings, settings_dict

    plan = CellPlan(**plan_fields)
    started = time.time()
    train_photos, held_photos = load_split(SimpleNamespace(**asdict(plan)))
    run = CellRun({name: value for name, value in asdict(plan).items() if name in MUST_MATCH}, Path(plan.CELL_DIR))
    keras.utils.set_random_seed(plan.SEED + plan.INDEX)
    settings = ImproverSettings(plan.VARIANT, plan.WIDTH, plan.DEPTH)
    improver = bm.build_improver(settings)
    ckpt, optimizer, rng = resume_training(run, CHECKPOINT_FILE, improver, train_photos + held_photos,
                                           architecture=MUST_MATCH, steps=plan.STEPS,
                                           learning_rate=plan.LEARNING_RATE, seed=plan.SEED)
    if ckpt.finished and ckpt.state.get("figures"):
        return {**ckpt.state["figures"], "resumed_from_step": ckpt.step, "seconds": 0.0}
    predictor = bm.load_predictor(Path(plan.PREDICTOR_DIR) / PREDICTOR_FILE)
    curves = ScalarLog(Path(plan.CURVES_DIR))
    k1, k2 = 1.0 / (1.0 + plan.RATIO), plan.RATIO / (1.0 + plan.RATIO)  # K2/K1 = RATIO, K1 + K2 = 1

    def save(done: int, **extra: Any) -> None:
        save_training(ckpt, improver, optimizer, rng, done, improver=settings_dict(settings), **extra)

    def on_step(done, loss, first, second):
        curves.log(done, loss=loss, mae_x_y=first, mae_y_z=second)
        if done % plan.CHECKPOINT_EVERY == 0 and done < plan.STEPS:
            curves.flush()
            save(done)

    train_improver(improver, predictor, None, optimizer, train_photos, loss_name="article", k1=k1, k2=k2,
                   steps=plan.STEPS, start=ckpt.step, batch_size=plan.BATCH_SIZE, crop=plan.CROP, rng=rng,
                   desc=f"{plan.VARIANT} K2/K1={plan.RATIO:g}", on_step=on_step)
    curves.close()
    x = held_out_crops(held_photos, plan.EVAL_CROPS)
    y = predict_in_chunks(improver, x)
    figures = {"variant": plan.VARIANT, "k2_over_k1": plan.RATIO, "k1": k1, "k2": k2,
               **measure(x, y, predictor), "hf_energy_kept": bmetrics.hf_energy_ratio(x, y)}
    save(plan.STEPS, figures=figures)
    return {**figures, "resumed_from_step": ckpt.step, "seconds": round(time.time() - started, 2)}

