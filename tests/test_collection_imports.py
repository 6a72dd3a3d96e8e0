"""Scripts share models and helpers, never each other.

A script is a module its folder's pipeline.py lists in SCRIPTS, or any module with an
`if __name__ == "__main__":` block (train, test, bench, ...). Everything else in the folder is a
helper (model.py, data.py, metrics.py, ...). A newcomer who opens a script should see what it
depends on: helpers and lab, never another script's globals. The imports are read from the source
(ast), so nothing is executed.
"""

from __future__ import annotations

import ast
from functools import cache

import pytest

from lab.paths import EXPERIMENTS
from tests.conftest import REPO_ROOT

# Scripts that still import a script, each with its folder's owner to fix it. Empty when none.
KNOWN_VIOLATIONS: dict[str, str] = {}
# Entry points that are another script with constants set, and nothing else: they call that script's
# main in process (cgan is gan with CONDITIONAL=true), so they may import that one script.
ALIASES: dict[str, str] = {"gan_basics.cgan": "gan"}


def pipeline_scripts(experiment: str) -> set[str]:
    """The module names listed in <folder>/pipeline.py SCRIPTS, read from its source."""
    path = REPO_ROOT / experiment / "pipeline.py"
    if not path.is_file():
        return set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SCRIPTS" for t in node.targets):
            return {step[0] for step in ast.literal_eval(node.value)}
    raise AssertionError(f"{path} has no SCRIPTS list")


def has_main_block(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
            constants = [n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)]
            if "__name__" in names and "__main__" in constants:
                return True
    return False


@cache
def modules(experiment: str) -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(encoding="utf-8"), str(path))
            for path in sorted((REPO_ROOT / experiment).glob("*.py")) if path.stem != "__init__"}


@cache
def scripts_of(experiment: str) -> set[str]:
    trees = modules(experiment)
    return {name for name in pipeline_scripts(experiment) if name in trees} | {
        name for name, tree in trees.items() if has_main_block(tree)}


def imported_modules(tree: ast.Module, experiment: str, module_names: set[str]) -> set[str]:
    """Names of the experiment's own modules this module imports (anywhere in it, lazily too):
    `import x.m`, `from x.m import f`, `from x import m`, `from . import m`, `from .m import f`."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == experiment and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] == experiment:
                parts = node.module.split(".")
            elif node.level == 1:
                parts = [experiment, *(node.module.split(".") if node.module else [])]
            else:
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from experiment import m: m is a module when a file of that name exists
                found.update(alias.name for alias in node.names if alias.name in module_names)
    return found & module_names


CASES = [(experiment, name) for experiment in EXPERIMENTS for name in sorted(modules(experiment))
         if (REPO_ROOT / experiment).is_dir()]


def test_every_experiment_has_scripts():
    for experiment in EXPERIMENTS:
        assert scripts_of(experiment), f"{experiment}: no script found (pipeline.py SCRIPTS or __main__ blocks)"
    assert {"train", "test", "source_maker"} <= scripts_of("pen_cap_vae")


def test_the_reader_finds_script_imports():
    """The parser itself: every import form that can name a sibling module."""
    source = ("import pen_cap_vae.train\nfrom pen_cap_vae.test import x\nfrom pen_cap_vae import eeg, model\n"
              "from . import source_maker\nfrom .data import y\nimport numpy\nfrom lab import run\n"
              "def f():\n    from pen_cap_vae import bench\n")
    names = {"train", "test", "eeg", "model", "source_maker", "data", "bench"}
    assert imported_modules(ast.parse(source), "pen_cap_vae", names) == names


@pytest.mark.parametrize(("experiment", "name"), CASES, ids=[f"{e}.{n}" for e, n in CASES])
def test_no_module_imports_a_script(experiment, name, request):
    """Scripts import helpers and lab only; helpers import no script either (or a script would
    depend on another one through them)."""
    if f"{experiment}.{name}" in KNOWN_VIOLATIONS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_VIOLATIONS[f"{experiment}.{name}"], strict=True))
    trees = modules(experiment)
    scripts = scripts_of(experiment)
    allowed = {name, ALIASES.get(f"{experiment}.{name}")}
    bad = sorted(imported_modules(trees[name], experiment, set(trees)) & (scripts - allowed))
    kind = "script" if name in scripts else "helper"
    assert not bad, (f"{experiment}/{name}.py ({kind}) imports the script(s) {', '.join(bad)}; move what it needs "
                     f"into a helper module (model.py, data.py, ...) that both import")


def test_scripts_rebuild_models_not_from_other_folders():
    """Experiments import lab and themselves, never another experiment."""
    for experiment in EXPERIMENTS:
        for name, tree in modules(experiment).items():
            for node in ast.walk(tree):
                targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                           else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                for target in targets:
                    other = target.split(".")[0]
                    assert other == experiment or other not in EXPERIMENTS, (
                        f"{experiment}/{name}.py imports {target}: experiments never import each other")


def test_an_alias_is_only_a_call_of_its_script():
    """An alias holds no constants and no code of its own: one main that calls its script's main."""
    for dotted, target in ALIASES.items():
        experiment, name = dotted.split(".")
        tree = modules(experiment)[name]
        assert imported_modules(tree, experiment, set(modules(experiment))) == {target}
        functions = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
        constants = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                     if isinstance(t, ast.Name) and t.id.isupper()]
        assert functions == ["main"] and not constants, dotted
        calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        assert f"{target}.main" in calls, dotted


def test_modules_found_for_every_experiment():
    assert all(any(e == experiment for e, _ in CASES) for experiment in EXPERIMENTS)
