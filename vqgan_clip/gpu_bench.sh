#!/usr/bin/env bash
# The VQGAN+CLIP GPU benchmark for the lead's GPU machine (python3 with torch, numpy, scipy, pillow,
# imageio, tqdm, pyyaml; no open_clip, kornia or weights needed).
#
#   vqgan_clip/gpu_bench.sh OUTDIR [extra --set/--quick arguments]
#
# At 256x256 and 512x512, CUTN 32 and 64, float32 and bfloat16 autocast: iterations/s and peak
# VRAM of our loop (vqgan_clip/loop.py) and of the reference loop restated in vqgan_clip/reference.py,
# on the same random weights (the f16_16384 VQGAN and a ViT-B/32-sized CLIP, built by
# vqgan_clip/bench_models.py). Writes OUTDIR/vqgan_clip_gpu_bench.md (the table),
# OUTDIR/vqgan_clip_gpu_bench.log and OUTDIR/outputs/vqgan_clip/bench/{bench.json,run.json}.
# Configurations not started within TIME_LIMIT (120 s) are skipped, so the whole run ends in ~150 s.
set -euo pipefail
OUT="${1:?usage: vqgan_clip/gpu_bench.sh OUTDIR [extra arguments]}"
shift
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" LAB_OUTPUT_ROOT="$OUT/outputs" "$PYTHON" -m vqgan_clip.bench \
    --set TIME_LIMIT=120 --set TABLE="$OUT/vqgan_clip_gpu_bench.md" "$@" 2>&1 | tee "$OUT/vqgan_clip_gpu_bench.log"
