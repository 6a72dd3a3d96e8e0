"""Speed and memory of the VQGAN+CLIP loop, ours against the reference's. Run: python -m vqgan_clip.bench [--quick]

Iterations per second and peak memory of our loop (loop.generate) and the reference's (reference.py)
on the same random-weight f16_16384 VQGAN and ViT-B/32-sized CLIP (bench_models.py), per image size
and CUTN, in float32 and on a GPU also bf16 autocast. On the CPU each configuration runs in a
fresh process, so its peak RSS is its own. Writes bench.md (or TABLE) and bench.json; the GPU run:
vqgan_clip/gpu_bench.sh OUTDIR.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from lab import exit_on_lab_error, start_run
from vqgan_clip.bench_models import build_models, measure, measure_in_fresh_process

# -----------------------------------------------------------------------------
# Constants.
SIZES = [256, 512]          # square image sides in pixels (goal: 256x256 and 512x512)
CUTNS = [32, 64]            # cutouts per iteration (goal: 32 and 64; the Colab uses 64)
LOOPS = ["ours", "reference"]  # loop.generate, and the reference loop restated in reference.py
REPEATS = 5                 # timed iterations per configuration (the median is reported) {> 0}
WARMUP = 2                  # untimed iterations first (allocator, kernels, caches) {>= 0}
MIXED_PRECISION = "auto"    # "auto": also bfloat16 autocast on a GPU; "off": float32 only
CUT_METHOD = "updated"      # the cutout augmentations of both loops (loop.CUT_METHODS)
TIME_LIMIT = 0              # seconds; configurations not started by then are skipped (0: no limit) {>= 0}
TABLE = ""                  # also write the markdown table here ("" = only bench.md in the run's folder)
SEED = 0
DEVICE = "auto"             # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"SIZES": [256], "CUTNS": [32], "REPEATS": 2, "WARMUP": 1}
DRY_RUN = {"SIZES": [64], "CUTNS": [2], "REPEATS": 1, "WARMUP": 0}
# -----------------------------------------------------------------------------


def run_all(run) -> list[dict]:
    cfg = run.cfg
    device = run.device
    precisions = [False] + ([True] if device.startswith("cuda") and cfg.MIXED_PRECISION != "off" else [])
    models = build_models(device) if device.startswith("cuda") else None
    results, started = [], time.time()
    for bf16 in precisions:
        for size in cfg.SIZES:
            for cutn in cfg.CUTNS:
                for kind in cfg.LOOPS:
                    if cfg.TIME_LIMIT and time.time() - started > cfg.TIME_LIMIT:
                        print(f"  {kind} {size}px cutn {cutn}{' bf16' if bf16 else ''}: skipped (TIME_LIMIT)")
                        continue
                    try:
                        result = (measure(kind, size, cutn, cfg.REPEATS, cfg.WARMUP, device, bf16, cfg.CUT_METHOD,
                                          models) if models else
                                  measure_in_fresh_process(kind, size, cutn, cfg.REPEATS, cfg.WARMUP, device,
                                                           cfg.CUT_METHOD))
                    except Exception as error:
                        result = {"loop": kind, "size": size, "cutn": cutn, "bf16": bf16,
                                  "error": f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"}
                        if device.startswith("cuda"):
                            torch.cuda.empty_cache()
                    results.append(result)
                    print("  " + json.dumps(result), flush=True)
    return results


def markdown_table(results: list[dict], device_name: str) -> str:
    lines = [f"Device: {device_name}; torch {torch.__version__}. Median of the timed iterations.", "",
             "| loop | image | CUTN | precision | iterations / s | s / iteration | peak memory | ours vs reference |",
             "|---|---|---|---|---|---|---|---|"]
    by_key = {(r["loop"], r["size"], r["cutn"], r["bf16"]): r for r in results}
    for r in results:
        precision = "bf16 autocast" if r["bf16"] else "float32"
        if "error" in r:
            lines.append(f"| {r['loop']} | {r['size']}x{r['size']} | {r['cutn']} | {precision} | {r['error']} | | | |")
            continue
        memory = f"{r['peak_vram_mb']:.0f} MiB VRAM" if "peak_vram_mb" in r else f"{r['peak_rss_mb']:.0f} MiB RSS"
        other = by_key.get(("reference", r["size"], r["cutn"], r["bf16"]))
        ratio = (f"{other['seconds_per_iteration'] / r['seconds_per_iteration']:.2f}x"
                 if r["loop"] == "ours" and other and "error" not in other else "")
        lines.append(f"| {r['loop']} | {r['size']}x{r['size']} | {r['cutn']} | {precision} | "
                     f"{r['iterations_per_second']:.2f} | {r['seconds_per_iteration']:.3f} | {memory} | {ratio} |")
    return "\n".join(lines) + "\n"


@exit_on_lab_error
def main(argv=None):
    run = start_run("vqgan_clip", globals(), argv, framework="torch", subdir="bench")
    device_name = torch.cuda.get_device_name() if run.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"VQGAN f16_16384 + ViT-B/32-sized CLIP (random weights) on {device_name}")
    results = run_all(run)
    table = markdown_table(results, device_name)
    print(table)
    run.path("bench.md").write_text(table)
    if run.cfg.TABLE:
        Path(run.cfg.TABLE).write_text(table)
    run.path("bench.json").write_text(json.dumps({"device": device_name, "results": results}, indent=2) + "\n")
    run.finish({"results": results})
    return results


if __name__ == "__main__":
    main()
