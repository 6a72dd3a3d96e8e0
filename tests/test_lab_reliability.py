"""The shared rules every training script relies on: one resume, one lock per checkpoint folder,
range-checked constants, readable user images, curves and claims in the run's folder."""

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import (
    fingerprint_files,
    load_checkpoint,
    previous_path,
    resume,
    save_checkpoint,
)
from lab.constants import resolve_constants
from lab.images import read_rgb
from lab.scalars import read_scalars

SCRIPT_SOURCE = textwrap.dedent('''
    """A demo script."""
    import math

    # -----------------------------------------------------------------------------
    # Constants.
    STEPS = 20             # optimisation steps (article: 10^4) {> 0}
    HIDDEN = 8             # width of the hidden layer {> 0}
    LEARNING_RATE = 0.1    # Adam's step size {> 0}
    DROPOUT = 0.2          # dropout probability {>= 0, < 1}
    MAX_ITERATIONS = 5     # -1 runs until stopped {-1 or > 0}
    TARGET_DIR = "photos"  # where files go {nonempty}
    VARIANT = "article"    # which variant
    SEED = 0               # the seed
    QUICK = {"STEPS": 10}
    # -----------------------------------------------------------------------------

    ARCHITECTURE = ["HIDDEN"]
    HELPER_CONSTANT = math.pi
''')


@pytest.fixture
def script(tmp_path, monkeypatch):
    """A script's globals as Python makes them, with its file (the constants' comments live there)."""
    monkeypatch.setenv("LAB_OUTPUT_ROOT", str(tmp_path / "outputs"))
    path = tmp_path / "demo_train.py"
    path.write_text(SCRIPT_SOURCE)
    namespace = {"__name__": "__main__", "__file__": str(path)}
    exec(compile(SCRIPT_SOURCE, str(path), "exec"), namespace)
    return namespace


# ----------------------------------------------------------------------------- constants


def test_only_the_ruled_block_holds_constants(script):
    constants = resolve_constants(script)
    assert "ARCHITECTURE" not in constants and "HELPER_CONSTANT" not in constants
    assert constants["RUN_NAME"] == ""  # every script takes a RUN_NAME
    with pytest.raises(LabError, match="unknown constant.*ARCHITECTURE"):
        resolve_constants(script, ["ARCHITECTURE=[1]"])


@pytest.mark.parametrize(
    ("override", "message"),
    [("STEPS=0", "STEPS=0 is out of range: it must be > 0"), ("STEPS=-4", "STEPS=-4 is out of range"),
     ("LEARNING_RATE=1e999", "LEARNING_RATE must be a finite number"),
     ("LEARNING_RATE=nan", "LEARNING_RATE must be a finite number"),
     ("DROPOUT=1.0", "DROPOUT=1.0 is out of range: it must be >= 0, < 1"),
     ("MAX_ITERATIONS=-5", "MAX_ITERATIONS=-5 is out of range: it must be -1 or > 0"),
     ("TARGET_DIR=", "TARGET_DIR='' is out of range: it must be not empty"),
     ("RUN_NAME=../x", "RUN_NAME='../x' is out of range")],
)
def test_range_tags_refuse_values_that_make_no_sense(script, override, message):
    with pytest.raises(LabError, match=message.replace("(", r"\(").replace("[", r"\[")):
        resolve_constants(script, [override])


def test_range_tags_accept_values_in_range(script):
    constants = resolve_constants(script, ["MAX_ITERATIONS=-1", "DROPOUT=0", "STEPS=1"])
    assert constants["MAX_ITERATIONS"] == -1 and constants["DROPOUT"] == 0.0 and constants["STEPS"] == 1


def test_help_shows_value_type_range_and_comment(script, capsys):
    with pytest.raises(SystemExit):
        start_run("demo", script, ["--help"])
    text = capsys.readouterr().out
    assert "STEPS = 20  (int) [> 0]" in text and "optimisation steps (article: 10^4)" in text
    assert "{> 0}" not in text  # the tag is shown as a range, not as raw comment text


def test_direct_run_is_named_by_its_file(script):
    run = start_run("demo", script, ["--quick"])
    assert run.script == "demo_train" and run.out_dir.name == "demo_train"


def test_folder_named_after_settings_and_run_name(script):
    run = start_run("demo", script, ["--set", "VARIANT=deep", "--set", "RUN_NAME=b"],
                    subdir=lambda cfg: f"improver_{cfg.VARIANT}")
    assert run.out_dir.name == "improver_deep-b" and run.checkpoint_dir.name == "full-b"
    assert [p.name for p in run.out_dir.parent.iterdir()] == ["improver_deep-b"]  # no other folder made


def test_unwritable_outputs_folder_is_named_before_any_work(script, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LAB_OUTPUT_ROOT", str(blocker / "outputs"))
    with pytest.raises(LabError, match="cannot write to the outputs folder"):
        start_run("demo", script, [])


def test_ctrl_c_outside_the_loop_exits_without_traceback(capsys):
    @exit_on_lab_error
    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 130 and "interrupted" in capsys.readouterr().err


# ----------------------------------------------------------------------------- resume


def _train(run, steps, interrupt_at=None, data=None):
    """A tiny regression that draws its data from the global generators, with the one resume."""
    model = torch.nn.Linear(4, 1)  # built first: its initialisation draws from the generators
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    ckpt = resume(run, "model.pt", architecture=["HIDDEN"], steps=steps, data=data)
    if ckpt.state is not None:
        model.load_state_dict(ckpt.state["model"])
        optimizer.load_state_dict(ckpt.state["optimizer"])
    for step in range(ckpt.step, steps):
        x = torch.randn(16, 4) + float(np.random.rand()) + random.random()  # all three generators
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        save_checkpoint(ckpt.path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    **ckpt.meta(step + 1)})
        if step + 1 == interrupt_at:
            break
    return model.weight.detach().clone()


def test_interrupted_and_resumed_equals_uninterrupted(script):
    uninterrupted = _train(start_run("demo", script, ["--set", "RUN_NAME=a"]), 12)
    _train(start_run("demo", script, ["--set", "RUN_NAME=b"]), 12, interrupt_at=5)
    random.seed(99), np.random.seed(99), torch.manual_seed(99)  # a new process starts elsewhere
    resumed = _train(start_run("demo", script, ["--set", "RUN_NAME=b"]), 12)
    assert torch.allclose(resumed, uninterrupted)


def test_fewer_steps_than_done_is_refused_not_rewound(script):
    _train(start_run("demo", script, []), 12)
    with pytest.raises(LabError, match="has 12 steps done, more than the 5 this run asks for"):
        _train(start_run("demo", script, []), 5)
    run = start_run("demo", script, [])
    assert load_checkpoint(run.checkpoint_path("model.pt"))["step"] == 12  # the finished run is intact
    assert resume(run, "model.pt", steps=12).finished
    assert resume(start_run("demo", script, ["--fresh"]), "model.pt", steps=5).step == 0


def test_changed_architecture_and_data_are_refused(script, tmp_path):
    data = tmp_path / "picture.txt"
    data.write_text("one")
    _train(start_run("demo", script, []), 3, data=fingerprint_files([data]))
    with pytest.raises(LabError, match="HIDDEN: checkpoint has 8, this run has 16"):
        _train(start_run("demo", script, ["--set", "HIDDEN=16"]), 3)
    data.write_text("two")
    with pytest.raises(LabError, match="trained on other data"):
        _train(start_run("demo", script, []), 6, data=fingerprint_files([data]))


def test_corrupt_checkpoint_falls_back_to_the_previous_one(script, capsys):
    run = start_run("demo", script, [])
    _train(run, 4)
    path = run.checkpoint_path("model.pt")
    assert load_checkpoint(previous_path(path))["step"] == 3
    path.write_bytes(path.read_bytes()[:100])  # cut short
    ckpt = resume(start_run("demo", script, []), "model.pt", steps=4)
    assert ckpt.step == 3 and "previous checkpoint" in capsys.readouterr().out
    previous_path(path).write_bytes(b"")
    with pytest.raises(LabError, match="damaged or incomplete"):
        resume(start_run("demo", script, []), "model.pt", steps=4)


def test_empty_checkpoint_message_says_so(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(LabError, match="the file is empty"):
        load_checkpoint(tmp_path / "model.pt")


def test_checkpoints_follow_the_umask_and_temporaries_are_cleared(script):
    run = start_run("demo", script, [])
    folder = run.checkpoint_dir
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / ".model.abc123.tmp.pt"
    stale.write_bytes(b"")  # what a SIGKILL during a write leaves
    old_mask = os.umask(0o022)
    try:
        path = run.checkpoint_path("model.pt")
        save_checkpoint(path, {"step": 1})
    finally:
        os.umask(old_mask)
    assert not stale.exists()
    assert path.stat().st_mode & 0o777 == 0o644


LOCK_HOLDER = """
import sys, time
from lab.checkpoint import lock_folder
lock_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_second_run_on_a_checkpoint_folder_stops_and_a_dead_holder_is_taken_over(tmp_path):
    from lab.checkpoint import lock_folder

    folder = tmp_path / "checkpoints"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LabError, match=rf"another run \(pid {holder.pid}, started .*\) is using .*RUN_NAME"):
            lock_folder(folder)
    finally:
        holder.kill()
        holder.wait()
    lock_folder(folder)  # the killed run's lock went with it


# ----------------------------------------------------------------------------- curves and claims


def test_scalars_go_to_csv_and_tensorboard_and_a_resume_drops_the_overtaken_rows(script):
    run = start_run("demo", script, [])
    for step in range(5):
        run.log_scalars(step, loss=1.0 / (step + 1), lr=0.1)
    run.finish({})
    resumed = start_run("demo", script, [])
    resumed.log_scalars(3, loss=0.5, lr=0.1)  # the checkpoint was at step 3
    resumed.finish({})
    curves = read_scalars(run.out_dir / "scalars.csv")
    assert [step for step, _ in curves["loss"]] == [0, 1, 2, 3] and curves["loss"][3][1] == 0.5
    assert list(run.out_dir.glob("events.out.tfevents.*"))


def test_claims_land_in_run_json(script):
    import json

    run = start_run("demo", script, [])
    run.add_claim("the square wraps into a sphere", "coverage 0.64", True, "coverage 0.99")
    record = json.loads(run.finish({}).read_text())
    assert record["claims"] == [{"claim": "the square wraps into a sphere", "measured": "coverage 0.64",
                                 "reproduced": True, "full_profile": "coverage 0.99"}]


# ----------------------------------------------------------------------------- user images

GRADIENT = np.linspace(0, 1, 32 * 32).reshape(32, 32)


@pytest.mark.parametrize(
    ("mode", "make"),
    [("I;16", lambda: Image.fromarray((GRADIENT * 65535).astype(np.uint16))),
     ("I", lambda: Image.fromarray((GRADIENT * 65535).astype(np.int32))),
     ("F", lambda: Image.fromarray(GRADIENT.astype(np.float32))),
     ("L", lambda: Image.fromarray((GRADIENT * 255).astype(np.uint8))),
     ("LA", lambda: Image.fromarray((GRADIENT * 255).astype(np.uint8)).convert("LA")),
     ("P", lambda: Image.fromarray((GRADIENT * 255).astype(np.uint8)).convert("RGB").quantize(256)),
     ("CMYK", lambda: Image.fromarray((GRADIENT * 255).astype(np.uint8)).convert("RGB").convert("CMYK"))],
)
def test_read_rgb_scales_every_mode_into_0_255(tmp_path, mode, make):
    path = tmp_path / f"picture.{'tif' if mode in ('I', 'F', 'CMYK') else 'png'}"
    make().save(path)
    with Image.open(path) as check:
        assert check.mode == mode  # the file really is in that mode
    rgb = np.asarray(read_rgb(path), dtype=np.float64)
    assert rgb.shape == (32, 32, 3)
    assert abs(rgb.mean() - 127.5) < 4 and rgb.min() < 10 and rgb.max() > 245  # scaled, not clipped white
