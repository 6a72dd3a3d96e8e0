"""lab.executor: independent cells here, and on a real local Ray cluster of two nodes that loses a worker.

The cluster is two `ray start` processes on 127.0.0.1 (a head and a second node, one CPU each), so
cells spread over two nodes as they would over machines. The kill test SIGKILLs the worker process
running one cell after its first checkpoint: Ray retries the task, the cell resumes from that
checkpoint (not step 0), every cell finishes, and the results equal a run in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import LabError
from lab.executor import Cell, cluster_address, failure_summary, run_cells
from tests import cluster_cells
from tests.conftest import REPO_ROOT

WALK = "tests.cluster_cells:random_walk_cell"


def walk_cells(root: Path, count: int, steps: int = 60, step_seconds: float = 0.0) -> list[Cell]:
    return [Cell(f"walk{i}", WALK, {"folder": str(root / f"walk{i}"), "steps": steps, "checkpoint_every": 5,
                                    "seed": i, "step_seconds": step_seconds}) for i in range(count)]


def test_cells_run_here_in_order_and_a_failed_cell_does_not_stop_the_others(tmp_path, capsys):
    cells = walk_cells(tmp_path, 3, steps=12)
    cells.insert(1, Cell("broken", "tests.cluster_cells:failing_cell", {"message": "bad input file x.png"}))
    outcomes = run_cells(cells)
    assert [o.name for o in outcomes] == ["walk0", "broken", "walk1", "walk2"]
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert "ValueError: bad input file x.png" in outcomes[1].error
    assert failure_summary(outcomes).strip().startswith("broken: ValueError: bad input file x.png")
    # Here means in this process, with the same numbers as calling the cell directly.
    assert {o.result["pid"] for o in outcomes if o.ok} == {os.getpid()}
    direct = cluster_cells.random_walk_cell(str(tmp_path / "direct"), 12, 5, seed=2)
    assert outcomes[3].result["value"] == direct["value"]
    # A second run resumes every cell from its last checkpoint (step 10 of 12) and ends the same.
    again = run_cells(walk_cells(tmp_path, 3, steps=12))
    assert cluster_cells.starts(tmp_path / "walk0") == [0, 10]
    assert [o.result["value"] for o in again] == [o.result["value"] for o in outcomes if o.ok]
    assert "failed=1" in capsys.readouterr().err  # the progress line counts the failed cell


MEETING = threading.Barrier(2, timeout=20)


def meeting_cell(name: str) -> str:
    """Returns only when a second cell meets it: two of them finish only if they run at once."""
    MEETING.wait()
    return name


def test_cells_run_here_in_threads_equal_cells_run_in_turn(tmp_path, capsys):
    cells = walk_cells(tmp_path / "threads", 3, steps=12)
    cells.insert(1, Cell("broken", "tests.cluster_cells:failing_cell", {"message": "bad input file x.png"}))
    in_threads = run_cells(cells, workers=2)
    in_turn = run_cells(walk_cells(tmp_path / "turn", 3, steps=12))
    assert [o.name for o in in_threads] == ["walk0", "broken", "walk1", "walk2"]
    assert [o.ok for o in in_threads] == [True, False, True, True]
    assert "ValueError: bad input file x.png" in in_threads[1].error
    assert [o.result["value"] for o in in_threads if o.ok] == [o.result["value"] for o in in_turn]
    assert "failed=1" in capsys.readouterr().err
    meeting = [Cell(f"meet{i}", "tests.test_lab_executor:meeting_cell", {"name": f"meet{i}"}) for i in range(2)]
    assert [o.result for o in run_cells(meeting, workers=2)] == ["meet0", "meet1"]  # both at once


def test_a_bad_cell_function_or_repeated_name_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(LabError, match="cannot import the cell function 'tests.cluster_cells:nothing'"):
        run_cells(walk_cells(tmp_path, 1) + [Cell("x", "tests.cluster_cells:nothing")])
    with pytest.raises(LabError, match="must be written 'package.module:function'"):
        run_cells([Cell("x", "tests.cluster_cells")])
    with pytest.raises(LabError, match="cell names must be unique"):
        run_cells(walk_cells(tmp_path, 1) * 2)
    assert not (tmp_path / "walk0").exists()


def test_the_cluster_address_is_the_setting_else_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address("") == ""
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert cluster_address("") == "10.0.0.5:6379"
    assert cluster_address("auto") == "auto"


# -----------------------------------------------------------------------------
# A real Ray cluster: two nodes on 127.0.0.1.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_cli(*args: str, env: dict, log: Path, timeout: int = 300) -> None:
    """Run `ray ARGS`; its output goes to a file (the daemons it starts keep a pipe open for ever)."""
    command = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", *args]
    with open(log, "a") as output:
        code = subprocess.call(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
                               timeout=timeout)
    assert code == 0, f"ray {args[0]} failed:\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and a second node (one CPU each) on 127.0.0.1; yields the address; `ray stop` after."""
    # A loaded machine starts Ray's helper processes slowly: give the node longer to register, and fix
    # the agents' ports, so that the raylet need not wait (15 s at most) for them to write port files.
    # Token auth off on every side: a private `ray.init()` (CLUSTER=local) leaves ~/.ray/auth_token behind,
    # and a process that finds it turns token auth on by itself, so the nodes and this driver would disagree.
    saved_auth_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_raylet_start_wait_time_s": "120"}
    env.pop("RAY_ADDRESS", None)
    port = free_port()

    def node() -> list[str]:
        return ["--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--object-store-memory=100000000",
                "--disable-usage-stats", f"--dashboard-agent-grpc-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}"]

    log = tmp_path_factory.mktemp("ray") / "ray_start.log"
    try:
        for attempt in range(3):  # on a loaded machine a node's helper processes may start too late
            try:
                ray_cli("start", "--head", f"--port={port}", "--include-dashboard=false", *node(), env=env, log=log)
                ray_cli("start", f"--address=127.0.0.1:{port}", *node(), env=env, log=log)
                break
            except (AssertionError, subprocess.TimeoutExpired):
                ray_cli("stop", "--force", env=env, log=log)
                if attempt == 2:
                    raise
        yield f"127.0.0.1:{port}"
    finally:
        ray_cli("stop", "--force", env=env, log=log)
        if saved_auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth_mode


def kill_when_checkpointed(folder: Path, killed: dict, timeout: float = 240.0) -> None:
    """SIGKILL the process running the cell in `folder` once its first checkpoint is written."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (folder / cluster_cells.STATE_FILE).is_file() and (folder / ".lock").is_file():
            holder = (folder / ".lock").read_text().split(",")[0]  # "pid N, started T"
            if holder.startswith("pid "):
                killed["pid"] = int(holder.split()[1])
                killed["step"] = cluster_cells.json.loads((folder / cluster_cells.STATE_FILE).read_text())["step"]
                os.kill(killed["pid"], signal.SIGKILL)
                return
        time.sleep(0.02)


def test_a_killed_worker_s_cell_resumes_from_its_checkpoint_on_the_cluster(ray_cluster, tmp_path, capsys):
    cells = walk_cells(tmp_path / "cluster", 4, steps=60, step_seconds=0.05)
    target = Path(cells[1].kwargs["folder"])
    killed: dict = {}
    killer = threading.Thread(target=kill_when_checkpointed, args=(target, killed), daemon=True)
    killer.start()
    outcomes = run_cells(cells, cluster=ray_cluster, desc="walks")
    killer.join(timeout=5)
    assert killed, "the cell never reached its first checkpoint"
    assert all(o.ok for o in outcomes), failure_summary(outcomes)
    # The killed cell ran twice: first from step 0, then, retried by Ray, from its checkpoint.
    runs = cluster_cells.starts(target)
    assert runs[0] == 0 and len(runs) == 2 and runs[1] >= 5, runs
    assert outcomes[1].result["pid"] != killed["pid"]
    # Cells ran on the workers, never in this process; spread over both nodes' CPUs at once.
    assert os.getpid() not in {o.result["pid"] for o in outcomes}
    assert "retried=1" in capsys.readouterr().err
    # The same numbers as the same cells run here, uninterrupted.
    here = run_cells(walk_cells(tmp_path / "here", 4, steps=60))
    assert [o.result["value"] for o in outcomes] == [o.result["value"] for o in here]


def test_a_cell_that_raises_on_the_cluster_fails_once_and_is_reported(ray_cluster, tmp_path):
    cells = [Cell("broken", "tests.cluster_cells:failing_cell", {"message": "no photos in data/x"}),
             *walk_cells(tmp_path, 1, steps=10)]
    outcomes = run_cells(cells, cluster=ray_cluster)
    assert [o.ok for o in outcomes] == [False, True]
    assert "ValueError: no photos in data/x" in outcomes[0].error


def test_an_unreachable_cluster_is_one_clear_error(tmp_path):
    with pytest.raises(LabError, match="cannot reach the Ray cluster at '127.0.0.1:9'"):
        run_cells(walk_cells(tmp_path, 1), cluster="127.0.0.1:9")


@pytest.mark.slow
def test_the_sweep_on_the_cluster_survives_a_killed_worker_and_equals_the_local_sweep(ray_cluster, lab_outputs,
                                                                                     tmp_path):
    """python -m beauty_predictor.sweep, unchanged, locally and with CLUSTER set; one cell's worker killed."""
    pytest.importorskip("tensorflow")
    from beauty_predictor import sweep, train_predictor
    from beauty_predictor.sweep_cell import CHECKPOINT_FILE
    from tests.test_beauty_predictor import small_photo_folder

    photos = small_photo_folder(tmp_path)
    common = ["--dry-run", "--set", f"PHOTOS_DIR={photos}", "--set", "RATIOS=[1.0, 8.0]", "--set", "STEPS=40",
              "--set", "CHECKPOINT_EVERY=4"]
    train_predictor.main(["--dry-run", "--set", f"PHOTOS_DIR={photos}"])
    sweep.main(common)
    local_points = json.loads((lab_outputs / "beauty_predictor/sweep/run.json").read_text())["metrics"]["points"]

    target = lab_outputs / "beauty_predictor/checkpoints/dry_run/sweep_cells/article_k2_over_k1_8"
    shutil.rmtree(target.parent)  # the local run's cells (locked by this process): the cluster trains anew
    killed: dict = {}

    def kill_after_first_checkpoint():
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            if (target / CHECKPOINT_FILE).is_file() and (target / ".lock").is_file():
                holder = (target / ".lock").read_text()
                pid = int(holder.split(",")[0].split()[1]) if holder.startswith("pid ") else os.getpid()
                if pid != os.getpid():
                    killed["pid"] = pid
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    sweep.main([*common, "--fresh", "--set", f"CLUSTER={ray_cluster}"])  # every cell trained again
    killer.join(timeout=5)
    assert killed, "the cell never reached its first checkpoint"
    record = json.loads((lab_outputs / "beauty_predictor/sweep/run.json").read_text())
    cluster_points = record["metrics"]["points"]
    figures = ("mae_x_y", "mae_x_zx", "mae_y_zy", "predictability_gain", "hf_energy_kept")
    for here, there in zip(local_points, cluster_points, strict=True):
        assert (here["variant"], here["k2_over_k1"]) == (there["variant"], there["k2_over_k1"])
        for name in figures:
            assert there[name] == pytest.approx(here[name], rel=1e-5), (here["variant"], here["k2_over_k1"], name)
    # The killed cell resumed from its checkpoint (a multiple of 4), not from step 0; the others ran whole.
    cells = record["metrics"]["cells"]
    assert cells["article_k2_over_k1_8"]["resumed_from_step"] >= 4, cells
    assert [c["resumed_from_step"] for name, c in cells.items() if name != "article_k2_over_k1_8"] == [0, 0, 0]
