"""outputs/index.html from every run.json: the machines, a reproduction summary, then one section per experiment.

The summary has one row per article claim (`run.add_claim(...)` in run.json, and the `CLAIMS` an
experiment's pipeline.py declares, "not run" until recorded): this run's figure, the full profile's
and a verdict. lab.robustness's verdicts follow when it has run. Each experiment's section shows its
claims, then one box per run: pictures, videos and links, then its metrics folded away. Links are
relative, so the outputs folder can be zipped and shared as it is.

    python -m lab.gallery            # rebuild outputs/index.html
"""

from __future__ import annotations

import html
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from lab.checkpoint import atomic_write_text
from lab.paths import EXPERIMENTS, REPO_ROOT, outputs_root

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}
VIDEO_SUFFIXES = {".mp4", ".webm"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; background: #fafafa; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #444; margin-top: 2.5rem; } nav a { margin-right: 1rem; }
.run { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin: 1rem 0; }
.meta { color: #666; font-size: 0.9rem; } .missing { color: #999; font-style: italic; }
.artifacts { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; max-width: 560px; }
figure img, figure video { min-width: 192px; max-width: 100%; max-height: 420px; border: 1px solid #ccc; background: #fff; }
figcaption { font-size: 0.85rem; color: #444; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
table.claims { font-size: 0.9rem; width: 100%; } table.claims th { background: #eee; }
td.verdict { font-weight: 600; white-space: nowrap; } td.not-run { background: #eee; color: #666; }
td.reproduced { background: #d4f4d4; color: #145214; } td.not-reproduced { background: #f8d4d4; color: #7a1010; }
.machine { background: #eef3fb; border: 1px solid #c8d6ee; border-radius: 6px; padding: 0.3rem 1rem; margin: 0.8rem 0;
           font-size: 0.85rem; }
.machine ul { margin: 0.2rem 0; padding-left: 1.2rem; } .machine p { margin: 0.2rem 0; }
details.metrics { margin-top: 0.5rem; } details.metrics summary { cursor: pointer; color: #444; }
"""


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics as (dotted name, shown value) rows; long lists are summarised."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten_metrics(value, f"{name}."))
        elif isinstance(value, list):
            short = len(value) <= 10 and all(not isinstance(v, (list, dict)) for v in value)
            rows.append((name, ", ".join(_show(v) for v in value) if short else f"[{len(value)} values]"))
        else:
            rows.append((name, _show(value)))
    return rows


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _artifact_html(rel: str, caption: str) -> str:
    href = html.escape(rel, quote=True)
    label = html.escape(caption or Path(rel).name)
    suffix = Path(rel).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        body = f'<a href="{href}"><img src="{href}" alt="{label}" loading="lazy"></a>'
    elif suffix in VIDEO_SUFFIXES:
        body = f'<video src="{href}" controls loop muted playsinline preload="metadata"></video>'
    else:
        body = f'<a href="{href}">open {html.escape(Path(rel).name)}</a>'
    return f"<figure>{body}<figcaption>{label}</figcaption></figure>"


def _read_record(record_path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _run_anchor(record_path: Path, root: Path) -> str:
    """The id of a run's box in the page, so the summary can link to it."""
    rel = os.path.relpath(record_path.parent, root).replace(os.sep, "/")
    return "run-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in rel)


VERDICTS = {True: "reproduced", False: "not reproduced", None: "not run"}


def declared_claims(experiment: str) -> list[tuple[str, str]]:
    """(claim, full-profile figure) pairs the experiment declares in `<folder>/pipeline.py` CLAIMS."""
    if not (REPO_ROOT / experiment / "pipeline.py").is_file():
        return []
    try:
        entries = list(getattr(importlib.import_module(f"{experiment}.pipeline"), "CLAIMS", []))
    except Exception as error:  # a broken pipeline.py shows in the table rather than hiding the page
        return [(f"cannot read {experiment}/pipeline.py CLAIMS: {error}", "")]
    return [(str(entry), "") if isinstance(entry, str) else (str(entry[0]), str(entry[1]) if len(entry) > 1 else "")
            for entry in entries]


def gather_claims(experiment: str, records: list[Path], root: Path) -> list[dict[str, Any]]:
    """One row per claim the run.json files record (in run order), then the declared claims none
    recorded, as "not run"; one "not run" row when there is nothing."""
    rows: list[dict[str, Any]] = []
    for record_path in records:
        record = _read_record(record_path)
        claims = record.get("claims") if record else None
        for claim in claims if isinstance(claims, list) else []:
            if not isinstance(claim, dict) or not claim.get("claim"):
                continue
            reproduced = claim.get("reproduced")
            rows.append({"claim": str(claim["claim"]), "measured": str(claim.get("measured", "")),
                         "full_profile": str(claim.get("full_profile", "")),
                         "verdict": VERDICTS.get(reproduced if isinstance(reproduced, bool) else None),
                         # The run's folder names the variant too (improver_article, gan_digits_diversity).
                         "source": os.path.relpath(record_path.parent, root / experiment).replace(os.sep, "/"),
                         "anchor": _run_anchor(record_path, root)})
    recorded = {row["claim"] for row in rows}
    unrun = [(claim, full) for claim, full in declared_claims(experiment) if claim not in recorded]
    if not rows and not unrun:
        unrun = [("no claims recorded" if records else "experiment not run", "")]
    rows += [{"claim": claim, "measured": "", "full_profile": full, "verdict": "not run", "source": "", "anchor": ""}
             for claim, full in unrun]
    return rows


def summary_html(claims: dict[str, list[dict[str, Any]]]) -> str:
    """The reproduction summary table: one row per claim, grouped by experiment."""
    counts = {verdict: sum(row["verdict"] == verdict for rows in claims.values() for row in rows)
              for verdict in VERDICTS.values()}
    parts = ['<section id="summary"><h2>Reproduction summary</h2>',
             f'<p class="meta">{counts["reproduced"]} reproduced &middot; {counts["not reproduced"]} not reproduced '
             f'&middot; {counts["not run"]} not run. "This run" is the figure measured by the run shown below; '
             '"full profile" is the figure the experiment\'s README reports for the article-scale run.</p>',
             '<table class="claims"><tr><th>experiment</th><th>the article claims</th><th>this run</th>'
             '<th>full profile</th><th>verdict</th><th>measured by</th></tr>']
    for experiment, rows in claims.items():
        for index, row in enumerate(rows):
            first = (f'<td rowspan="{len(rows)}"><a href="#{experiment}">{html.escape(experiment)}</a></td>'
                     if index == 0 else "")
            parts.append(_claim_row_html(row, experiment, "claim", first))
    parts.append("</table></section>")
    return "".join(parts)


def _claim_row_html(row: dict[str, Any], experiment: str, row_class: str, first_cell: str = "") -> str:
    verdict = row["verdict"]
    source = f'<a href="#{row["anchor"]}">{html.escape(row["source"])}</a>' if row["anchor"] else ""
    return (f'<tr class="{row_class}" data-experiment="{html.escape(experiment, quote=True)}">{first_cell}'
            f'<td>{html.escape(row["claim"])}</td><td>{html.escape(row["measured"])}</td>'
            f'<td>{html.escape(row["full_profile"])}</td>'
            f'<td class="verdict {verdict.replace(" ", "-")}">{verdict}</td><td>{source}</td></tr>')


def experiment_claims_html(experiment: str, rows: list[dict[str, Any]]) -> str:
    """The experiment's own claims, at the head of its section, before its pictures and tables."""
    header = ('<table class="claims"><tr><th>the article claims</th><th>this run</th><th>full profile</th>'
              '<th>verdict</th><th>measured by</th></tr>')
    return header + "".join(_claim_row_html(row, experiment, "experiment-claim") for row in rows) + "</table>"


def machine_summary(machine: dict[str, Any] | None) -> str:
    """lab.run.machine_provenance's record in one line."""
    if not isinstance(machine, dict):
        return "machine not recorded"
    torch_info, numba_info, tf_info = (machine.get(k) if isinstance(machine.get(k), dict) else {}
                                       for k in ("torch", "numba", "tensorflow"))
    extensions = machine.get("vector_extensions") or []
    widest = ("AVX-512" if any(str(e).startswith("avx512") for e in extensions)
              else "AVX2" if "avx2" in extensions else "no AVX2")
    pieces = [f"{machine.get('cpu', '?')} ({widest}, {machine.get('usable_cpus', '?')} CPUs)"]
    if torch_info:
        pieces.append(f"torch {torch_info.get('cpu_capability', '?')} x{torch_info.get('threads', '?')}")
        if torch_info.get("gpu"):
            pieces.append(f"GPU {torch_info['gpu']}")
    if numba_info:
        pieces.append(f"numba {numba_info.get('target_cpu', '?')} x{numba_info.get('threads', '?')}")
    if tf_info:
        threads = tf_info.get("intra_op_threads", "?")  # 0: TensorFlow's default, one per core
        pieces.append(f"TensorFlow oneDNN {tf_info.get('onednn', '?')} " + (f"x{threads}" if threads else "x(all cores)"))
        if tf_info.get("gpus"):
            pieces.append(f"TF GPUs {', '.join(map(str, tf_info['gpus']))}")
    environment = machine.get("environment") or {}
    if environment:
        pieces.append(" ".join(f"{k}={v}" for k, v in environment.items()))
    return "; ".join(pieces)


def machines_html(root: Path, experiments: list[str]) -> str:
    """The box under the title: each distinct machine line among the runs, with its run count."""
    counts: dict[str, int] = {}
    versions: dict[str, str] = {}
    for experiment in experiments:
        for record_path in run_records(root, experiment):
            record = _read_record(record_path) or {}
            line = machine_summary(record.get("machine"))
            counts[line] = counts.get(line, 0) + 1
            if isinstance(record.get("versions"), dict):
                versions.update({str(k): str(v) for k, v in record["versions"].items()})
    if not counts:
        return ""
    lines = "".join(f"<li>{html.escape(line)} <span class='meta'>({count} run{'s' * (count != 1)})</span></li>"
                    for line, count in counts.items())
    libraries = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    return (f'<section id="machine" class="machine"><strong>Measured on</strong><ul>{lines}</ul>'
            f'<p class="meta">libraries: {html.escape(libraries)}</p></section>')


def robustness_html(root: Path) -> str:
    """lab.robustness's verdict per claim, when it has run: holds everywhere, and its figures' spread."""
    report_path = root / "robustness" / "robustness.json"
    report = _read_record(report_path) if report_path.is_file() else None
    if not report or not isinstance(report.get("claims"), list):
        return ""
    names = ", ".join(str(env.get("environment")) for env in report.get("environments", []) if isinstance(env, dict))
    environments = len(report.get("environments") or [])
    rows = []
    for row in report["claims"]:
        if not isinstance(row, dict):
            continue
        holds = row.get("holds_everywhere") is True
        shown = ("yes" if holds else "no") + f" ({row.get('reproduced_in', 0)}/{row.get('ran_in', environments)})"
        rows.append(f'<tr><td>{html.escape(str(row.get("experiment", "")))}</td><td>{html.escape(str(row.get("claim", "")))}</td>'
                    f'<td class="verdict {"reproduced" if holds else "not-reproduced"}">{html.escape(shown)}</td>'
                    f'<td>{html.escape(str(row.get("range", "")))}</td></tr>')
    return ('<section id="robustness"><h2>Robustness</h2>'
            f'<p class="meta">The quick claims rerun in these environments: {html.escape(names)} '
            '(<code>python -m lab.robustness</code>; every figure per environment: '
            '<a href="robustness/robustness.md">robustness.md</a>).</p>'
            '<table class="claims"><tr><th>experiment</th><th>the article claims</th><th>holds everywhere</th>'
            f'<th>median [min-max] over the environments</th></tr>{"".join(rows)}</table></section>')


def _run_html(record_path: Path, root: Path) -> str:
    record = _read_record(record_path)
    if record is None:
        return f'<div class="run"><p class="missing">unreadable {html.escape(str(record_path))}</p></div>'
    folder = record_path.parent
    title = f"{record.get('script', folder.name)} <span class='meta'>({html.escape(os.path.relpath(folder, root))})</span>"
    meta = " &middot; ".join(html.escape(str(item)) for item in (
        f"profile {record.get('profile')}", record.get("status"), f"{record.get('wall_time_s', 0):.1f} s",
        f"seed {record.get('seed')}", f"device {record.get('device')}", record.get("started_at")))
    parts = [f'<div class="run" id="{_run_anchor(record_path, root)}"><h3>{title}</h3><p class="meta">{meta}</p>',
             f'<p class="meta machine-line">{html.escape(machine_summary(record.get("machine")))}</p>']
    figures = []
    for artifact in record.get("artifacts") or []:
        target = folder / artifact["path"]
        rel = os.path.relpath(target, root).replace(os.sep, "/")
        figures.append(_artifact_html(rel, artifact.get("caption", "")) if target.exists()
                       else f'<p class="missing">missing: {html.escape(rel)}</p>')
    parts.append(f'<div class="artifacts">{"".join(figures)}</div>')
    rows = flatten_metrics(record.get("metrics") or {})
    if rows:  # the raw figures fold away below the pictures; the claims above say what they mean
        parts.append(f'<details class="metrics"><summary>metrics ({len(rows)})</summary>'
                     "<table><tr><th>metric</th><th>value</th></tr>")
        parts.extend(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
        parts.append("</table></details>")
    parts.append("</div>")
    return "".join(parts)


def _started_at(record_path: Path) -> str:
    record = _read_record(record_path)
    return str(record.get("started_at") or "") if record else ""


# Folders under outputs/ that hold no experiment's runs: lab.robustness's reruns, each with its own page.
NOT_EXPERIMENTS = {"robustness"}


def _experiments(root: Path) -> list[str]:
    """The declared experiments, then any other folder under outputs/ (an experiment not declared yet)."""
    others = sorted(p.name for p in root.iterdir()
                    if p.is_dir() and p.name not in EXPERIMENTS and p.name not in NOT_EXPERIMENTS) if root.is_dir() else []
    return [*EXPERIMENTS, *others]


def run_records(root: Path, experiment: str) -> list[Path]:
    """The experiment's run.json files, in the order they ran (the pipeline's order)."""
    records = sorted((root / experiment).rglob("run.json")) if (root / experiment).is_dir() else []
    return sorted((r for r in records if "checkpoints" not in r.parts), key=lambda r: (_started_at(r), str(r)))


def collect_claims(root: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every experiment's claim rows (see gather_claims), as the summary table shows them."""
    root = Path(root or outputs_root())
    claims = {}
    for experiment in _experiments(root):
        rows = gather_claims(experiment, run_records(root, experiment), root)
        if experiment in EXPERIMENTS or any(row["source"] for row in rows):
            claims[experiment] = rows
    return claims


def build_gallery(root: Path | None = None) -> Path:
    """Write <root>/index.html and return its path."""
    root = Path(root or outputs_root())
    root.mkdir(parents=True, exist_ok=True)
    others = _experiments(root)[len(EXPERIMENTS):]
    claims = collect_claims(root)
    sections = []
    for experiment in (*EXPERIMENTS, *others):
        records = run_records(root, experiment)
        body = "".join(_run_html(r, root) for r in records) or '<p class="missing">not run yet</p>'
        head = experiment_claims_html(experiment, claims[experiment]) if experiment in claims else ""
        sections.append(f'<section id="{experiment}"><h2>{experiment}</h2>{head}{body}</section>')
    robustness = robustness_html(root)
    nav = " ".join(f'<a href="#{name}">{name}</a>'
                   for name in ("summary", *(["robustness"] if robustness else []), *EXPERIMENTS, *others))
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>generative-lab results</title>"
            f"<style>{_STYLE}</style></head><body><h1>generative-lab results</h1>"
            f"<nav>{nav}</nav>{machines_html(root, [*EXPERIMENTS, *others])}{summary_html(claims)}"
            f"{robustness}{''.join(sections)}</body></html>\n")
    return atomic_write_text(root / "index.html", page)


if __name__ == "__main__":
    print(build_gallery(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
