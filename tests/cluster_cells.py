"""A cheap restartable cell for the executor's tests: a seeded random walk with checkpoints.

It behaves as a training cell does (lab.executor's contract): it locks its own folder (the lock
file names the pid of the process running it, which the kill test reads), resumes from its last
checkpoint, logs the step it started from, and ends with the same value however often it was
interrupted. Imported by name on the Ray workers, so it is a module of its own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from lab.checkpoint import atomic_write_text, lock_folder

STATE_FILE = "state.json"
STARTS_FILE = "starts.log"


def random_walk_cell(folder: str, steps: int, checkpoint_every: int, seed: int, step_seconds: float = 0.0) -> dict:
    """`steps` steps of value = 0.9 * value + N(0, 1), checkpointed every `checkpoint_every`."""
    folder = Path(folder)
    lock_folder(folder)
    state_path = folder / STATE_FILE
    if state_path.is_file():
        state = json.loads(state_path.read_text())
    else:
        state = {"step": 0, "value": 0.0, "rng": np.random.default_rng(seed).bit_generator.state}
    with open(folder / STARTS_FILE, "a") as log:
        log.write(f"{state['step']} {os.getpid()}\n")
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    value = state["value"]
    for step in range(state["step"], steps):
        value = 0.9 * value + float(rng.normal())
        time.sleep(step_seconds)
        if (step + 1) % checkpoint_every == 0:
            record = {"step": step + 1, "value": value, "rng": rng.bit_generator.state}
            atomic_write_text(state_path, json.dumps(record))
    return {"value": value, "pid": os.getpid()}


def failing_cell(message: str) -> None:
    raise ValueError(message)


def starts(folder: str | Path) -> list[int]:
    """The step each run of the cell started from, in order."""
    lines = (Path(folder) / STARTS_FILE).read_text().split("\n")
    return [int(line.split()[0]) for line in lines if line]
