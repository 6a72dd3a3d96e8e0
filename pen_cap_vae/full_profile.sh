#!/usr/bin/env bash
# The full profile of pen_cap_vae end to end on a GPU machine (issue 16, item 3), and its timings.
#
#   pen_cap_vae/gpu_full.sh OUTDIR             # the article's sizes: VAE 3000 steps, a 5300-iteration date at 360x640
#   pen_cap_vae/gpu_full.sh OUTDIR --dry-run   # the same steps at the dry-run sizes (seconds; to check the script)
#
# Run from the repository root. Needs python3 with torch, numpy, scipy, matplotlib, pillow, tqdm,
# scikit-image and tensorboard; imageio-ffmpeg is optional (without it there is no mp4, which is
# not copied anyway). Everything is written under a temporary LAB_OUTPUT_ROOT; OUTDIR receives only:
#   date_track.png          the date track (likeness to each picture, the cap's position, s(t))
#   date_every10.gif        every 10th frame of the date, shrunk to fit 3 MB
#   eeg_probe1.jpg          the EEG of probe 1 in the last window (the article's encephalograms/1/...)
#   eeg_probe1_spectrum.jpg its smoothed log spectrum (the article's encephalograms_log_spectrae/1/...)
#   run_<script>.json       the run.json of draw_pictures, train, test, source_maker and bench
# and prints seconds per VAE step and per recoder iteration, float32 and bfloat16 (from the bench).
set -euo pipefail
OUTDIR=${1:?usage: pen_cap_vae/gpu_full.sh OUTDIR [--dry-run]}
PROFILE=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH=. MPLBACKEND=Agg
LAB_OUTPUT_ROOT=$(mktemp -d -t pen_cap_full.XXXXXX)
export LAB_OUTPUT_ROOT
OUT="$LAB_OUTPUT_ROOT/pen_cap_vae"
started=$(date +%s)

step() {  # step <script> [args...]: one script, timed
    local begin=$SECONDS
    echo "== $PYTHON -m pen_cap_vae.$* $PROFILE"
    "$PYTHON" -m "pen_cap_vae.$@" $PROFILE
    echo "== pen_cap_vae.$1 took $((SECONDS - begin)) s"
}

step draw_pictures
step train
step test
step source_maker --set GIF_EVERY=10 --set GIF_MAX_BYTES=3000000
# Timings at the article's sizes (the bench's defaults), float32 and bfloat16 autocast, 3 repeats.
if [ -z "$PROFILE" ]; then step bench --set REPEATS=3; else step bench; fi

cp "$OUT/test/date.png" "$OUTDIR/date_track.png"
cp "$OUT/source_maker/preview.gif" "$OUTDIR/date_every10.gif"
eeg=$(ls "$OUT/test/encephalograms/1/" | sort -t_ -k6 -n | tail -1)
cp "$OUT/test/encephalograms/1/$eeg" "$OUTDIR/eeg_probe1.jpg"
cp "$OUT/test/encephalograms_log_spectrae/1/$eeg" "$OUTDIR/eeg_probe1_spectrum.jpg"
for script in draw_pictures train test source_maker bench; do
    cp "$OUT/$script/run.json" "$OUTDIR/run_$script.json"
done

"$PYTHON" - "$OUTDIR" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
train, test, bench = (json.loads((out / f"run_{n}.json").read_text()) for n in ("train", "test", "bench"))
m = bench["metrics"]
print(f"device: {bench['device']}; torch {bench['versions'].get('torch', '?')}")
print(f"VAE step (bench, 3 pictures at {bench['constants']['IMAGE_HEIGHT']}x{bench['constants']['IMAGE_WIDTH']}): "
      f"float32 {m['vae_step_s']:.4f} s, bf16 autocast {m['vae_step_bf16_autocast_s']:.4f} s "
      f"({m['vae_speedup_bf16_autocast']:.2f}x)")
print(f"recoder iteration (bench, with the frame's decode): float32 {m['recoder_iteration_bare_s']:.4f} s, "
      f"bf16 autocast {m['recoder_iteration_bare_bf16_autocast_s']:.4f} s ({m['recoder_speedup_bf16_autocast']:.2f}x); "
      f"with EEG and frames {m['recoder_iteration_eeg_and_frames_s']:.4f} s")
steps, iterations = train["metrics"]["steps"], test["metrics"]["iterations"]
print(f"train: {steps} steps in {train['wall_time_s']:.1f} s ({train['wall_time_s'] / max(steps, 1):.4f} s per step, "
      f"all included); PSNR {train['metrics']['psnr_db']}")
print(f"test: {iterations} iterations in {test['wall_time_s']:.1f} s ({test['wall_time_s'] / max(iterations, 1):.4f} s "
      f"per iteration, frames, track and EEG plots included)")
print("date track: " + json.dumps({k: test["metrics"].get(k) for k in ("phases", "plateau_rhythm", "culmination_dips")}))
for claim in train.get("claims", []) + test.get("claims", []):
    print(f"claim: {claim['claim']}: {claim['measured']} (reproduced: {claim['reproduced']})")
EOF
rm -rf "$LAB_OUTPUT_ROOT"
echo "== done in $(( $(date +%s) - started )) s; results in $OUTDIR:"
ls -l "$OUTDIR"
