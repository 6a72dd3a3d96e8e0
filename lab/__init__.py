"""Run plumbing shared by the experiments of generative-lab; torch and tensorflow are imported
lazily, so `import lab` stays cheap and no experiment pays for the other framework.

lab.run (start_run: folders, seed, device, run.json), lab.constants (the constants block, --quick,
--set), lab.checkpoint (atomic writes, resume, Ctrl+C/SIGTERM), lab.safe_load (weights that run no
code), lab.scalars (TensorBoard and scalars.csv), lab.media (mp4, GIF), lab.gallery (index.html),
lab.pipeline (./run.sh), lab.robustness (claims rerun in other environments), lab.executor (cells
here or as Ray tasks), lab.schedules (cosine decay).
"""

from lab.errors import LabError, exit_on_lab_error
from lab.run import Run, start_run

__all__ = ["LabError", "Run", "exit_on_lab_error", "start_run"]
