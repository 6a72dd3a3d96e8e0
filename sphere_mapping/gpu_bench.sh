#!/usr/bin/env bash
# sphere_mapping's benchmark on a CUDA GPU: the article's 10^4-step run with model.Trainer against
# the article's loop on the same GPU (alternating, median of 3), and the full seeds table
# (4 variants x 10 seeds x 10^4 steps) with the stacked trainer. Prints the tables and writes them,
# with the runs' JSON records, into OUTDIR. At most 300 s (two runs limited to 150 s each: on an H200
# the table advanced at 275-410 group-steps per second, about 100 s for the whole table).
#
# Usage (from the repository root): sphere_mapping/gpu_bench.sh OUTDIR
# Needs python3 with torch (CUDA), numba (the draws are made on the CPU by sphere_mapping.kernels),
# numpy, tqdm, matplotlib, scipy, pillow; nothing is downloaded.
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
# Two runs, so a slow half cannot cost the other's numbers: (1) the single 10^4-step run against
# the article's loop (alternating, median of 3; the loop's time scaled from 2000 steps), (2) the
# full table, 4 variants x 10 seeds x 10^4 steps, stacked (the single run is repeated briefly).
timeout 150 python3 -m sphere_mapping.bench --set DEVICE=cuda --set BASELINE_STEPS=2000 --set TABLE_SEEDS=0 \
    --set TORCH_THREADS=0 --set RUN_NAME=single 2>"$OUTDIR/single_stderr.txt" | tee "$OUTDIR/single.txt" || true
cp "$SCRATCH/sphere_mapping/bench-single/run.json" "$OUTDIR/single.json" 2>/dev/null || echo "single run: no record (timed out?)"
timeout 150 python3 -m sphere_mapping.bench --set DEVICE=cuda --set STEPS=1000 --set REPEATS=1 --set BASELINE_STEPS=200 \
    --set TORCH_THREADS=0 --set RUN_NAME=table 2>"$OUTDIR/table_stderr.txt" | tee "$OUTDIR/table.txt" || true
cp "$SCRATCH/sphere_mapping/bench-table/run.json" "$OUTDIR/table.json" 2>/dev/null || echo "table: no record (timed out?)"
echo "wrote $(ls "$OUTDIR" | tr '\n' ' ')into $OUTDIR"
