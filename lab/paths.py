"""Where things live: the repository root and the outputs folder."""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import LabError

REPO_ROOT = Path(__file__).resolve().parents[1]



def declared_experiments(root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The experiments, declared once: the packages pyproject.toml installs (`[tool.setuptools]
    packages`, in the order of README's table and of the gallery) that list their scripts in a
    `<package>/pipeline.py`. lab names none of its tenants; a new experiment adds itself to that
    list and writes its pipeline.py."""
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
