"""SIGKILL at random moments: `python -m gan_basics.gan --quick` never loses more than one checkpoint
interval and never leaves a checkpoint that fails to load. Slow: about 20 starts of the
script. Run it and read its log with: ./test.sh tests/test_gan_basics_kill.py -m slow -s
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from lab.checkpoint import load_checkpoint
from tests.conftest import REPO_ROOT

KILLS = 20


def _epochs_logged(csv_path) -> int:
    """The last epoch whose scores the run wrote to its curves (written after that epoch's checkpoint)."""
    if not csv_path.is_file():
        return 0
    with open(csv_path, newline="", encoding="utf-8") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle) if row["name"] == "frechet"]
    return max(steps, default=0)


@pytest.mark.slow
def test_random_sigkills_lose_at_most_one_epoch_and_never_corrupt_the_checkpoint(lab_outputs):
    env = dict(os.environ, LAB_OUTPUT_ROOT=str(lab_outputs), PYTHONPATH=str(REPO_ROOT))
    # --quick with more epochs, so that twenty kills land inside the training.
    command = [sys.executable, "-m", "gan_basics.gan", "--quick", "--set", "EPOCHS=200"]
    checkpoint = lab_outputs / "gan_basics" / "checkpoints" / "quick" / "gan_digits_last.pt"
    curves = lab_outputs / "gan_basics" / "gan_digits" / "scalars.csv"
    subprocess.run([sys.executable, "-m", "gan_basics.evaluator"], env=env, cwd=REPO_ROOT, check=True,
                   capture_output=True)  # the judge, trained once before the kills
    rng = random.Random(0)
    saved_before = 0
    for kill in range(1, KILLS + 1):
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        # Wait until this process has finished an epoch of its own, then kill it at a random moment
        # of the next one or two (training, scoring, drawing the grid or writing a checkpoint).
        deadline = time.time() + 300
        while _epochs_logged(curves) <= saved_before and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        logged = _epochs_logged(curves)
        state = load_checkpoint(checkpoint)  # raises on a damaged file: the test fails
        lost = logged - state["step"]
        print(f"kill {kill:2d}: {logged} epochs logged, checkpoint at epoch {state['step']} "
              f"(loadable, {lost} logged epoch(s) lost)", flush=True)
        assert state["step"] >= logged, "an epoch whose scores were logged is missing from the checkpoint"
        assert state["step"] >= saved_before, "the checkpoint went backwards"
        saved_before = state["step"]
    assert saved_before >= KILLS  # every start made progress: nothing was lost for good
