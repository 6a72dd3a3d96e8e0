"""The runner behind ./run.sh: every experiment's scripts in order, then the gallery.

    python -m lab.pipeline                     # all five, quick profile
    python -m lab.pipeline sphere_mapping      # one (or several) by name
    python -m lab.pipeline --full              # the article-scale constants

The experiments are those pyproject.toml declares (lab.paths.declared_experiments). Each lists its
scripts in `<folder>/pipeline.py` as `SCRIPTS`, a list of [module, *extra_args]; `--quick` is
appended unless --full.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

from lab.checkpoint import atomic_write_text
from lab.gallery import build_gallery, collect_claims
from lab.paths import EXPERIMENTS, REPO_ROOT, outputs_root


def experiment_scripts(experiment: str) -> list[list[str]] | None:
    """The experiment's SCRIPTS, or None when it has no pipeline.py yet."""
    if not (REPO_ROOT / experiment / "pipeline.py").is_file():
        return None
    module = importlib.import_module(f"{experiment}.pipeline")
    return [list(step) for step in module.SCRIPTS]


def print_summary(root, experiments) -> None:
    """The article claims each experiment checked, with this run's figure and verdict."""
    print("\n== reproduction summary (also at the top of the gallery)")
    claims = collect_claims(root)
    for experiment in experiments:
        for row in claims.get(experiment, []):
            measured = f": {row['measured']}" if row["measured"] else ""
            print(f"  {experiment:<18} [{row['verdict']}] {row['claim']}{measured}")


def read_timings(path: Path) -> dict[str, float | str]:
    """The timings of earlier runs; an unreadable file (a write cut short) starts a new one."""
    if not path.is_file():
        return {}
    try:
        timings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        print(f"note: {path} cannot be read ({error}); it is written anew")
        return {}
    return timings if isinstance(timings, dict) else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help=f"any of: {', '.join(EXPERIMENTS)} (default: all)")
    parser.add_argument("--full", action="store_true", help="article-scale constants instead of the quick profile")
    args = parser.parse_args(argv)
    unknown = [name for name in args.experiments if name not in EXPERIMENTS]
    if unknown:
        print(f"error: unknown experiment(s) {', '.join(unknown)}; valid: {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2

    root = outputs_root()
    profile = "full" if args.full else "quick"
    timings_path = root / f"timings_{profile}.json"
    timings = read_timings(timings_path)
    failed = []
    for experiment in args.experiments or EXPERIMENTS:
        scripts = experiment_scripts(experiment)
        if scripts is None:
            print(f"== {experiment}: not built yet, skipped")
            timings[experiment] = "not built yet"
            continue
        print(f"== {experiment} ({'full' if args.full else 'quick'} profile)", flush=True)
        started = time.time()
        for module, *extra in scripts:
            command = [sys.executable, "-m", f"{experiment}.{module}", *extra] + ([] if args.full else ["--quick"])
            print("$ " + " ".join(command[1:]), flush=True)
            if subprocess.call(command, cwd=REPO_ROOT) != 0:
                print(f"!! {experiment}.{module} failed; skipping the rest of {experiment}", file=sys.stderr)
                failed.append(f"{experiment}.{module}")
                break
        timings[experiment] = round(time.time() - started, 1)

    print("\n== timings (s)")
    for experiment in args.experiments or EXPERIMENTS:
        seconds = timings[experiment]
        print(f"  {experiment:<18} {seconds}")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(timings_path, json.dumps(timings, indent=2) + "\n")
    print_summary(root, args.experiments or EXPERIMENTS)
    print(f"gallery: {build_gallery(root)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
