"""One error type for bad input, reported as one clear line instead of a traceback."""

from __future__ import annotations

import contextlib
import errno
import functools
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path


class LabError(Exception):
    """Bad input the user can fix: the message says what was wrong and how to fix it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop; a KeyboardInterrupt, so what cleans up after Ctrl+C cleans up after it."""


# Set by a training loop's InterruptGuard on SIGTERM: the loop saves and stops, the script ends its
# run, and `exit_on_lab_error` then exits with 143 (128 + SIGTERM).
_termination = {"requested": False}


def request_termination() -> None:
    _termination["requested"] = True


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def disk_full_errno(error: BaseException | None) -> int | None:
    """The ENOSPC / EDQUOT / EFBIG errno in `error` or the exceptions it was raised from, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return error.errno
        error = error.__cause__ or error.__context__
    return None


def disk_full_message(code: int, target: Path | str | None, kept: str) -> str:
    """The one line for a write that ran out of room: what happened, to which file, what to do."""
    where = f" while writing {target}" if target else ""
    if code == errno.EFBIG:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = "" if limit == resource.RLIM_INFINITY else f" of {limit} bytes (ulimit -f)"
        return f"file too large: the file-size limit{shown} was reached{where}; {kept}, raise the limit and rerun"
    reason = "disk quota exceeded" if code == getattr(errno, "EDQUOT", None) else "no space left on the device"
    return f"{reason}{where}; {kept}, free space and rerun"


@contextlib.contextmanager
def _signals_handled() -> Iterator[None]:
    """SIGTERM raises Terminated; SIGXFSZ (a write past `ulimit -f`) is ignored, so the write fails
    with EFBIG and is reported instead of the kernel killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated

    previous_term = signal.signal(signal.SIGTERM, terminate)
    previous_xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGXFSZ, previous_xfsz)


def exit_on_lab_error(main):
    """Decorate a script's `main` so a LabError prints `error: ...` and exits with status 2.

    Ctrl+C and SIGTERM end the run with one line and status 130 or 143 (after an InterruptGuard's
    save for SIGTERM inside a training loop); so does a full disk. Any other exception is a bug and
    keeps its traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        _termination["requested"] = False
        with _signals_handled():
            try:
                result = main(*args, **kwargs)
            except LabError as error:
                print(f"error: {error}", file=sys.stderr)
                raise SystemExit(2) from None
            except Terminated:
                print("\nterminated (SIGTERM); the last checkpoint is kept, rerun to resume", file=sys.stderr)
                raise SystemExit(143) from None
            except KeyboardInterrupt:
                print("\ninterrupted (Ctrl+C); the last checkpoint is kept, rerun to resume", file=sys.stderr)
                raise SystemExit(130) from None
            except OSError as error:
                code = disk_full_errno(error)
                if code is None:
                    raise
                kept = "the checkpoints written so far are whole"
                print(f"error: {disk_full_message(code, error.filename, kept)}", file=sys.stderr)
                raise SystemExit(2) from None
        if _termination["requested"]:
            print("stopped by SIGTERM after saving; rerun to resume", file=sys.stderr)
            raise SystemExit(143)
        return result

    return wrapper
