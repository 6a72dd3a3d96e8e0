"""The runner behind ./run.sh: every experiment's scripts in order, then the gallery.

    python -m lab.pipeline                     # all five, quick profile
    python -m lab.pipeline sphere_mapping      # one (or several) by name
    python -m lab.pipeline --full              # the article-scale constants
    RAY_ADDRESS=head:6379 python -m lab.pipeline --full   # one Ray task per experiment

Each experiment lists its scripts in `<folder>/pipeline.py` as `SCRIPTS` ([module, *extra_args];
`--quick` appended unless --full). Locally two experiments run side by side (`--workers`), each one's
output in `<outputs>/<experiment>/pipeline.log`; `--workers 1` runs them in turn on the terminal. A
retried Ray task's scripts resume from their checkpoints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lab.checkpoint import atomic_write_text
from lab.errors import LabError
from lab.executor import Cell, cluster_address, run_cells
from lab.gallery import build_gallery, collect_claims
from lab.paths import EXPERIMENTS, REPO_ROOT, outputs_root


def experiment_scripts(experiment: str) -> list[list[str]] | None:
    """The experiment's SCRIPTS, or None when it has no pipeline.py yet."""
    if not (REPO_ROOT / experiment / "pipeline.py").is_file():
        return None
    module = importlib.import_module(f"{experiment}.pipeline")
    return [list(step) for step in module.SCRIPTS]


def start_order(experiments, timings: dict, full: bool) -> list[str]:
    """Longest first (the last run's wall time, else the experiment's declared QUICK_SECONDS or FULL_SECONDS),
    so that two side by side end close together; ties and unknowns keep the given order."""
    def expected(experiment: str) -> float:
        recorded = timings.get(experiment)
        if isinstance(recorded, (int, float)):
            return float(recorded)
        if experiment_scripts(experiment) is None:
            return 0.0
        module = importlib.import_module(f"{experiment}.pipeline")
        return float(getattr(module, "FULL_SECONDS" if full else "QUICK_SECONDS", 0.0))
    return sorted(experiments, key=expected, reverse=True)


def _die_with_parent() -> None:
    """Die with the Ray worker (Linux), so a retried task does not find the script still holding its folder."""
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_experiment(experiment: str, full: bool, outputs: str = "", nested_cluster: bool = True, log: str = "") -> dict:
    """One experiment's scripts in order, each a subprocess; a failed script skips the rest. `outputs`:
    a root every node sees; `nested_cluster` False: on a worker, the scripts ignore RAY_ADDRESS; `log`:
    a file for the scripts' output (two experiments side by side would interleave their progress bars)."""
    scripts = experiment_scripts(experiment)
    if scripts is None:
        print(f"== {experiment}: not built yet, skipped")
        return {"seconds": "not built yet", "failed": []}
    print(f"== {experiment} ({'full' if full else 'quick'} profile)" + (f"; its output: {log}" if log else ""),
          flush=True)
    output = None
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        output = open(log, "w")  # closed below, after every script
    env = dict(os.environ, **({"LAB_OUTPUT_ROOT": outputs} if outputs else {}))
    if not nested_cluster:
        env.pop("RAY_ADDRESS", None)
    on_linux_worker = not nested_cluster and sys.platform.startswith("linux")
    started = time.time()
    failed = []
    try:
        for module, *extra in scripts:
            command = [sys.executable, "-m", f"{experiment}.{module}", *extra] + ([] if full else ["--quick"])
            print("$ " + " ".join(command[1:]), file=output, flush=True)
            if subprocess.call(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT if log else None,
                               preexec_fn=_die_with_parent if on_linux_worker else None):
                if output is not None:
                    output.flush()
                tail = "".join(Path(log).read_text(errors="replace").splitlines(keepends=True)[-15:]) if log else ""
                print(f"{tail}!! {experiment}.{module} failed; skipping the rest of {experiment}", file=sys.stderr)
                failed.append(f"{experiment}.{module}")
                break
    finally:
        if output is not None:
            output.close()
    return {"seconds": round(time.time() - started, 1), "failed": failed}


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
    parser.add_argument("--cluster", default="", metavar="ADDRESS",
                        help="a Ray cluster to run the experiments on, one task each (default: $RAY_ADDRESS; "
                             "unset: one after another here)")
    parser.add_argument("--gpus", type=float, default=0, help="GPUs each experiment's task asks of the cluster")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="experiments run side by side here, each script's output in <outputs>/<experiment>/"
                             "pipeline.log when more than 1 (default: 2 on a machine with 2 cores or more)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        print(f"error: --workers must be 1 or more, got {args.workers}", file=sys.stderr)
        return 2
    unknown = [name for name in args.experiments if name not in EXPERIMENTS]
    if unknown:
        print(f"error: unknown experiment(s) {', '.join(unknown)}; valid: {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2

    root, experiments = outputs_root(), args.experiments or EXPERIMENTS
    timings_path = root / f"timings_{'full' if args.full else 'quick'}.json"
    timings = read_timings(timings_path)
    cluster = cluster_address(args.cluster)
    # Side by side: most scripts keep one core busy (one torch thread, imports), so two experiments at a
    # time take about two thirds of the wall time; each script's numbers do not depend on it.
    side_by_side = args.workers > 1 and not cluster and len(experiments) > 1
    cells = [Cell(experiment, "lab.pipeline:run_experiment",
                  {"experiment": experiment, "full": args.full, "outputs": str(root.resolve()),
                   "nested_cluster": not cluster,
                   "log": str(root.resolve() / experiment / "pipeline.log") if side_by_side else ""},
                  resources={"num_cpus": 1, "num_gpus": args.gpus})
             for experiment in start_order(experiments, timings, args.full)]
    failed = []
    try:
        outcomes = run_cells(cells, cluster=cluster, desc="experiments", workers=args.workers if side_by_side else 1)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for outcome in outcomes:
        timings[outcome.name] = outcome.result["seconds"] if outcome.ok else "failed"
        failed += outcome.result["failed"] if outcome.ok else [f"{outcome.name} ({outcome.error})"]

    print("\n== timings (s)")
    for experiment in experiments:
        print(f"  {experiment:<18} {timings[experiment]}")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(timings_path, json.dumps(timings, indent=2) + "\n")
    print_summary(root, experiments)
    print(f"gallery: {build_gallery(root)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
