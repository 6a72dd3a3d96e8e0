"""Checkpoints that survive crashes and Ctrl+C, and resume on the next run.

A checkpoint is one dict (nanoGPT's layout: "model", "optimizer", "step", "constants", "rng", ...),
written atomically (a temporary file renamed over the old one); the one before stays as
`<stem>.prev<suffix>`, the fallback when the last is unreadable. Training scripts resume once the
model is built (its initialisation draws random numbers; resume() puts the generators back after it):

    ckpt = resume(run, "model.pt", architecture=ARCHITECTURE, steps=cfg.STEPS, data=fingerprint)
    if ckpt.state is not None:
        model.load_state_dict(ckpt.state["model"])
    for step in range(ckpt.step, cfg.STEPS):
        ...
        save_checkpoint(ckpt.path, {"model": model.state_dict(), **ckpt.meta(step + 1)})
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import random
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError, Terminated, disk_full_errno, disk_full_message, request_termination


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def previous_path(path: Path | str) -> Path:
    """Where the checkpoint before the last one is kept: model.pt -> model.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write(path: Path | str, write: Callable[[Path], None], keep_previous: bool = False) -> Path:
    """Call `write(tmp_path)`, then move the temporary file onto `path` in one rename.

    The temporary file keeps the target's suffix (keras wants ".keras", np.savez appends ".npz")
    and gets the umask's permissions (mkstemp makes 0600). `keep_previous` links the replaced file
    to `previous_path(path)` before the rename, so `path` always holds a whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        if keep_previous and path.is_file():
            _link_previous(path)
        os.replace(tmp, path)
    except BaseException as error:
        code = _out_of_room(error, tmp) if isinstance(error, Exception) else None
        tmp.unlink(missing_ok=True)
        if code is not None:
            kept = "nothing was lost (the file it replaces is kept whole)" if path.is_file() else "nothing was lost"
            raise LabError(disk_full_message(code, path, kept)) from None
        raise
    return path


def _out_of_room(error: Exception, tmp: Path) -> int | None:
    """ENOSPC or EFBIG for a full disk or file-size limit (judged by the file when the writer hides the errno)."""
    import errno
    import resource
    code = disk_full_errno(error)
    if code is not None:
        return code
    try:
        written = tmp.stat().st_size
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and written >= limit:
            return errno.EFBIG
        stats = os.statvfs(tmp.parent)
        if stats.f_bavail * stats.f_frsize < 1 << 20:  # under 1 MiB left: the write ran out of room
            return errno.ENOSPC
    except OSError:
        return None
    return None


def _link_previous(path: Path) -> None:
    previous = previous_path(path)
    staging = previous.with_name(f".{previous.name}.tmp")
    staging.unlink(missing_ok=True)
    try:
        os.link(path, staging)
    except OSError:  # a filesystem without hard links: a copy does the same job
        import shutil
        shutil.copyfile(path, staging)
    os.replace(staging, previous)


def remove_stale_temporaries(folder: Path | str) -> None:
    """Delete the temporary files a killed writer left in `folder` (call it holding the folder's lock)."""
    for candidate in Path(folder).glob(".*.tmp*"):
        if candidate.is_file():
            candidate.unlink(missing_ok=True)


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_checkpoint(path: Path | str, checkpoint: dict[str, Any]) -> Path:
    """torch.save of the checkpoint dict, atomically; the one it replaces is kept as the fallback."""
    import torch
    return atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), keep_previous=True)


def read_checkpoint_file(path: Path | str, read: Callable[[Path], Any]) -> Any:
    """`read(path)` (a lab.safe_load reader), a damaged file's error naming the way out (--fresh)."""
    path = Path(path)
    try:
        return read(path)
    except LabError as error:
        from lab.safe_load import UnsafeFileError
        if isinstance(error, UnsafeFileError) or "--fresh" in str(error) or not str(error).startswith("cannot read"):
            raise
        raise LabError(f"{error}. Delete it or rerun with --fresh.") from None
    except Exception as error:  # a truncated or foreign file
        reason = str(error).split("\n")[0][:200]
        raise LabError(f"cannot read checkpoint {path}: the file is damaged or incomplete ({reason}). "
                       "Delete it or rerun with --fresh.") from None


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> dict[str, Any]:
    """A torch checkpoint through `lab.safe_load.load_torch` (nothing the file names runs)."""
    from lab.safe_load import load_torch
    return read_checkpoint_file(path, lambda p: load_torch(p, "checkpoint", map_location=map_location))


def rng_state() -> dict[str, Any]:
    """The global generators' states as plain containers and tensors (torch.load weights_only safe)."""
    import numpy as np
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": {"kind": kind, "keys": keys.tolist(), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if "torch" in sys.modules:
        import torch
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    """Put back what `rng_state()` saved (missing parts are left as they are)."""
    if not state:
        return
    import numpy as np
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        saved = state["numpy"]
        np.random.set_state((saved["kind"], np.asarray(saved["keys"], dtype=np.uint32), saved["position"],
                             saved["has_gauss"], saved["cached"]))
    if "torch" in state and "torch" in sys.modules:
        import torch
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in state["cuda"]])


def fingerprint_files(paths: Iterable[Path | str]) -> str:
    """A short hash of the files' names and contents: the data a run trained on, to compare on resume."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


_HELD_LOCKS: dict[Path, Any] = {}


def lock_folder(folder: Path | str) -> None:
    """Hold `folder/.lock` (an flock: the kernel drops it however the process ends) or fail at once."""
    import fcntl
    folder = Path(folder).resolve()
    if folder in _HELD_LOCKS:
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "pid unknown"
        handle.close()
        raise LabError(f"another run ({holder}) is using {folder}; wait for it to finish, or give this run "
                       "its own folder with --set RUN_NAME=<name>") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {dt.datetime.now().isoformat(timespec='seconds')}\n")
    handle.flush()
    _HELD_LOCKS[folder] = handle
    remove_stale_temporaries(folder)


@contextlib.contextmanager
def cache_lock(folder: Path | str, what: str) -> Iterator[None]:
    """Hold `folder/.cache.lock` while a shared cache is read or built; a second run waits, then reads it."""
    import fcntl
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".cache.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another run that is building {what} in {folder}", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_cache(path: Path | str, what: str, load: Callable[[Path], Any] | None = None) -> Any:
    """A rebuildable cache file, else its previous copy, else None (a notice, and the caller rebuilds)."""
    path = Path(path)
    loaded, used, problems = first_readable(path, load or load_checkpoint)
    if problems:
        print(f"note: {'; '.join(problems)} -- " + (f"rebuilding {what}" if loaded is None else
                                                    f"using the previous copy {used} of {what}"))
    return loaded


def first_readable(path: Path, load: Callable[[Path], Any],
                   check: Callable[[Any, Path], str | None] = lambda loaded, candidate: None,
                   ) -> tuple[Any, Path, list[str]]:
    """(loaded or None, its file, the problems met): the first of `path` and its previous copy that passes."""
    problems = []
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            continue
        try:
            loaded = load(candidate)
        except LabError as error:
            problem = str(error)
        except Exception as error:  # a loader of another format: its own message
            problem = f"cannot read checkpoint {candidate}: {error}"
        else:
            problem = check(loaded, candidate)
            if not problem:
                return loaded, candidate, problems
        problems.append(problem)
    return None, path, problems


@dataclass
class Resumed:
    """What `resume()` found: the checkpoint dict (None when starting fresh) and the steps done."""

    path: Path
    state: dict[str, Any] | None
    step: int
    steps: int | None
    constants: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    settings: dict[str, Any] | None = None  # the run's typed settings dataclass, as a dict

    @property
    def finished(self) -> bool:
        return self.steps is not None and self.step >= self.steps

    def meta(self, step: int) -> dict[str, Any]:
        """What every checkpoint records besides the weights."""
        meta = {"step": int(step), "constants": self.constants, "data": self.data, "rng": rng_state()}
        if self.settings is not None:
            meta["settings"] = self.settings
        return meta


def resume(run: Any, name: str, *, architecture: Iterable[str] = (), settings: Any = None, steps: int | None = None,
           data: str | None = None, map_location: Any = "cpu", loader: Callable[[Path], dict[str, Any]] | None = None,
           restore_rng: bool = True, steps_name: str = "STEPS") -> Resumed:
    """Load `name` from the run's (locked) checkpoint folder and put back the random generators, or start fresh.

    `architecture`, `settings` (a dataclass, stored by `meta`) and `data` (`fingerprint_files`) must
    match the checkpoint's; more than `steps` done is refused, never rewound; `loader` reads other
    formats; `steps_name` names the constant in messages (EPOCHS...)."""
    path = run.checkpoint_path(name)  # takes the folder's lock
    settings_dict = None if settings is None else dataclasses.asdict(settings)
    fresh = Resumed(path, None, 0, steps, dict(run.constants), data, settings_dict)
    if run.fresh:
        previous_path(path).unlink(missing_ok=True)
        return fresh
    load = loader or (lambda candidate: load_checkpoint(candidate, map_location=map_location))

    def has_steps(loaded: Any, candidate: Path) -> str | None:
        if not isinstance(loaded, dict) or not isinstance(loaded.get("step"), int):
            return f"checkpoint {candidate} has no step count: it is not a checkpoint of this script"
        return None

    state, used, problems = first_readable(path, load, has_steps)
    if state is None:
        if problems:
            raise LabError(problems[0] if len(problems) == 1 else "; ".join(problems))
        return fresh
    if used != path:
        print(f"note: {problems[0] if problems else path} -- resuming from the previous checkpoint {used} instead")
    check_compatible(state.get("constants") or {}, run.constants, architecture, used)
    if settings_dict is not None:
        check_settings(state.get("settings"), settings_dict, used)
    if data is not None and state.get("data") is not None and state["data"] != data:
        raise LabError(f"checkpoint {used} was trained on other data (fingerprint {state['data']}, this run's "
                       f"{data}). Rerun with --fresh to train on this data, or point back to the old data.")
    done = state["step"]
    if steps is not None and done > steps:
        raise LabError(f"checkpoint {used} has {done} steps done, more than the {steps} this run asks for. "
                       f"Rerun with --set {steps_name}={done} (or more) to keep it, or with --fresh to start over.")
    if restore_rng:
        set_rng_state(state.get("rng"))
    print(f"resumed from {used} at step {done}" + (f" of {steps}" if steps is not None else ""))
    return Resumed(path, state, done, steps, dict(run.constants), data, settings_dict)


def check_compatible(saved: dict[str, Any], current: dict[str, Any], names: Iterable[str], path: Path | str) -> None:
    """Refuse to resume a checkpoint whose values of `names` differ from this run's, naming each."""
    differences = [f"{name}: checkpoint has {saved.get(name)!r}, this run has {current.get(name)!r}"
                   for name in names if saved.get(name) != current.get(name)]
    if differences:
        raise LabError(f"checkpoint {path} was made with other settings (" + "; ".join(differences)
                       + "). Rerun with --fresh to start over, or restore those settings to resume.")


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: a checkpoint's settings compare equal however they were stored."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_settings(saved: dict[str, Any] | None, current: dict[str, Any], path: Path | str) -> None:
    """Refuse to resume a checkpoint whose typed settings differ from this run's, naming each field."""
    if not isinstance(saved, dict):
        raise LabError(f"checkpoint {path} holds no settings (it was made by an older version of this script). "
                       "Rerun with --fresh to start over.")
    saved, current = _plain(saved), _plain(current)
    check_compatible(saved, current, sorted(set(saved) | set(current)), path)


def load_state_dict_strict(module: Any, state_dict: dict[str, Any], what: str) -> None:
    """load_state_dict(strict=True) with the missing and unexpected keys spelt out on failure."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state_dict)
                         if hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong_shape:

        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:12]) + (f" ... ({len(keys)} in all)" if len(keys) > 12 else "") or "none"

        raise LabError(f"{what} does not match this architecture. missing keys: {listing(missing)}; "
                       f"unexpected keys: {listing(unexpected)}; wrong shapes: {listing(wrong_shape)}")
    module.load_state_dict(state_dict, strict=True)


class InterruptGuard:
    """Turn the first Ctrl+C or SIGTERM (timeout, preemption) in a training loop into `guard.requested`
    (the loop saves and stops); a second one aborts. Outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.requested, self.signal_name = False, ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.requested = True
        self.signal_name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl+C"
        if signum == signal.SIGTERM:
            request_termination()
        print(f"\n{self.signal_name}: saving a checkpoint and stopping (press Ctrl+C again to abort without saving)",
              flush=True)

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
        self._previous = {}
