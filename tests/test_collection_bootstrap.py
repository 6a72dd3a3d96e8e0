"""lab/bootstrap.sh: clones share the heavy environment, each has its own editable install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

STAMP = REPO_ROOT / ".venv" / ".genlab-shared"


def _copy_clone(target: Path) -> Path:
    """The tracked files of this checkout (what a fresh clone holds), without git."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _bootstrap(clone: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # The interpreter this suite runs on (a fresh clone would take the first 3.11-3.13 it finds).
    env.update(GENLAB_VENV_CACHE=str(cache), GENLAB_PYTHON=sys._base_executable)
    return subprocess.run(["bash", "-c", 'source lab/bootstrap.sh && echo "PYTHON=$PYTHON"'], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)


def _lab_location(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import lab; print(lab.__file__)"], cwd="/", capture_output=True,
                          text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.strip()


@pytest.mark.skipif(not STAMP.is_file(), reason="the suite runs outside a .venv made by lab/bootstrap.sh")
def test_two_clones_share_the_environment_not_the_install(tmp_path):
    shared = Path(STAMP.read_text().splitlines()[0])
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    cache = tmp_path / "cache"
    cache.mkdir()
    # The cache as a first clone leaves it: the shared environment, keyed by Python and requirements.
    key = subprocess.run(["sha256sum", str(REPO_ROOT / "requirements.txt")], capture_output=True, text=True,
                         check=True).stdout[:16]
    (cache / f"venv-py{minor}-{key}").symlink_to(shared)

    clones = [_copy_clone(tmp_path / name) for name in ("a", "b")]
    for clone in clones:
        result = _bootstrap(clone, cache)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"PYTHON={clone}/.venv/bin/python" in result.stdout
        assert "Setting up the shared environment" not in result.stdout, "the shared environment was rebuilt"
    # Each clone's python imports its own code, from any folder; neither disturbed the other.
    for clone in clones:
        assert _lab_location(clone / ".venv" / "bin" / "python") == str(clone / "lab" / "__init__.py")
        assert (clone / ".venv" / "bin" / "ruff").exists() and (clone / ".venv" / "bin" / "pytest").exists()
    # `cd <folder> && python <script>.py` after activating: the article's way.
    result = subprocess.run(["bash", "-c", "source .venv/bin/activate && cd pen_cap_vae && "
                             "python -c 'import lab, pen_cap_vae.model; print(lab.__file__)'"],
                            cwd=clones[0], capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.stdout.strip() == str(clones[0] / "lab" / "__init__.py"), result.stderr[-2000:]
    # A second bootstrap of a set-up clone changes nothing (it is what every ./test.sh does).
    before = (clones[1] / ".venv" / "pyvenv.cfg").stat().st_mtime_ns
    assert _bootstrap(clones[1], cache).returncode == 0
    assert (clones[1] / ".venv" / "pyvenv.cfg").stat().st_mtime_ns == before


def test_bootstrap_refuses_a_python_out_of_range(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\nexec /nonexistent \"$@\"\n")
    fake.chmod(0o755)
    clone = _copy_clone(tmp_path / "c")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(GENLAB_PYTHON=str(fake), GENLAB_VENV_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(["bash", "-c", "source lab/bootstrap.sh"], cwd=clone, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "not Python 3.11, 3.12 or 3.13" in result.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
