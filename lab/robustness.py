"""Do the quick claims survive other seeds, thread counts and instruction sets?

    python -m lab.robustness                                  # all five, every declared environment
    python -m lab.robustness sphere_mapping --envs reference numba-generic seed+10
    python -m lab.robustness gan_basics --seeds 10 20 30      # ... and three shifted seeds (seed+K)
    python -m lab.robustness --list                           # the declared environments
    python -m lab.robustness --report                         # the table of everything measured so far

Each environment reruns the quick pipeline (`python -m lab.pipeline <experiments>`) in its own
process, with its own outputs under outputs/robustness/<environment>/, so the checkpoints and
records of two environments never mix. An environment is a set of environment variables: the
frameworks' own switches for the kernels they dispatch to (ATEN_CPU_CAPABILITY, NUMBA_CPU_NAME,
TF_ENABLE_ONEDNN_OPTS), thread counts, and lab's LAB_SEED_OFFSET (every script's SEED shifted by
k) and LAB_TORCH_THREADS (every torch script's TORCH_THREADS), which lab.start_run applies.

When an environment's pipeline ends its claims are written to <environment>/claims.json at once,
so a stopped sweep loses at most the environment it was running; a rerun skips the environments
already measured without a failure for the same experiments (--fresh measures them again), and
the one that was stopped resumes from its checkpoints. The table, claim x
environment -> figure and verdict, with per claim whether it holds in every environment and the
range (median [min-max]) of each number in its figure, is printed and written to
outputs/robustness/robustness.md and robustness.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.checkpoint import atomic_write_text
from lab.gallery import collect_claims
from lab.paths import EXPERIMENTS, REPO_ROOT, outputs_root


@dataclass(frozen=True)
class Environment:
    name: str
    variables: dict[str, str] = field(default_factory=dict)
    why: str = ""


ENVIRONMENTS = (
    Environment("reference", {}, "as ./run.sh runs it"),
    # Offsets of 10 and more: a script that trains seeds SEED .. SEED+9 (sphere_mapping's table) then
    # shares none of them with the reference; seed+1 would share nine of ten.
    Environment("seed+10", {"LAB_SEED_OFFSET": "10"}, "every script's SEED + 10"),
    Environment("seed+20", {"LAB_SEED_OFFSET": "20"}, "every script's SEED + 20"),
    Environment("threads-1", {"LAB_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                              "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
                "one thread everywhere (torch, OpenMP, numba, TensorFlow)"),
    Environment("threads-2", {"LAB_TORCH_THREADS": "2", "OMP_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2",
                              "TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"},
                "two threads everywhere: other reduction orders"),
    Environment("aten-default", {"ATEN_CPU_CAPABILITY": "default"}, "torch's kernels without AVX2/AVX-512"),
    Environment("numba-generic", {"NUMBA_CPU_NAME": "generic"}, "numba's kernels for a generic x86-64 CPU"),
    Environment("onednn-off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, "TensorFlow without oneDNN"),
    Environment("avx2-host", {"ATEN_CPU_CAPABILITY": "avx2", "NUMBA_CPU_NAME": "haswell",
                              "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
                              "OPENBLAS_CORETYPE": "Haswell"},
                "a host with AVX2 but no AVX-512, as far as torch, numba, numpy and OpenBLAS can be told"),
)
ENVIRONMENTS_BY_NAME = {env.name: env for env in ENVIRONMENTS}
# A sign only where it cannot be a range's dash ("68-93%" is two numbers, "(-0.2%" one).
NUMBER = re.compile(r"(?:(?<![\w.%])[-+])?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
VERDICT_MARKS = {"reproduced": "reproduced", "not reproduced": "NOT reproduced", "not run": "not run"}


def seed_environment(offset: int) -> Environment:
    return Environment(f"seed+{offset}", {"LAB_SEED_OFFSET": str(offset)}, f"every script's SEED + {offset}")


def measure(env: Environment, experiments: list[str], root: Path, fresh: bool = False) -> dict[str, Any]:
    """Run the quick pipeline of `experiments` under `env` (unless already measured) and return its
    result: {"environment", "variables", "experiments", "wall_time_s", "returncode", "claims"}."""
    folder = root / env.name
    result_path = folder / "claims.json"
    if result_path.is_file() and not fresh:
        try:
            done = json.loads(result_path.read_text())
        except (OSError, json.JSONDecodeError):
            done = None
        if (isinstance(done, dict) and done.get("returncode") == 0 and set(experiments) <= set(done.get("experiments", []))
                and done.get("variables") == env.variables):
            print(f"== {env.name}: measured before ({result_path}); --fresh measures again", flush=True)
            return restrict(done, experiments)
    if fresh and folder.is_dir():
        shutil.rmtree(folder)  # its checkpoints too: measuring again means training again
    folder.mkdir(parents=True, exist_ok=True)
    variables = {**os.environ, **env.variables, "LAB_OUTPUT_ROOT": str(folder)}
    log_path = folder / "pipeline.log"
    settings = " ".join(f"{k}={v}" for k, v in env.variables.items()) or "(no changes)"
    print(f"== {env.name}: {settings}; log {log_path}", flush=True)
    started = time.time()
    with log_path.open("w") as log:
        returncode = subprocess.call([sys.executable, "-m", "lab.pipeline", *experiments], cwd=REPO_ROOT,
                                     env=variables, stdout=log, stderr=subprocess.STDOUT)
    claims = collect_claims(folder)
    result = {
        "environment": env.name,
        "variables": env.variables,
        "experiments": experiments,
        "wall_time_s": round(time.time() - started, 1),
        "returncode": returncode,
        "claims": {name: [{key: row[key] for key in ("claim", "measured", "verdict", "source")} for row in claims[name]]
                   for name in experiments if name in claims},
    }
    atomic_write_text(result_path, json.dumps(result, indent=2) + "\n")
    print(f"   {env.name}: pipeline exit {returncode} in {result['wall_time_s']:.0f} s", flush=True)
    return result


def restrict(result: dict[str, Any], experiments: list[str]) -> dict[str, Any]:
    """`result` as if only `experiments` had been measured."""
    return {**result, "experiments": [name for name in result["experiments"] if name in experiments],
            "claims": {name: rows for name, rows in result["claims"].items() if name in experiments}}


def measured_before(root: Path, experiments: list[str]) -> list[dict[str, Any]]:
    """Every environment under `root` that measured any of `experiments` without a failure, the
    declared ones first: what --report tabulates without running anything."""
    results = []
    for path in sorted(root.glob("*/claims.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(result, dict) and result.get("returncode") == 0 and set(experiments) & set(result["experiments"]):
            results.append(restrict(result, experiments))
    order = [env.name for env in ENVIRONMENTS]
    return sorted(results, key=lambda r: (order.index(r["environment"]) if r["environment"] in order else len(order),
                                          r["environment"]))


def numeric_range(figures: list[str]) -> str:
    """The figures' spread: when every figure has the same words around its numbers, each number
    becomes median [min-max] in place ("coverage 0.71 [0.69-0.73], hole 50 [44-61] deg"); else the
    first number's range; "" when there is no number."""
    figures = [f for f in figures if f]
    if not figures:
        return ""
    templates = {NUMBER.sub("#", f) for f in figures}
    columns = [[float(x) for x in NUMBER.findall(f)] for f in figures]
    if len(templates) == 1 and columns[0]:
        template = templates.pop()
        spans = [_span([row[i] for row in columns]) for i in range(len(columns[0]))]
        pieces = template.split("#")
        return "".join(piece + (spans[i] if i < len(spans) else "") for i, piece in enumerate(pieces))
    firsts = [row[0] for row in columns if row]
    return f"first number {_span(firsts)}" if firsts else ""


def _span(values: list[float]) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    if low == high:
        return _number(mid)
    return f"{_number(mid)} [{_number(low)}-{_number(high)}]"


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) and abs(value) < 1e6 else f"{value:.3g}"


def build_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (experiment, claim) seen in any environment: its figure and verdict in each
    environment, whether it was reproduced in every environment that ran its experiment and in how
    many, and the range of its figures. An environment that did not run the experiment (one whose
    switches do not reach its kernels, say) shows "not run" and does not count; one that ran it but
    has no such claim (a script failed) shows "missing" and counts as not reproduced."""
    order: list[tuple[str, str, str]] = []
    cells: dict[tuple[str, str, str], dict[str, dict[str, str]]] = {}
    for result in results:
        for experiment, rows in result["claims"].items():
            for row in rows:  # one claim checked by two runs (a GAN with and without a penalty): two rows
                key = (experiment, row["claim"], row.get("source", ""))
                if key not in cells:
                    order.append(key)
                    cells[key] = {}
                cells[key][result["environment"]] = {"measured": row["measured"], "verdict": row["verdict"]}
    table = []
    sources: dict[tuple[str, str], int] = {}
    for key in order:
        sources[key[:2]] = sources.get(key[:2], 0) + 1
    for key in order:
        per_env = {r["environment"]: cells[key].get(r["environment"], {
            "measured": "", "verdict": "missing" if key[0] in r["experiments"] else "not run"}) for r in results}
        ran = [cell for cell in per_env.values() if cell["verdict"] != "not run"]
        table.append({
            "experiment": key[0], "claim": key[1] + (f" [{key[2]}]" if sources[key[:2]] > 1 else ""),
            "environments": per_env,
            "holds_everywhere": all(cell["verdict"] == "reproduced" for cell in ran),
            "reproduced_in": sum(cell["verdict"] == "reproduced" for cell in ran), "ran_in": len(ran),
            "range": numeric_range([cell["measured"] for cell in ran]),
        })
    return table


def table_markdown(table: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    names = [r["environment"] for r in results]
    lines = ["| experiment | claim | holds everywhere | range: median [min-max] | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for row in table:
        figures = [f'{cell["measured"]} ({VERDICT_MARKS.get(cell["verdict"], cell["verdict"])})'.strip()
                   for cell in row["environments"].values()]
        escaped = [text.replace("|", "\\|") for text in (row["claim"], row["range"], *figures)]
        holds = ("yes" if row["holds_everywhere"] else "no") + f' ({row["reproduced_in"]}/{row["ran_in"]})'
        lines.append(f'| {row["experiment"]} | {escaped[0]} | {holds} | '
                     f'{escaped[1]} | ' + " | ".join(escaped[2:]) + " |")
    held = sum(row["holds_everywhere"] for row in table)
    lines.append("")
    lines.append(f"{held} of {len(table)} claims hold in every environment that ran them ({', '.join(names)}).")
    variables = [f"- {r['environment']}: " + (" ".join(f"`{k}={v}`" for k, v in r["variables"].items()) or "as ./run.sh")
                 + f" (pipeline exit {r['returncode']}, {r['wall_time_s']:.0f} s)" for r in results]
    return "\n".join([*lines, "", *variables]) + "\n"


def write_report(table: list[dict[str, Any]], results: list[dict[str, Any]], root: Path) -> tuple[Path, Path]:
    markdown = table_markdown(table, results)
    md_path = atomic_write_text(root / "robustness.md", markdown)
    json_path = atomic_write_text(root / "robustness.json", json.dumps(
        {"environments": [{k: r[k] for k in ("environment", "variables", "experiments", "wall_time_s", "returncode")}
                          for r in results], "claims": table}, indent=2) + "\n")
    return Path(md_path), Path(json_path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.robustness", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help=f"any of: {', '.join(EXPERIMENTS)} (default: all)")
    parser.add_argument("--envs", nargs="+", metavar="NAME", help="the environments to run (default: all declared; --list)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="OFFSET",
                        help="seed offsets to try (replaces the declared seed+k environments)")
    parser.add_argument("--fresh", action="store_true", help="measure again environments measured before")
    parser.add_argument("--list", action="store_true", help="list the declared environments and stop")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: tabulate every environment measured before under outputs/robustness/")
    return parser.parse_args(argv)


def chosen_environments(args: argparse.Namespace) -> list[Environment]:
    names = args.envs or [env.name for env in ENVIRONMENTS]
    unknown = [name for name in names if name not in ENVIRONMENTS_BY_NAME and not re.fullmatch(r"seed\+\d+", name)]
    if unknown:
        raise SystemExit(f"error: unknown environment(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(ENVIRONMENTS_BY_NAME)} or seed+K")
    envs = [ENVIRONMENTS_BY_NAME.get(name) or seed_environment(int(name[5:])) for name in names]
    if args.seeds is not None:
        envs = [env for env in envs if "LAB_SEED_OFFSET" not in env.variables]
        envs += [seed_environment(offset) for offset in args.seeds if offset != 0]
    return envs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for env in ENVIRONMENTS:
            print(f"{env.name:<14} {env.why}: " + (" ".join(f"{k}={v}" for k, v in env.variables.items()) or "-"))
        return 0
    experiments = args.experiments or list(EXPERIMENTS)
    unknown = [name for name in experiments if name not in EXPERIMENTS]
    if unknown:
        print(f"error: unknown experiment(s) {', '.join(unknown)}; valid: {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2
    root = outputs_root() / "robustness"
    if args.report:
        results = measured_before(root, experiments)
        if not results:
            print(f"error: nothing measured yet under {root}; run without --report first", file=sys.stderr)
            return 2
    else:
        results = [measure(env, experiments, root, fresh=args.fresh) for env in chosen_environments(args)]
    table = build_table(results)
    md_path, json_path = write_report(table, results, root)
    print("\n" + md_path.read_text())
    print(f"written: {md_path}, {json_path}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
