"""Bad input, signals, locks and full disks: each ends in one clear line or the expected behaviour.

Every image read, path-valued setting, device string, typed list, text file and write is handled
as a class in lab/; these tests take one member of each class through the code a user runs.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lab import LabError, exit_on_lab_error
from lab.checkpoint import InterruptGuard, atomic_write, cache_lock, load_checkpoint, save_checkpoint
from lab.constants import parse_value
from lab.images import read_rgb
from lab.paths import read_text_file
from lab.run import resolve_device
from tests.conftest import REPO_ROOT, run_module


def _bomb(path: Path, side: int = 30_000) -> Path:
    """A tiny PNG whose header declares side x side pixels (Pillow refuses to decode it)."""
    Image.new("RGB", (4, 4), "red").save(path)
    data = bytearray(path.read_bytes())
    header = bytearray(data[16:29])  # IHDR's 13 data bytes follow the signature, the length and "IHDR"
    header[0:8] = struct.pack(">II", side, side)
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(header)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def _one_line_exit(capsys, main, argv, code=2) -> str:
    """Run a script's main in-process; it must exit with `code` and say one `error:` line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -----------------------------------------------------------------------------
# Images: a decompression bomb is refused, naming the file, wherever images are read.


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path):
    bomb = _bomb(tmp_path / "bomb.png")
    with pytest.raises(LabError, match=r"PICTURE .*bomb\.png declares more pixels than the safety limit"):
        read_rgb(bomb, "PICTURE")


def test_a_bomb_through_sphere_mapping_pen_cap_and_vqgan_is_one_line(tmp_path, lab_outputs, capsys):
    from pen_cap_vae import train as pen_train
    from sphere_mapping import train as sphere_train
    from vqgan_clip import generate

    bomb = _bomb(tmp_path / "bomb.png")
    line = _one_line_exit(capsys, sphere_train.main, ["--dry-run", "--set", f"PICTURE={bomb}"])
    assert "bomb.png" in line and "safety limit" in line
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("RGB", (40, 40), "blue").save(pictures / "1_first.png")
    _bomb(pictures / "2_second.png")
    line = _one_line_exit(capsys, pen_train.main, ["--dry-run", "--set", f"PICTURES_DIR={pictures}"])
    assert "2_second.png" in line and "safety limit" in line
    line = _one_line_exit(capsys, generate.main, ["--dry-run", "--set", f"INITIAL_IMAGE={bomb}"])
    assert line.startswith("error: INITIAL_IMAGE") and "safety limit" in line


def test_photos_dir_skips_a_bomb_with_a_notice(tmp_path, capsys):
    from beauty_predictor.photos import load_photos

    for index in range(2):
        Image.fromarray(np.full((160, 160, 3), 40 * index, np.uint8)).save(tmp_path / f"photo{index}.png")
    _bomb(tmp_path / "huge.png")
    photos = load_photos(tmp_path)
    assert sorted(p.name for p in photos) == ["photo0", "photo1"]
    assert "huge.png (more pixels than the safety limit)" in capsys.readouterr().out


# -----------------------------------------------------------------------------
# Path-valued settings the filesystem cannot look up.


@pytest.mark.parametrize("value", ["a" * 5000, "x/" * 3000, "bad\0name"])
def test_an_unusable_path_setting_names_the_setting(value, lab_outputs, capsys):
    from sphere_mapping import train as sphere_train

    line = _one_line_exit(capsys, sphere_train.main, ["--dry-run", "--set", f"PICTURE={value}"])
    assert line.startswith("error: PICTURE=") and len(line) < 400  # the 5000 characters are cut


def test_a_too_long_prompts_file_is_one_line(lab_outputs, capsys):
    from vqgan_clip import generate

    line = _one_line_exit(capsys, generate.main, ["--dry-run", "--set", "PROMPTS_FILE=" + "p" * 5000])
    assert line.startswith("error: PROMPTS_FILE=") and "File name too long" in line


# -----------------------------------------------------------------------------
# Devices this machine does not have.


@pytest.mark.parametrize("device", ["meta", "mps", "xpu", "cuda:99", "tpu"])
def test_an_absent_device_is_refused_before_any_work(device):
    if device in ("mps", "xpu") and getattr(getattr(torch.backends, device, None) or getattr(torch, device, None),
                                            "is_available", lambda: False)():
        pytest.skip(f"this machine has {device}")
    with pytest.raises(LabError, match="DEVICE"):
        resolve_device(device, "torch")


def test_a_device_for_a_script_without_a_framework_must_be_the_cpu():
    assert resolve_device("auto", None) == resolve_device("cpu", None) == "cpu"
    with pytest.raises(LabError, match="CPU only"):
        resolve_device("cuda", None)


# -----------------------------------------------------------------------------
# Items of list and tuple constants.


def test_list_items_are_type_checked_against_the_default():
    """beauty_predictor's `--set 'HELD_OUT_PHOTOS=[1,2]'` ended in a TypeError deep in the split."""
    with pytest.raises(LabError, match=r"HELD_OUT_PHOTOS expects a list of str values, got 1 \(a int\)"):
        parse_value("HELD_OUT_PHOTOS", "[1, 2]", ["chelsea", "china"])
    assert parse_value("HELD_OUT_PHOTOS", "['a', 'b']", ["chelsea"]) == ["a", "b"]
    ratios = parse_value("RATIOS", "[1, 2.5]", [0.25, 0.5])
    assert ratios == [1.0, 2.5] and all(isinstance(r, float) for r in ratios)
    with pytest.raises(LabError, match="tuple of int"):
        parse_value("HIDDEN_SIZES", "(256, 'wide')", (256, 128))
    with pytest.raises(LabError, match="list of float"):
        parse_value("RATIOS", "[True]", [0.5])


# -----------------------------------------------------------------------------
# Text files that are not text.


def test_a_binary_prompts_file_is_one_line(tmp_path, lab_outputs, capsys):
    from vqgan_clip import generate

    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (32, 32), "red").save(jpeg)
    with pytest.raises(LabError, match="is not a UTF-8 text file"):
        read_text_file(jpeg, "PROMPTS_FILE")
    line = _one_line_exit(capsys, generate.main, ["--dry-run", "--set", f"PROMPTS_FILE={jpeg}"])
    assert line.startswith("error: PROMPTS_FILE") and "photo.jpg" in line and "UTF-8" in line


def test_an_empty_prompt_is_refused_before_the_models_load(lab_outputs, capsys, monkeypatch):
    from vqgan_clip import generate

    def no_models(*args, **kwargs):
        raise AssertionError("the models were loaded before the prompt was checked")

    monkeypatch.setattr(generate, "load_models", no_models)
    line = _one_line_exit(capsys, generate.main, ["--dry-run", "--set", "PROMPTS="])
    assert "PROMPTS and TARGET_IMAGES are both empty" in line


# -----------------------------------------------------------------------------
# A full disk or a file-size limit while writing.


def test_a_file_size_limit_while_saving_a_checkpoint_says_so_and_keeps_the_old_one(tmp_path):
    """`ulimit -f` sends SIGXFSZ, which kills a process that does not ignore it."""
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(10)})
    script = textwrap.dedent(f"""
        import torch
        from lab import exit_on_lab_error
        from lab.checkpoint import save_checkpoint

        @exit_on_lab_error
        def main():
            save_checkpoint({str(path)!r}, {{"step": 2, "weights": torch.zeros(200_000)}})

        main()
    """)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          preexec_fn=limit_file_size, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "file too large" in done.stderr and str(path) in done.stderr and "nothing was lost" in done.stderr
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left behind


def test_no_space_left_during_an_atomic_write_is_a_lab_error(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_text("old")

    def full_disk(tmp):
        Path(tmp).write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(LabError, match=r"no space left on the device while writing .*run\.json; nothing was lost"):
        atomic_write(target, full_disk)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]

    # torch.save hides the errno ("file write failed"): the free space left tells what happened.
    def torch_like(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=3, f_frsize=4096))
    with pytest.raises(LabError, match="no space left"):
        atomic_write(target, torch_like)


def test_a_full_disk_anywhere_in_a_script_is_one_line(capsys):
    @exit_on_lab_error
    def main():
        raise OSError(errno.ENOSPC, "No space left on device", "outputs/x/loss.png")

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "no space left on the device while writing outputs/x/loss.png" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# SIGTERM: handled like Ctrl+C, exit 143.


@pytest.fixture
def unhandled_sigterm_fails():
    """Without the code under test handling it, SIGTERM would end the whole test session."""

    def unhandled(signum, frame):
        raise AssertionError("SIGTERM reached the process's own handler: the script did not handle it")

    previous = signal.signal(signal.SIGTERM, unhandled)
    yield unhandled
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_inside_a_training_loop_saves_and_exits_143(capsys, unhandled_sigterm_fails):
    saved = []

    @exit_on_lab_error
    def main():
        with InterruptGuard() as guard:
            for step in range(1000):
                if step == 3:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.05)  # the handler runs between bytecodes of the main thread
                if guard.requested:
                    saved.append(step)
                    break
        return "reported"

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 143 and saved == [3]
    assert "SIGTERM: saving a checkpoint" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is unhandled_sigterm_fails  # put back as it was


def test_sigterm_outside_a_loop_exits_143_without_traceback(capsys, unhandled_sigterm_fails):
    @exit_on_lab_error
    def main():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the run")

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err


SPHERE_ARGS = ["--quick", "--set", "CHECKPOINT_EVERY=10000", "--set", "GRID_SIDE=40", "--set", "ANIMATION_FRAMES=8",
               "--set", "PICTURE_SIZE=20", "--set", "ANIMATION_SIDE=10"]


@pytest.mark.slow
def test_sigterm_mid_training_saves_the_step_reached_and_the_rerun_resumes_exactly(lab_outputs):
    """A training with no periodic checkpoint due (CHECKPOINT_EVERY = STEPS) is stopped by SIGTERM:
    it saves where it was, exits 143, and the rerun continues from that step to the end an
    uninterrupted run reaches."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "sphere_mapping.train", *SPHERE_ARGS], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(iter(lambda: process.stderr.read(64), "")), daemon=True)
    reader.start()
    started = time.time()
    while time.time() - started < 300 and not re.search(r"[1-9]\d*/10000", "".join(stderr)):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout = process.stdout.read()
    process.wait(timeout=300)
    reader.join(timeout=10)
    shown = max(int(n) for n in re.findall(r"(\d+)/10000", "".join(stderr)))
    assert process.returncode == 143, "".join(stderr)[-2000:]
    assert "SIGTERM: saving a checkpoint" in stdout
    checkpoint = lab_outputs / "sphere_mapping" / "checkpoints" / "quick" / "article.pt"
    stopped_at = load_checkpoint(checkpoint)["step"]
    assert shown <= stopped_at < 10_000  # no periodic checkpoint was due: this one is the signal's

    resumed = run_module("sphere_mapping.train", *SPHERE_ARGS, env_root=lab_outputs)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {stopped_at} of 10000" in resumed.stdout
    whole = run_module("sphere_mapping.train", *SPHERE_ARGS, "--set", "RUN_NAME=whole", env_root=lab_outputs)
    assert whole.returncode == 0, whole.stderr[-2000:]
    finished, reference = load_checkpoint(checkpoint), load_checkpoint(checkpoint.parent.with_name("quick-whole")
                                                                         / "article.pt")
    assert finished["step"] == reference["step"] == 10_000
    assert torch.equal(finished["trainer"]["theta"], reference["trainer"]["theta"])
    assert torch.equal(finished["losses"], reference["losses"])


# -----------------------------------------------------------------------------
# Locks: the run's folder before any work; the shared judge under its own lock.

HOLD_LOCK = """
import sys, time
from lab.checkpoint import {function}
{call}
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(function: str, call: str, folder: Path, seconds: float) -> subprocess.Popen:
    code = HOLD_LOCK.format(function=function, call=call)
    process = subprocess.Popen([sys.executable, "-c", code, str(folder), str(seconds)], cwd=REPO_ROOT,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_stops_within_seconds_before_data_and_judge(lab_outputs):
    """gan_basics.gan loads its data and trains (or reads) the shared judge before its first
    checkpoint: the lock must stop a second run before all of that. Its time is counted in CPU
    seconds, which a loaded machine does not stretch (importing torch alone takes 4-5 of them)."""
    holder = _holder("lock_folder", "lock_folder(sys.argv[1])", lab_outputs / "gan_basics" / "checkpoints" / "dry_run",
                     300)
    try:
        started = time.time()
        second = subprocess.Popen([sys.executable, "-m", "gan_basics.gan", "--dry-run"], cwd=REPO_ROOT,
                                  env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "LAB_OUTPUT_ROOT": str(lab_outputs)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = second.stderr.read()
        _, status, usage = os.wait4(second.pid, 0)
        elapsed = time.time() - started
    finally:
        holder.kill()
        holder.wait()
    assert os.waitstatus_to_exitcode(status) == 2, stderr[-2000:]
    assert f"another run (pid {holder.pid}" in stderr
    assert not (lab_outputs / "gan_basics" / "checkpoints" / "judge").exists()  # the judge was not touched
    cpu = usage.ru_utime + usage.ru_stime
    print(f"the second run stopped after {cpu:.1f} CPU seconds ({elapsed:.1f} s on the clock), torch's import included")
    assert cpu < 15


def test_the_shared_cache_lock_makes_a_second_builder_wait(tmp_path, capsys):
    holder = _holder("cache_lock", "held = cache_lock(sys.argv[1], 'the judge'); held.__enter__()", tmp_path, 2.0)
    started = time.time()
    with cache_lock(tmp_path, "the judge"):
        waited = time.time() - started
    holder.wait()
    assert waited > 0.5
    assert "waiting for another run that is building the judge" in capsys.readouterr().out


def test_an_unreadable_judge_cache_falls_back_to_its_previous_copy_then_is_rebuilt(lab_outputs, capsys):
    from gan_basics.judge import DigitClassifier, JudgeSettings, cached_classifier, judge_path

    settings = JudgeSettings()
    path = judge_path("digits")
    trained = DigitClassifier(settings.feature_dim)
    for _ in range(2):  # the second save keeps the first as judge's .prev copy
        save_checkpoint(path, {"model": trained.state_dict(), "settings": settings.trained_with()})
    path.write_bytes(path.read_bytes()[:100])  # truncated
    restored = cached_classifier(path, settings)
    assert restored is not None
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), trained.state_dict().values(), strict=True))
    assert "using the previous copy" in capsys.readouterr().out
    previous = path.with_name(f"{path.stem}.prev{path.suffix}")
    previous.write_bytes(b"")
    assert cached_classifier(path, settings) is None  # build_judge trains it again
    assert "rebuilding the judge" in capsys.readouterr().out


def test_a_truncated_results_cache_of_sphere_experiments_is_measured_again(tmp_path, capsys):
    from sphere_mapping.experiments import read_cache

    cache = tmp_path / "experiments_cache.json"
    cache.write_text('{"article-0": {"coverage": 0.7')
    assert read_cache(cache) == {}
    assert "trained again" in capsys.readouterr().out


def test_a_truncated_timings_file_of_run_sh_is_written_anew(tmp_path, capsys):
    from lab.pipeline import read_timings

    timings = tmp_path / "timings_quick.json"
    timings.write_text('{"pen_cap_vae": 44.')
    assert read_timings(timings) == {}
    assert "written anew" in capsys.readouterr().out
