#!/usr/bin/env bash
# The full profile of pen_cap_vae end to end, on a GPU or on the CPU, and its timings.
#
#   pen_cap_vae/full_profile.sh OUTDIR                  # the article's sizes: VAE 3000 steps, a 5300-iteration date at 360x640
#   pen_cap_vae/full_profile.sh OUTDIR --dry-run        # the same steps at the dry-run sizes (seconds; to check the script)
#   pen_cap_vae/full_profile.sh OUTDIR --set TORCH_THREADS=2 --set MIXED_PRECISION=true   # options for the scripts
#
# Run from anywhere; the scripts run from the repository root. Needs python3 (or $PYTHON) with torch,
# numpy, scipy, matplotlib, pillow, tqdm, scikit-image and tensorboard; imageio-ffmpeg is optional
# (without it there is no mp4, which is not copied anyway). Each `--set NAME=VALUE` goes to every
# script whose constants block has NAME (RUN_NAME to all), after the script's own settings here.
#
# Outputs: under $LAB_OUTPUT_ROOT when it is set (kept: it holds the checkpoints, so a rerun with the
# same LAB_OUTPUT_ROOT resumes training and the date where they stopped), else under a temporary
# folder, removed when every step succeeded and kept (its path printed) when one failed. OUTDIR
# receives, as soon as the step that makes each one has finished (also when it failed or was
# interrupted, if it wrote the file):
#   run_<script>.json       the run.json of draw_pictures, train, test, source_maker and bench
#   date_track.png          the date track (likeness to each picture, the cap's position, s(t))
#   eeg_probe1.jpg          the EEG of probe 1 in the last window (the article's encephalograms/1/...)
#   eeg_probe1_spectrum.jpg its smoothed log spectrum (the article's encephalograms_log_spectrae/1/...)
#   date_every10.gif        every 10th frame of the date, shrunk to fit 3 MB
# and prints seconds per VAE step and per recoder iteration, float32 and bfloat16 (from the bench).
# A failed step does not stop the others that do not need it (source_maker and bench run after a
# failed one of each other); the exit status is that of the first failed step. Ctrl+C stops
# after the running step, whose results are copied.
set -uo pipefail
usage="usage: pen_cap_vae/full_profile.sh OUTDIR [--dry-run] [--set NAME=VALUE ...]"
OUTDIR=${1:?$usage}
shift
PROFILE=()
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) PROFILE=(--dry-run) ;;
        --set) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; EXTRA+=("$2"); shift ;;
        --set=*) EXTRA+=("${1#--set=}") ;;
        *) echo "unknown option $1; $usage" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUTDIR" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
export PYTHONPATH=. MPLBACKEND=Agg
if [ -n "${LAB_OUTPUT_ROOT:-}" ]; then
    TEMPORARY=""
else
    LAB_OUTPUT_ROOT=$(mktemp -d -t pen_cap_full.XXXXXX) || exit 1
    TEMPORARY=$LAB_OUTPUT_ROOT
fi
export LAB_OUTPUT_ROOT
echo "== outputs and checkpoints under $LAB_OUTPUT_ROOT${TEMPORARY:+ (temporary)}; results into $OUTDIR"
OUT="$LAB_OUTPUT_ROOT/pen_cap_vae"
RUN_NAME=""
for setting in "${EXTRA[@]}"; do
    case "$setting" in RUN_NAME=*) RUN_NAME=${setting#RUN_NAME=} ;; esac
done
SUFFIX=${RUN_NAME:+-$RUN_NAME}
started=$(date +%s)
failed=0
interrupted=0
# Ctrl+C reaches the running script too, which saves its checkpoint and writes its run.json: copy
# that, then stop (a rerun with the same LAB_OUTPUT_ROOT resumes).
trap 'interrupted=1' INT

constants() {  # constants <script>: the names in the script's constants block (between its two ruled lines)
    awk '/^# --------------------+$/ { inside = !inside; next } inside && /^[A-Z][A-Z0-9_]* *=/ { sub(/ *=.*/, ""); print }' \
        "pen_cap_vae/$1.py"
}

step() {  # step <script> [args...]: one script, timed, with the --set options that are its constants
    local script=$1 begin=$SECONDS status setting names
    shift
    local args=("$@")
    names=" RUN_NAME $(constants "$script" | tr '\n' ' ')"
    for setting in "${EXTRA[@]}"; do
        [[ "$names" == *" ${setting%%=*} "* ]] && args+=(--set "$setting")
    done
    echo "== $PYTHON -m pen_cap_vae.$script ${PROFILE[*]} ${args[*]}"
    "$PYTHON" -m "pen_cap_vae.$script" "${PROFILE[@]}" "${args[@]}"
    status=$?
    echo "== pen_cap_vae.$script took $((SECONDS - begin)) s (exit status $status)"
    keep "$script"
    if [ $interrupted -eq 1 ] && [ $status -eq 0 ]; then status=130; fi
    if [ $status -ne 0 ] && [ $failed -eq 0 ]; then failed=$status; fi
    return $status
}

copy() {  # copy <file> <name in OUTDIR>, if the file exists
    if [ -f "$1" ]; then cp "$1" "$OUTDIR/$2" && echo "   -> $OUTDIR/$2"; fi
}

keep() {  # keep <script>: copy what the script made into OUTDIR
    local dir="$OUT/$1$SUFFIX" eeg
    copy "$dir/run.json" "run_$1.json"
    case "$1" in
        test)
            copy "$dir/date.png" date_track.png
            eeg=$(ls "$dir/encephalograms/1/" 2>/dev/null | sort -t_ -k6 -n | tail -1)
            if [ -n "$eeg" ]; then
                copy "$dir/encephalograms/1/$eeg" eeg_probe1.jpg
                copy "$dir/encephalograms_log_spectrae/1/$eeg" eeg_probe1_spectrum.jpg
            fi ;;
        source_maker) copy "$dir/preview.gif" date_every10.gif ;;
    esac
}

if step draw_pictures && step train && step test; then
    step source_maker --set GIF_EVERY=10 --set GIF_MAX_BYTES=3000000
    # Timings at the article's sizes (the bench's defaults), float32 and bfloat16 autocast, 3 repeats.
    if [ $interrupted -eq 1 ]; then :
    elif [ ${#PROFILE[@]} -eq 0 ]; then step bench --set REPEATS=3
    else step bench; fi
fi

"$PYTHON" - "$OUTDIR" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {n: json.loads((out / f"run_{n}.json").read_text()) for n in ("train", "test", "bench")
        if (out / f"run_{n}.json").is_file()}
if "bench" in runs:
    bench = runs["bench"]
    m = bench["metrics"]
    print(f"device: {bench['device']}; torch {bench['versions'].get('torch', '?')}")
    print(f"VAE step (bench, 3 pictures at {bench['constants']['IMAGE_HEIGHT']}x{bench['constants']['IMAGE_WIDTH']}): "
          f"float32 {m['vae_step_s']:.4f} s, bf16 autocast {m['vae_step_bf16_autocast_s']:.4f} s "
          f"({m['vae_speedup_bf16_autocast']:.2f}x)")
    print(f"recoder iteration (bench, with the frame's decode): float32 {m['recoder_iteration_bare_s']:.4f} s, "
          f"bf16 autocast {m['recoder_iteration_bare_bf16_autocast_s']:.4f} s "
          f"({m['recoder_speedup_bf16_autocast']:.2f}x); with EEG and frames {m['recoder_iteration_eeg_and_frames_s']:.4f} s")
if "train" in runs:
    train = runs["train"]
    steps = train["metrics"].get("steps", 0)
    print(f"train ({train['status']}): {steps} steps in {train['wall_time_s']:.1f} s "
          f"({train['wall_time_s'] / max(steps, 1):.4f} s per step, all included); PSNR {train['metrics'].get('psnr_db')}")
if "test" in runs:
    test = runs["test"]
    iterations = test["metrics"].get("iterations", 0)
    print(f"test ({test['status']}): {iterations} iterations in {test['wall_time_s']:.1f} s "
          f"({test['wall_time_s'] / max(iterations, 1):.4f} s per iteration, frames, track and EEG plots included)")
    print("date track: " + json.dumps({k: test["metrics"].get(k) for k in
                                       ("phases", "culmination_parts", "plateau_rhythm", "culmination_dips")}))
for run in runs.values():
    for claim in run.get("claims", []):
        if run is not runs.get("bench"):
            print(f"claim: {claim['claim']}: {claim['measured']} (reproduced: {claim['reproduced']})")
PY
if [ -n "$TEMPORARY" ]; then
    if [ $failed -eq 0 ]; then
        rm -rf "$TEMPORARY"
    else
        echo "== kept $TEMPORARY: rerun with LAB_OUTPUT_ROOT=$TEMPORARY to resume where it stopped"
    fi
fi
echo "== done in $(( $(date +%s) - started )) s (exit status $failed); results in $OUTDIR:"
ls -l "$OUTDIR"
exit $failed
