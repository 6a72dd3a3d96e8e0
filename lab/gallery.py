"""outputs/index.html: one section per experiment, built from every run.json under outputs/.

Each run.json lists the files its script wants shown ("artifacts"); images and GIFs are shown
inline, mp4 videos play inline, .html files (plotly) are linked, and the metrics become a table.
Links are relative, so the outputs folder can be zipped and shared as it is.

    python -m lab.gallery            # rebuild outputs/index.html
"""

from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path
from typing import Any

from lab.checkpoint import atomic_write_text
from lab.paths import EXPERIMENTS, outputs_root

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}
VIDEO_SUFFIXES = {".mp4", ".webm"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; background: #fafafa; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #444; margin-top: 2.5rem; }
nav a { margin-right: 1rem; }
.run { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin: 1rem 0; }
.meta { color: #666; font-size: 0.9rem; }
.artifacts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; max-width: 560px; }
figure img, figure video { min-width: 192px; max-width: 100%; max-height: 420px; border: 1px solid #ccc; background: #fff; }
figcaption { font-size: 0.85rem; color: #444; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
.missing { color: #999; font-style: italic; }
"""


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics as (dotted name, shown value) rows; long lists are summarised."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten_metrics(value, f"{name}."))
        elif isinstance(value, list):
            if len(value) <= 10 and all(not isinstance(v, (list, dict)) for v in value):
                rows.append((name, ", ".join(_show(v) for v in value)))
            else:
                rows.append((name, f"[{len(value)} values]"))
        else:
            rows.append((name, _show(value)))
    return rows


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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


def _run_html(record_path: Path, root: Path) -> str:
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return f'<div class="run"><p class="missing">unreadable {html.escape(str(record_path))}: {html.escape(str(error))}</p></div>'
    folder = record_path.parent
    title = f"{record.get('script', folder.name)} <span class='meta'>({html.escape(os.path.relpath(folder, root))})</span>"
    meta = " &middot; ".join(
        html.escape(str(item))
        for item in (
            f"profile {record.get('profile')}", record.get("status"), f"{record.get('wall_time_s', 0):.1f} s",
            f"seed {record.get('seed')}", f"device {record.get('device')}", record.get("started_at"),
        )
    )
    parts = [f'<div class="run"><h3>{title}</h3><p class="meta">{meta}</p>']
    rows = flatten_metrics(record.get("metrics") or {})
    if rows:
        parts.append("<table><tr><th>metric</th><th>value</th></tr>")
        parts.extend(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
        parts.append("</table>")
    figures = []
    for artifact in record.get("artifacts") or []:
        target = folder / artifact["path"]
        rel = os.path.relpath(target, root).replace(os.sep, "/")
        if target.exists():
            figures.append(_artifact_html(rel, artifact.get("caption", "")))
        else:
            figures.append(f'<p class="missing">missing: {html.escape(rel)}</p>')
    parts.append(f'<div class="artifacts">{"".join(figures)}</div></div>')
    return "".join(parts)


def _started_at(record_path: Path) -> str:
    try:
        return str(json.loads(record_path.read_text(encoding="utf-8")).get("started_at") or "")
    except (OSError, json.JSONDecodeError):
        return ""


def build_gallery(root: Path | None = None) -> Path:
    """Write <root>/index.html and return its path."""
    root = Path(root or outputs_root())
    root.mkdir(parents=True, exist_ok=True)
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in EXPERIMENTS)
    sections = []
    for experiment in (*EXPERIMENTS, *others):
        records = sorted((root / experiment).rglob("run.json")) if (root / experiment).is_dir() else []
        # Runs in the order they ran (the pipeline's order), not alphabetically.
        records = sorted((r for r in records if "checkpoints" not in r.parts), key=lambda r: (_started_at(r), str(r)))
        body = "".join(_run_html(r, root) for r in records) or '<p class="missing">not run yet</p>'
        sections.append(f'<section id="{experiment}"><h2>{experiment}</h2>{body}</section>')
    nav = " ".join(f'<a href="#{name}">{name}</a>' for name in (*EXPERIMENTS, *others))
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>generative-lab results</title>"
        f"<style>{_STYLE}</style></head><body><h1>generative-lab results</h1>"
        f"<nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )
    return atomic_write_text(root / "index.html", page)


if __name__ == "__main__":
    print(build_gallery(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
