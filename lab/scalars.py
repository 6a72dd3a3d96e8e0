"""Training curves: `run.log_scalars(step, loss=0.31)` writes `scalars.csv` and TensorBoard event files
(TensorBoard's own writer, no TensorFlow or torch) into the run's folder: `tensorboard --logdir outputs`.

A resumed run's first call drops the CSV rows from its step on and writes a "session start" marker
there, which makes TensorBoard discard the older events (as SummaryWriter(purge_step=...) does).
"""

from __future__ import annotations

import csv
import math
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any


def _tensorboard_without_tensorflow() -> None:
    """Without `tensorboard.compat.notf` TensorBoard imports TensorFlow: slow, and a crash in a torch process."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class ScalarLog:
    """Scalars of one run, appended to `<folder>/scalars.csv` and `<folder>/*.tfevents.*`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.csv_path = self.folder / "scalars.csv"
        self._writer: Any = None
        self._csv: Any = None
        self._csv_writer: Any = None
        self._started = False
        self._lock = threading.Lock()  # one log may be written from several threads (trainings side by side)

    def _start(self, step: int) -> None:
        _tensorboard_without_tensorflow()
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self.folder.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))[1:]
            kept = [row for row in rows if row and row[0].lstrip("-").isdigit() and int(row[0]) < step]
        if not kept:  # a run from its start (step 0 or epoch 1): older event files describe another run
            for old in self.folder.glob("events.out.tfevents.*"):
                old.unlink(missing_ok=True)
        self._csv = open(self.csv_path, "w", newline="", encoding="utf-8")
        self._csv_writer = csv.writer(self._csv)
        self._csv_writer.writerow(["step", "name", "value", "wall_time"])
        self._csv_writer.writerows(kept)
        self._writer = EventFileWriter(str(self.folder))
        self._writer.add_event(event_pb2.Event(step=step, wall_time=time.time(),
                                               session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
        self._started = True

    def log(self, step: int, **values: float) -> None:
        """Record each named value at `step` (tensors and numpy scalars are turned into floats)."""
        from tensorboard.compat.proto import event_pb2, summary_pb2
        step = int(step)
        numbers = {name: float(value.item() if hasattr(value, "item") else value) for name, value in values.items()}
        with self._lock:
            if not self._started:
                self._start(step)
            now = time.time()
            summary = summary_pb2.Summary()
            for name, number in numbers.items():
                self._csv_writer.writerow([step, name, repr(number), f"{now:.3f}"])
                if math.isfinite(number):
                    summary.value.add(tag=name, simple_value=number)
            self._writer.add_event(event_pb2.Event(step=step, wall_time=now, summary=summary))
            self._csv.flush()

    def flush(self) -> None:
        if self._started:
            self._csv.flush()
            self._writer.flush()

    def close(self) -> None:
        if self._started:
            self._csv.close()
            self._writer.close()
            self._started = False


def read_scalars(csv_path: Path | str) -> dict[str, list[tuple[int, float]]]:
    """The CSV back as {name: [(step, value), ...]} (for plots and tests)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            curves.setdefault(row["name"], []).append((int(row["step"]), float(row["value"])))
    return curves
