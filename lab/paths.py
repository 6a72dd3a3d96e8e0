"""Where things live: the repository root and the outputs folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lab.errors import LabError

REPO_ROOT = Path(__file__).resolve().parents[1]


def declared_experiments(root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The packages pyproject.toml installs (`[tool.setuptools] packages`, in the gallery's order) that
    have a `<package>/pipeline.py`: a new experiment adds itself there; lab names none of them."""
    import tomllib
    pyproject = root / "pyproject.toml"
    try:
        packages = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as error:
        raise LabError(f"cannot read the list of experiments from {pyproject} ([tool.setuptools] packages): "
                       f"{error}") from None
    plumbing = Path(__file__).resolve().parent.name  # lab itself, whose pipeline.py is the runner
    return tuple(name for name in packages if name != plumbing and (root / name / "pipeline.py").is_file())


EXPERIMENTS = declared_experiments()


def outputs_root() -> Path:
    """`outputs/` at the repository root, or $LAB_OUTPUT_ROOT (the tests point it at a temp dir)."""
    return Path(os.environ.get("LAB_OUTPUT_ROOT") or REPO_ROOT / "outputs")


def data_root() -> Path:
    return REPO_ROOT / "data"


def shown(path: Path | str, limit: int = 120) -> str:
    """A path as it goes into a message: a very long one cut, with its length said."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-20:]} ({len(text)} characters)"


# Constants whose value is a path (a file or a folder the script reads or writes), by name.
_PATH_SETTING = re.compile(r"(^|_)(DIR|FILE|PATH|IMAGE|PICTURE|CHECKPOINT|WEIGHTS|TABLE|MODEL)$")


def check_path_settings(constants: dict[str, object]) -> None:
    """Refuse a path-valued constant the filesystem cannot look up (too long, a NUL byte, no permission...);
    a missing file is left to the script (PICTURE=astronaut is a name)."""
    for name, value in constants.items():
        if not isinstance(value, str) or not value or not _PATH_SETTING.search(name):
            continue
        path = Path(value).expanduser()
        for candidate in (path,) if path.is_absolute() else (path, REPO_ROOT / path):
            try:
                os.stat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as error:
                raise LabError(f"{name}={shown(value)!s} cannot be used as a path ({error.strerror}); "
                               f"give {name} a path to an existing file or folder") from None
            except ValueError as error:  # an embedded NUL byte
                raise LabError(f"{name}={shown(value)!r} is not a valid path ({error}); "
                               f"give {name} a path to an existing file or folder") from None


def read_text_file(path: Path | str, what: str) -> str:
    """A user's text file as UTF-8, or one clear error naming `what` (the setting) and the file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LabError(f"{what} {shown(path)} is not a UTF-8 text file (byte {error.start} cannot be decoded: "
                       f"{error.reason}); give a plain text file") from None
    except OSError as error:
        raise LabError(f"{what} {shown(path)} cannot be read ({error.strerror or error}); "
                       "give the path of a readable text file") from None
