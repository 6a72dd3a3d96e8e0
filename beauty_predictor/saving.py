"""Checkpoints of Keras models as one .npz file each: weights, Adam's state and the record, together.

One file (not a .keras model beside a .json step count and an .npz optimizer state, as before)
so the three can never disagree: a run killed between two writes, or a damaged state file, used
to resume at step 0 with a misleading message. The file holds plain arrays only (no pickled
code): w0000.. the model's weights, o0000.. the optimizer's variables, and "meta", a JSON string
with the steps done, the constants, the data fingerprint, the random generators' states, the
model's settings (so a later script rebuilds the model without reading any script's constants)
and the loss history. It is written by lab.checkpoint.atomic_write, which keeps the file it
replaces as `<stem>.prev.npz`; lab.checkpoint.resume falls back to that one when the last cannot
be read (`loader=load_checkpoint_file`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lab import LabError
from lab.checkpoint import atomic_write, read_checkpoint_file
from lab.safe_load import load_npz


def save_checkpoint_file(path: Path, model, optimizer=None, **meta: Any) -> Path:
    """Write the model's weights, the optimizer's variables (if any) and `meta` to `path` (.npz)."""
    arrays = {f"w{i:04d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    if optimizer is not None:
        arrays.update({f"o{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    arrays["meta"] = np.array(to_json(meta))
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays), keep_previous=True)


def to_json(record: dict[str, Any]) -> str:
    """JSON of a checkpoint record; NumPy values and tensors (torch's RNG state, when torch is loaded) as lists."""
    return json.dumps(record, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist"):  # NumPy arrays, torch tensors
        return value.tolist()
    return str(value)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """The checkpoint as a dict: meta's keys plus "weights" and "optimizer" (lists of arrays).

    A missing, empty, truncated or foreign file is a LabError saying which and what to do.
    """
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


def restore_optimizer(optimizer, variables, state: dict[str, Any]) -> bool:
    """Adam's moments and step count from the checkpoint; False (Adam restarts) when absent or mismatched."""
    values = state.get("optimizer") or []
    if not values:
        return False
    optimizer.build(variables)
    if len(values) != len(optimizer.variables) or any(
            tuple(v.shape) != tuple(w.shape) for v, w in zip(values, optimizer.variables, strict=True)):
        print("notice: the checkpoint's optimizer state does not match this optimizer; Adam restarts")
        return False
    for variable, value in zip(optimizer.variables, values, strict=True):
        variable.assign(value)
    return True


def generator_state(rng: np.random.Generator) -> dict:
    """A NumPy Generator's state as JSON-able data (lab.checkpoint saves only the global generators)."""
    return rng.bit_generator.state


def restored_generator(state: dict | None, seed: int) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if state:
        rng.bit_generator.state = state
    return rng
