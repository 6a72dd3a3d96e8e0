"""One executor for sets of independent runs ("cells"): in this process, or fanned out over Ray.

    cells = [Cell("article_8", "beauty_predictor.sweep_cell:train_cell", {"ratio": 8.0, ...},
                  resources={"num_cpus": 1})]
    outcomes = run_cells(cells, cluster=cluster_address(cfg.CLUSTER), desc="sweep cells")
    for outcome in outcomes: outcome.ok, outcome.result, outcome.error

A cell names its function by module path ("package.module:function") and passes plain arguments,
so any node of a cluster can import and call it. Locally (no cluster address) the cells run one
after another in this process, exactly as a plain loop would, or `workers` at a time in threads
(for cells whose work releases the GIL: compiled kernels, torch). With an address (the `RAY_ADDRESS`
environment variable, Ray's own convention, or a script's `--set CLUSTER=...`) each cell becomes a
Ray task asking for its `resources` (`num_gpus=1` for a GPU cell), so cells spread over the nodes.

A cell is a restartable unit: it keeps its checkpoints in its own folder under an outputs root
that every node sees, and resumes from them when it starts. A task lost with its worker (node
gone, preempted, SIGKILL) is retried by Ray up to `max_retries` times and so goes on from its last
checkpoint; a cell that raises fails at once (a bug does not get better on retry). Either way the
other cells go on, and the caller gets every cell's outcome: its result, or why it failed for good.

Progress is one tqdm line: cells done / running / failed (and retried), with tqdm's ETA.

`lab` imports no torch or TensorFlow, and Ray only when a cluster is used: it is an optional
dependency for local runs.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lab.checkpoint import lock_folder
from lab.errors import LabError
from lab.scalars import ScalarLog

# A lost task (its worker or node died) is retried this many times before it counts as failed.
MAX_RETRIES = 3
# "local" as a cluster address: start a private Ray instance on this machine (every core and GPU).
LOCAL_RAY = "local"


@dataclass(frozen=True)
class Cell:
    """One independent run: `function` ("module:name") called with `kwargs` on whichever node gets it."""

    name: str
    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1})


@dataclass
class CellOutcome:
    """What became of one cell: its result, or the error that made it fail for good."""

    name: str
    ok: bool
    result: Any = None
    error: str = ""
    seconds: float = 0.0


@dataclass
class CellRun:
    """What lab.checkpoint.resume and a training loop ask of a run, inside one cell: its constants (SEED
    among them), its own folder for checkpoints (locked: one process per cell) and outputs, its curves'
    folder, its device and profile."""

    constants: dict[str, Any]
    folder: Path
    curves_folder: Path | None = None
    fresh: bool = False
    device: str = "cpu"
    profile: str = "quick"
    _scalars: Any = field(default=None, repr=False)

    @property
    def seed(self) -> int:
        return int(self.constants["SEED"])

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.folder)

    @property
    def out_dir(self) -> Path:
        return Path(self.folder)

    def path(self, *parts: str) -> Path:
        """A file in the cell's folder; its parent folders are created."""
        target = self.out_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def checkpoint_path(self, name: str) -> Path:
        lock_folder(self.folder)
        return Path(self.folder) / name

    def log_scalars(self, step: int, **values: float) -> None:
        if self._scalars is None:
            self._scalars = ScalarLog(Path(self.curves_folder or self.folder))
        self._scalars.log(step, **values)

    def close(self) -> None:
        if self._scalars is not None:
            self._scalars.close()


def cluster_address(setting: str = "") -> str:
    """The Ray cluster to use: a script's CLUSTER setting, else $RAY_ADDRESS, else "" (run locally)."""
    return (setting or os.environ.get("RAY_ADDRESS", "")).strip()


def resolve_function(path: str):
    """"package.module:function" to the function; a bad path is a LabError naming it."""
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise LabError(f"cell function {path!r} must be written 'package.module:function'")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise LabError(f"cannot import the cell function {path!r}: {error}") from None


def call_cell(function: str, kwargs: dict[str, Any]) -> Any:
    """Run one cell in this process (on a Ray worker, this is the task's body)."""
    return resolve_function(function)(**kwargs)


def run_cells(cells: Iterable[Cell], *, cluster: str = "", max_retries: int = MAX_RETRIES,
              desc: str = "cells", workers: int = 1) -> list[CellOutcome]:
    """Run every cell and return their outcomes in the cells' order; never stops at a failed cell.

    `cluster` "" runs them here, one after another (`workers` > 1: that many at a time, in
    threads; the outcomes are the same, in the same order); an address ("ray://host:10001", "host:6379",
    "auto", or "local" for a private Ray on this machine) submits each as a Ray task."""
    cells = list(cells)
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise LabError(f"cell names must be unique (each names its checkpoint folder), got {names}")
    for cell in cells:
        resolve_function(cell.function)  # a typo fails here, before anything runs
    if not cells:
        return []
    if cluster:
        return _run_on_ray(cells, cluster, max_retries, desc)
    if workers > 1 and len(cells) > 1:
        return _run_in_threads(cells, desc, min(workers, len(cells)))
    return _run_here(cells, desc)


class _ProgressLine:
    """The one line a person watches: cells done / running / failed, tqdm's rate and ETA."""

    def __init__(self, total: int, desc: str) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="cell", position=0, dynamic_ncols=True)
        self.failed = 0
        self.retried = 0

    def show(self, running: int) -> None:
        postfix = {"done": self.bar.n - self.failed, "running": running, "failed": self.failed}
        if self.retried:
            postfix["retried"] = self.retried
        self.bar.set_postfix(postfix, refresh=True)

    def finished(self, outcome: CellOutcome, running: int) -> None:
        self.failed += not outcome.ok
        if not outcome.ok:
            tqdm.write(f"cell {outcome.name} failed: {outcome.error}")
        self.bar.update(1)
        self.show(running)

    def close(self) -> None:
        self.bar.close()


def _error_line(error: BaseException) -> str:
    """One line: a LabError's message as it is, anything else with its type and where it was raised."""
    if isinstance(error, LabError):
        return str(error)
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _call_here(cell: Cell) -> CellOutcome:
    started = time.time()
    try:
        outcome = CellOutcome(cell.name, True, call_cell(cell.function, cell.kwargs))
    except Exception as error:
        outcome = CellOutcome(cell.name, False, error=_error_line(error))
    outcome.seconds = time.time() - started
    return outcome


def _run_here(cells: list[Cell], desc: str) -> list[CellOutcome]:
    """Each cell in this process, in order (Ctrl+C stops the whole set)."""
    progress = _ProgressLine(len(cells), desc)
    outcomes = []
    try:
        for cell in cells:
            progress.show(running=1)
            outcomes.append(_call_here(cell))
            progress.finished(outcomes[-1], running=0)
    finally:
        progress.close()
    return outcomes


def _run_in_threads(cells: list[Cell], desc: str, workers: int) -> list[CellOutcome]:
    """`workers` cells at a time in this process's threads; outcomes in the cells' order."""
    progress = _ProgressLine(len(cells), desc)
    outcomes: list[CellOutcome | None] = [None] * len(cells)
    try:
        with ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(_call_here, cell): index for index, cell in enumerate(cells)}
            progress.show(running=workers)
            for done, future in enumerate(as_completed(futures), start=1):
                outcomes[futures[future]] = future.result()
                progress.finished(future.result(), running=min(workers, len(cells) - done))
    finally:
        progress.close()
    return [outcome for outcome in outcomes if outcome is not None]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise LabError("a cluster address is set (CLUSTER or RAY_ADDRESS) but Ray is not installed; "
                       "install it with `pip install -r requirements.txt`, or unset RAY_ADDRESS to run "
                       "locally") from None
    return ray


def _check_reachable(cluster: str) -> None:
    """A "host:port" address that nothing answers is an error at once (Ray itself retries for minutes)."""
    host, _, port = cluster.rpartition(":")
    if "://" in cluster or not host or not port.isdigit():
        return  # "auto", "local", "ray://...": Ray resolves those
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as error:
        raise LabError(f"cannot reach the Ray cluster at {cluster!r} ({error.strerror or error}); start it with "
                       "`ray start --head` (README, 'Running on a cluster'), or unset RAY_ADDRESS / CLUSTER to "
                       "run locally") from None


def _connect(ray, cluster: str) -> bool:
    """Connect to the cluster unless this process already is; True when this call connected."""
    if ray.is_initialized():
        return False
    _check_reachable(cluster)
    try:
        ray.init(address=None if cluster == LOCAL_RAY else cluster, logging_level="WARNING",
                 log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise LabError(f"cannot reach the Ray cluster at {cluster!r} ({error}); start it with `ray start "
                       "--head` (README, 'Running on a cluster'), or unset RAY_ADDRESS / CLUSTER to "
                       "run locally") from None
    return True


def _ray_task(function: str, kwargs: dict[str, Any], tracker) -> tuple[bool, Any, str]:
    """The body of every Ray task: say it started (for the progress line), run the cell, report.

    A cell's own exception comes back as a result (ok False), so the task is not retried for it;
    only a lost worker makes Ray run the task again."""
    if tracker is not None:
        tracker.started.remote()
    try:
        return True, call_cell(function, kwargs), ""
    except Exception as error:
        return False, None, _error_line(error)


def _run_on_ray(cells: list[Cell], cluster: str, max_retries: int, desc: str) -> list[CellOutcome]:
    ray = _import_ray()
    connected_here = _connect(ray, cluster)
    try:
        return _submit_and_wait(ray, cells, max_retries, desc)
    finally:
        if connected_here:
            ray.shutdown()


def _submit_and_wait(ray, cells: list[Cell], max_retries: int, desc: str) -> list[CellOutcome]:

    @ray.remote(num_cpus=0)
    class StartCounter:
        """Counts task starts: starts beyond the number of cells are retries of lost tasks."""

        def __init__(self) -> None:
            self.count = 0

        def started(self) -> None:
            self.count += 1

        def value(self) -> int:
            return self.count

    tracker = StartCounter.remote()
    task = ray.remote(_ray_task)
    started = time.time()
    pending = {}
    for index, cell in enumerate(cells):
        options = {"max_retries": max_retries, "retry_exceptions": False, "name": cell.name, **cell.resources}
        pending[task.options(**options).remote(cell.function, cell.kwargs, tracker)] = index
    outcomes: list[CellOutcome | None] = [None] * len(cells)
    progress = _ProgressLine(len(cells), desc)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
            starts = ray.get(tracker.value.remote())
            finished = len(cells) - len(pending) + len(ready)
            progress.retried = max(0, starts - len(cells))
            for ref in ready:
                index = pending.pop(ref)
                try:
                    ok, result, error = ray.get(ref)
                except Exception as lost:  # lost more than max_retries times, or its result unreadable
                    ok, result, error = False, None, f"{type(lost).__name__}: {(str(lost).strip() or '?').splitlines()[0]}"
                outcome = CellOutcome(cells[index].name, ok, result, error, time.time() - started)
                outcomes[index] = outcome
                progress.finished(outcome, running=max(0, min(starts, len(cells)) - finished))
            if not ready:
                progress.show(running=max(0, min(starts, len(cells)) - finished))
    finally:
        progress.close()
    return [outcome for outcome in outcomes if outcome is not None]


def failure_summary(outcomes: list[CellOutcome]) -> str:
    """Which cells failed for good and why, one per line ("" when none did)."""
    failed = [o for o in outcomes if not o.ok]
    return "\n".join(f"  {o.name}: {o.error}" for o in failed)
