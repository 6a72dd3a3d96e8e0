"""One error type for bad input, reported as one clear line instead of a traceback."""

from __future__ import annotations

import functools
import sys


class LabError(Exception):
    """Bad input the user can fix: the message says what was wrong and how to fix it."""


def exit_on_lab_error(main):
    """Decorate a script's `main` so a LabError prints `error: ...` and exits with status 2.

    Ctrl+C outside a training loop's InterruptGuard (loading data, drawing plots) ends the run
    with one line and status 130, the shell's code for SIGINT; the checkpoints written so far are
    whole, so a rerun resumes. Any other exception keeps its traceback: that is a bug, and the
    traceback is what a developer needs to fix it.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except LabError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("\ninterrupted (Ctrl+C); the last checkpoint is kept, rerun to resume", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
