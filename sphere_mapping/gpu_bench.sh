#!/usr/bin/env bash
# sphere_mapping's benchmark on a CUDA GPU: the article's 10^4-step run with model.Trainer against
# the article's loop on the same GPU (alternating, median of 3), and the full seeds table
# (4 variants x 10 seeds x 10^4 steps) with the stacked trainer. Prints the table and writes it,
# with the run's JSON record, into OUTDIR. About a minute on an H100/H200.
#
# Usage (from the repository root): sphere_mapping/gpu_bench.sh OUTDIR
# Needs python3 with torch (CUDA), numpy, tqdm, matplotlib, scipy, pillow; nothing is downloaded.
set -euo pipefail
OUTDIR=${1:?usage: sphere_mapping/gpu_bench.sh OUTDIR}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.."
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export LAB_OUTPUT_ROOT="$SCRATCH" PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" | tee "$OUTDIR/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUTDIR/device.txt" 2>/dev/null || true
# BASELINE_STEPS=2000 (scaled to 10^4): the article's loop is the slow side; the table runs once.
timeout 85 python3 -m sphere_mapping.bench --set DEVICE=cuda --set BASELINE_STEPS=2000 --set TORCH_THREADS=0 \
    2>"$OUTDIR/bench_stderr.txt" | tee "$OUTDIR/bench.txt"
cp "$SCRATCH/sphere_mapping/bench/run.json" "$OUTDIR/bench.json"
echo "wrote $OUTDIR/bench.txt and $OUTDIR/bench.json"
