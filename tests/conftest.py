"""Shared fixtures: every test writes its outputs into a temporary folder, never into outputs/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The suite runs torch and TensorFlow experiments in one process. torch's compiler stack
# (torch._dynamo, imported lazily by the first optimizer) loads triton, and triton segfaults when
# TensorFlow's native libraries were loaded before it. Loading torch's side first avoids that;
# test_torch_and_tensorflow_import_together pins the supported order.
import torch
import torch._dynamo  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lab_outputs(tmp_path, monkeypatch):
    """Point LAB_OUTPUT_ROOT at a temporary folder for this test (and its subprocesses)."""
    root = tmp_path / "outputs"
    root.mkdir()
    monkeypatch.setenv("LAB_OUTPUT_ROOT", str(root))
    return root


def run_module(module: str, *args: str, env_root: Path | None = None, timeout: int = 600):
    """Run `python -m module args` from the repo root, as a user would; returns the CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    if env_root is not None:
        env["LAB_OUTPUT_ROOT"] = str(env_root)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
