"""The experiments declare themselves: lab finds them in pyproject.toml and names none of them."""

from __future__ import annotations

import ast
import importlib
import re

from lab.paths import EXPERIMENTS, declared_experiments
from tests.conftest import REPO_ROOT


def test_experiments_are_the_declared_packages_with_a_pipeline_in_their_order(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackages = ["lab", "zebra", "apple", "helper_only"]\n')
    for name in ("lab", "zebra", "apple"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pipeline.py").write_text("SCRIPTS = []\n")
    (tmp_path / "helper_only").mkdir()
    (tmp_path / "stray").mkdir()  # a folder with a pipeline that pyproject.toml does not install
    (tmp_path / "stray" / "pipeline.py").write_text("SCRIPTS = []\n")
    assert declared_experiments(tmp_path) == ("zebra", "apple")


def test_the_collection_runs_its_five_experiments_in_readme_order():
    table = re.findall(r"^\| `(\w+)/` \|", (REPO_ROOT / "README.md").read_text(), flags=re.MULTILINE)
    assert EXPERIMENTS == tuple(table) and len(EXPERIMENTS) == 5


def _code_words(tree: ast.Module) -> set[str]:
    """Every identifier and string in the code, docstrings left out (they may give examples)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(re.findall(r"\w+", node.value))
        elif isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.alias):
            words.update(node.name.split("."))
    return words


def test_lab_names_none_of_its_tenants():
    for path in sorted((REPO_ROOT / "lab").glob("*.py")):
        named = _code_words(ast.parse(path.read_text(encoding="utf-8"))) & set(EXPERIMENTS)
        assert not named, f"lab/{path.name} names the experiment(s) {sorted(named)} in its code"


def test_the_pipeline_starts_the_longest_experiment_first():
    from lab.pipeline import start_order

    declared = {name: importlib.import_module(f"{name}.pipeline").QUICK_SECONDS for name in EXPERIMENTS}
    assert start_order(EXPERIMENTS, {}, full=False) == sorted(EXPERIMENTS, key=declared.get, reverse=True)
    # A timing of this machine's last run wins over the declared figure; a failed one ("failed") does not.
    shortest = min(EXPERIMENTS, key=declared.get)
    order = start_order(EXPERIMENTS, {shortest: 10 ** 6, EXPERIMENTS[0]: "failed"}, full=False)
    assert order[0] == shortest
    # Nothing declared for the full profile: the declared order, untouched.
    assert start_order(EXPERIMENTS, {}, full=True) == list(EXPERIMENTS)
