"""The articles' own workflow: `cd <folder> && python <script>.py` works like `python -m`.

Run from inside its folder, a script must find the collection (the editable install lab/bootstrap.sh
makes in .venv, not PYTHONPATH), name itself by its file, write to the same outputs folder as
`python -m <folder>.<script>` from the root, and show the same --help. Training scripts also
leave curves a person can watch: scalars.csv and TensorBoard event files beside run.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# (folder, script, does it train?). The default suite runs one script per experiment, the
# quicker ones; the slow marks the experiments' main scripts (a minute or more each on 2 cores).
DIRECT_RUNS = [
    pytest.param("pen_cap_vae", "train", True, id="pen_cap_vae.train"),
    pytest.param("beauty_predictor", "export_photos", False, id="beauty_predictor.export_photos"),
    pytest.param("sphere_mapping", "train", True, id="sphere_mapping.train"),
    pytest.param("vqgan_clip", "train_vqgan", True, id="vqgan_clip.train_vqgan"),
    pytest.param("gan_basics", "autoencoder", True, id="gan_basics.autoencoder"),
    pytest.param("beauty_predictor", "train_predictor", True, id="beauty_predictor.train_predictor",
                 marks=pytest.mark.slow),
    pytest.param("vqgan_clip", "generate", True, id="vqgan_clip.generate", marks=pytest.mark.slow),
    pytest.param("gan_basics", "gan", True, id="gan_basics.gan", marks=pytest.mark.slow),
]


def _env(output_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the install must do it
    env["LAB_OUTPUT_ROOT"] = str(output_root)
    return env


def run_direct(folder: str, script: str, output_root: Path, *args: str, timeout: int = 600):
    """`cd <folder> && python <script>.py args`, as the article says."""
    return subprocess.run([sys.executable, f"{script}.py", *args], cwd=REPO_ROOT / folder, env=_env(output_root),
                          capture_output=True, text=True, timeout=timeout)


def run_module(folder: str, script: str, output_root: Path, *args: str, timeout: int = 600):
    """`python -m <folder>.<script> args` from the repository root."""
    return subprocess.run([sys.executable, "-m", f"{folder}.{script}", *args], cwd=REPO_ROOT,
                          env=_env(output_root), capture_output=True, text=True, timeout=timeout)


def produced_files(root: Path) -> set[str]:
    """Relative paths under root; TensorBoard's event file names (time, host, pid) made comparable."""
    return {re.sub(r"events\.out\.tfevents\..*", "events.out.tfevents.*", str(p.relative_to(root)))
            for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def test_the_collection_imports_from_any_folder(tmp_path):
    """The interpreter the suite runs on has the collection installed, not only on a search path."""
    code = "import lab, pen_cap_vae, gan_basics; print(lab.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, f"the collection is not installed in {sys.executable}: run ./test.sh once " \
                                   f"(lab/bootstrap.sh installs it editable)\n{result.stderr[-1000:]}"
    assert Path(result.stdout.strip()) == REPO_ROOT / "lab" / "__init__.py", "another clone is installed"


@pytest.mark.parametrize(("folder", "script", "trains"), DIRECT_RUNS)
def test_script_runs_from_inside_its_folder(folder, script, trains, tmp_path):
    root = tmp_path / "outputs"
    result = run_direct(folder, script, root, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    # Where python -m puts it: outputs/<folder>/<the script's (or its settings') folder>/run.json.
    records = [p for p in root.glob(f"{folder}/*/run.json") if p.parent.name != "checkpoints"]
    assert len(records) == 1, f"expected one run.json in {root / folder}/*/; files: {sorted(produced_files(root))[:20]}"
    record_path = records[0]
    record = json.loads(record_path.read_text())
    assert record["script"] == script and record["experiment"] == folder, "the script must name itself by its file"
    assert record["profile"] == "dry_run"
    assert not (REPO_ROOT / folder / "outputs").exists(), "a direct run wrote an outputs folder inside the package"
    if trains:
        csv_path = record_path.parent / "scalars.csv"
        assert csv_path.is_file(), f"{folder}.{script} trains but logs no curves (run.log_scalars)"
        assert len(csv_path.read_text().splitlines()) >= 2, "scalars.csv has no rows"
        assert list(record_path.parent.glob("events.out.tfevents.*")), "no TensorBoard event file"


def test_direct_and_module_runs_write_the_same_files(tmp_path):
    """Both ways of running one script produce the same files in the same places."""
    for folder, script in (("pen_cap_vae", "draw_pictures"), ("beauty_predictor", "export_photos")):
        direct, module = tmp_path / f"{script}-direct", tmp_path / f"{script}-module"
        assert run_direct(folder, script, direct, "--dry-run").returncode == 0
        assert run_module(folder, script, module, "--dry-run").returncode == 0
        assert produced_files(direct) == produced_files(module) != set()


def test_help_is_the_same_both_ways(tmp_path):
    direct = run_direct("pen_cap_vae", "train", tmp_path, "--help", timeout=300)
    module = run_module("pen_cap_vae", "train", tmp_path, "--help", timeout=300)
    assert direct.returncode == module.returncode == 0, direct.stderr[-2000:]
    assert direct.stdout == module.stdout
    assert "STEPS" in direct.stdout and "__main__" not in direct.stdout
