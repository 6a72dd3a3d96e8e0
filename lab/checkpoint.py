"""Checkpoints that survive crashes and Ctrl+C, and resume on the next run.

A checkpoint is one dict (nanoGPT's layout): {"model": state_dict, "optimizer": state_dict,
"step": int, "constants": dict, ...}. It is written to a temporary file in the same folder and
then renamed over the old one: a rename within one filesystem is atomic, so a crash or Ctrl+C
mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lab.errors import LabError


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then move the temporary file onto `path` in one rename.

    The temporary file keeps the target's suffix, since some writers insist on it (keras
    `model.save` wants ".keras", `np.savez` appends ".npz" to any other name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_checkpoint(path: Path | str, checkpoint: dict[str, Any]) -> Path:
    """torch.save of the checkpoint dict, atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True: plain tensors and containers, no pickled code."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise LabError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise LabError(f"cannot read checkpoint {path}: {error}. Delete it or rerun with --fresh.") from None


def check_compatible(saved: dict[str, Any], current: dict[str, Any], names: Iterable[str], path: Path | str) -> None:
    """Refuse to resume a checkpoint whose architecture/data constants differ from this run's."""
    differences = [
        f"{name}: checkpoint has {saved.get(name)!r}, this run has {current.get(name)!r}"
        for name in names
        if saved.get(name) != current.get(name)
    ]
    if differences:
        raise LabError(
            f"checkpoint {path} was made with other settings ("
            + "; ".join(differences)
            + "). Rerun with --fresh to start over, or restore those settings to resume."
        )


def load_state_dict_strict(module: Any, state_dict: dict[str, Any], what: str) -> None:
    """load_state_dict(strict=True) with the missing and unexpected keys spelt out on failure."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or wrong_shape:

        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:12]) + (f" ... ({len(keys)} in all)" if len(keys) > 12 else "") or "none"

        raise LabError(
            f"{what} does not match this architecture. missing keys: {listing(missing)}; "
            f"unexpected keys: {listing(unexpected)}; wrong shapes: {listing(wrong_shape)}"
        )
    module.load_state_dict(state_dict, strict=True)


class InterruptGuard:
    """Turn the first Ctrl+C inside a training loop into a request to save and stop.

        with InterruptGuard() as guard:
            for step in range(start, steps):
                ...
                if guard.requested:
                    break
        save_checkpoint(...)

    A second Ctrl+C raises KeyboardInterrupt as usual. Outside the main thread (where Python
    allows no signal handlers) the guard does nothing and Ctrl+C behaves as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl+C: saving a checkpoint and stopping (press again to abort without saving)", flush=True)

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
