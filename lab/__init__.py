"""Run plumbing shared by the five experiments of generative-lab.

Everything here is framework-neutral: torch and tensorflow are imported lazily, inside the
functions that need them, so `import lab` stays cheap and the TensorFlow experiment never pays
for torch (nor the other way round).

The pieces:
- `lab.constants`  - the ruled constants block of a script, its range tags and --help, `--quick`, `--set NAME=VALUE`.
- `lab.run`        - `start_run()`: outputs folder, seed, device, run.json with metrics and the machine's provenance.
- `lab.checkpoint` - atomic writing (a full disk is one line), the one resume (lock, fallback, RNG states),
                     Ctrl+C and SIGTERM that save, shared caches built under their own lock.
- `lab.scalars`    - training curves: TensorBoard event files and scalars.csv (`run.log_scalars`).
- `lab.media`      - frames to mp4 (imageio-ffmpeg, H.264) and GIF.
- `lab.gallery`    - outputs/index.html from every run.json.
- `lab.pipeline`   - the runner behind ./run.sh.
- `lab.robustness` - reruns the quick claims under other seeds, threads and instruction sets; claim x environment table.
- `lab.executor`   - independent cells (sweep points, prompts, experiments) here or as Ray tasks that survive lost workers.
- `lab.schedules`  - the cosine learning-rate decay the trainers share.
"""

from lab.errors import LabError, exit_on_lab_error
from lab.run import Run, start_run

__all__ = ["LabError", "Run", "exit_on_lab_error", "start_run"]
