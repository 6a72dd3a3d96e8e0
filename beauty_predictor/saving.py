"""Checkpoints of Keras models as one .npz each, so weights, Adam's state and step count never disagree.

Plain arrays only (no pickled code): w0000.. the weights, o0000.. the optimizer's variables, "meta" a
JSON record (steps, constants, data fingerprint, generators, the model's settings, loss history),
written atomically with the replaced file kept as `<stem>.prev.npz` for resume to fall back to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from beauty_predictor.common import data_fingerprint
from lab import LabError
from lab.checkpoint import atomic_write, read_checkpoint_file, resume
from lab.safe_load import load_npz


def save_checkpoint_file(path: Path, model, optimizer=None, keep_previous: bool = True, **meta: Any) -> Path:
    """Write the model's weights, the optimizer's variables (if any) and `meta` to `path` (.npz)."""
    arrays = {f"w{i:04d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    if optimizer is not None:
        arrays.update({f"o{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    arrays["meta"] = np.array(json.dumps(meta, default=_plain))
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays), keep_previous=keep_previous)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist"):  # NumPy arrays, tensors
        return value.tolist()
    return str(value)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """The checkpoint as a dict, meta's keys plus "weights" and "optimizer" (lists of arrays); a missing,
    empty, truncated or foreign file is a LabError saying which and what to do."""
    def read(checkpoint: Path) -> tuple[list, list, Any]:
        saved = load_npz(checkpoint, "checkpoint")  # allow_pickle=False: an object array is refused
        keys = sorted(saved)
        return ([saved[k] for k in keys if k.startswith("w")], [saved[k] for k in keys if k.startswith("o")],
                json.loads(str(saved["meta"])))

    weights, optimizer, meta = read_checkpoint_file(path, read)
    if not isinstance(meta, dict):
        raise LabError(f"checkpoint {path} has no record of its run; rerun with --fresh")
    return {**meta, "weights": weights, "optimizer": optimizer}


def restore_weights(model, state: dict[str, Any], path: Path) -> None:
    """Put the checkpoint's weights into `model` (built from the checkpoint's settings)."""
    weights = state["weights"]
    expected = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in weights] != expected:
        raise LabError(f"checkpoint {path} holds weights of another model ({len(weights)} arrays for "
                       f"{len(expected)}); rerun with --fresh")
    model.set_weights(weights)


def restore_optimizer(optimizer, variables, state: dict[str, Any]) -> None:
    """Adam's moments and step count from the checkpoint; Adam restarts when they are absent or mismatched."""
    values = state.get("optimizer") or []
    if not values:
        return
    optimizer.build(variables)
    if len(values) != len(optimizer.variables) or any(
            tuple(v.shape) != tuple(w.shape) for v, w in zip(values, optimizer.variables, strict=True)):
        print("notice: the checkpoint's optimizer state does not match this optimizer; Adam restarts")
        return
    for variable, value in zip(optimizer.variables, values, strict=True):
        variable.assign(value)


def resume_training(run, name: str, model, photos, *, architecture, steps: int, learning_rate: float, seed: int):
    """Checkpoint `name` resumed into `model` (refused if made with other `architecture` constants, photos or
    more steps), and a fresh or restored Adam and crop generator: (ckpt, optimizer, rng)."""
    import keras

    ckpt = resume(run, name, architecture=architecture, steps=steps, data=data_fingerprint(photos),
                  loader=load_checkpoint_file)
    optimizer = keras.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(seed)
    if ckpt.state is not None:
        restore_weights(model, ckpt.state, ckpt.path)
        restore_optimizer(optimizer, model.trainable_variables, ckpt.state)
        if ckpt.state.get("crops_rng"):  # lab.checkpoint saves only the global generators
            rng.bit_generator.state = ckpt.state["crops_rng"]
    return ckpt, optimizer, rng


def save_training(ckpt, model, optimizer, rng, done: int, **record: Any) -> None:
    """The checkpoint resume_training reads: weights, Adam, the crop generator, `record`, ckpt.meta(done)."""
    save_checkpoint_file(ckpt.path, model, optimizer, crops_rng=rng.bit_generator.state, **ckpt.meta(done), **record)
