"""`start_run()`: the common start and end of every experiment script.

    run = start_run("sphere_mapping", globals(), argv, framework="torch")
    cfg = run.cfg                        # the resolved constants: cfg.STEPS, cfg.LEARNING_RATE
    ...
    run.add_artifact(run.path("loss.png"), "loss curve")
    run.finish({"coverage": 0.97})       # writes run.json for the gallery

Command line shared by all scripts: --quick, --dry-run, --set NAME=VALUE (repeatable), --fresh
(ignore existing checkpoints); `--help` lists every constant with its value, type, range and comment.
`python -m <experiment>.<script>` and `python <script>.py` run the same way, into the same outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lab.checkpoint import atomic_write_text, lock_folder
from lab.constants import Resolved, Variants, describe_constants, resolve_layers
from lab.errors import LabError
from lab.executor import CellRun
from lab.paths import check_path_settings, outputs_root
from lab.scalars import ScalarLog

# Distributions whose versions go into run.json when their module is loaded.
_TRACKED = {
    "numpy": "numpy", "torch": "torch", "torchvision": "torchvision", "tensorflow": "tensorflow-cpu",
    "keras": "keras", "open_clip": "open-clip-torch", "scipy": "scipy", "sklearn": "scikit-learn",
    "skimage": "scikit-image", "numba": "numba", "llvmlite": "llvmlite", "threadpoolctl": "threadpoolctl",
}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for module, dist in _TRACKED.items():
        for name in (dist, module) if module in sys.modules else ():
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[dist] = importlib.metadata.version(name)
                break
    return versions


# Environment variables that change which kernels run or on how many threads (run.json records them).
NUMERICS_ENVIRONMENT = (
    "ATEN_CPU_CAPABILITY", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_NUM_THREADS", "NUMBA_OPT",
    "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "MKL_ENABLE_INSTRUCTIONS",
    "NPY_DISABLE_CPU_FEATURES", "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG",
    "LAB_SEED_OFFSET", "LAB_TORCH_THREADS",
)


def _cpuinfo(prefixes: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `prefixes`, else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(prefixes):
                return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    model = _cpuinfo(("model name",))
    return model.strip() if model is not None else platform.processor() or platform.machine()


def _cpu_vector_extensions() -> list[str]:
    """The host's SIMD families (avx, avx2, avx512f, amx...), from /proc/cpuinfo's flags."""
    flags = (_cpuinfo(("flags", "Features")) or "").split()
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "neon", "asimd", "sve")))


def _torch_provenance(torch: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
    }
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda)
    return info


def _numba_provenance(numba: Any) -> dict[str, Any]:
    from llvmlite import binding
    host = binding.get_host_cpu_name()
    return {"target_cpu": numba.config.CPU_NAME or host, "host_cpu": host,
            "threads": numba.get_num_threads(), "threading_layer": numba.config.THREADING_LAYER}


def _tensorflow_provenance(tf: Any) -> dict[str, Any]:
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {
        # oneDNN is on by default on x86 Linux since TensorFlow 2.9; TF_ENABLE_ONEDNN_OPTS=0 turns it off.
        "onednn": "on (default)" if setting is None else ("off" if setting.strip() in ("0", "false", "False") else "on"),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "gpus": [gpu.name for gpu in tf.config.list_physical_devices("GPU")],
    }


def _numpy_provenance() -> dict[str, Any]:
    """numpy's SIMD baseline and dispatched extensions, and the BLAS/OpenMP pools (OpenBLAS's kernels)."""
    info: dict[str, Any] = {}
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath
    if hasattr(umath, "__cpu_features__"):
        info["simd_baseline"] = list(umath.__cpu_baseline__)
        info["simd_dispatched"] = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    info["threadpools"] = [{key: pool[key] for key in keys if pool.get(key) is not None} for pool in threadpool_info()]
    return info


def machine_provenance() -> dict[str, Any]:
    """What decides the numbers here: CPU, instruction sets and threads of the frameworks loaded, GPU, environment."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "machine": platform.machine(), "system": platform.platform(terse=True),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "vector_extensions": _cpu_vector_extensions(),
        "environment": {name: os.environ[name] for name in NUMERICS_ENVIRONMENT if name in os.environ},
    }
    readers = {"torch": _torch_provenance, "numba": _numba_provenance, "tensorflow": _tensorflow_provenance}
    for module, reader in readers.items():
        if module in sys.modules:
            try:
                info[module] = reader(sys.modules[module])
            except Exception as error:  # a half-initialised framework must not lose the run's record
                info[module] = {"error": f"{type(error).__name__}: {error}"}
    if "numpy" in sys.modules:
        info["numpy"] = _numpy_provenance()
    return info


def environment_overrides(constants: dict[str, Any]) -> list[str]:
    """`--set` overrides from the environment (how lab.robustness reruns every script): LAB_SEED_OFFSET=k
    shifts SEED by k (not a drawn one, SEED=-1), LAB_TORCH_THREADS=n sets TORCH_THREADS."""
    overrides = []
    for variable, constant in (("LAB_SEED_OFFSET", "SEED"), ("LAB_TORCH_THREADS", "TORCH_THREADS")):
        text = os.environ.get(variable, "").strip()
        if not text or constant not in constants:
            continue
        try:
            value = int(text)
        except ValueError:
            raise LabError(f"environment variable {variable}={text!r} is not an integer; unset it or give a "
                           "whole number") from None
        if constant == "SEED":
            if int(constants["SEED"]) == -1:
                continue
            value += int(constants["SEED"])
        overrides.append(f"{constant}={value}")
    return overrides


def to_jsonable(value: Any) -> Any:
    """numpy/torch scalars and arrays, paths and tuples into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if isinstance(value, float) and value != value:  # NaN is not valid JSON
        return None
    return value


def seed_everything(seed: int, framework: str | None = None) -> None:
    """Seed Python, NumPy and the framework the script uses (and any other already imported)."""
    random.seed(seed)
    import numpy as np
    np.random.seed(seed % 2**32)
    if framework == "torch" or "torch" in sys.modules:
        import torch
        torch.manual_seed(seed)
    if framework == "tensorflow" or "tensorflow" in sys.modules:
        import tensorflow as tf
        tf.random.set_seed(seed)


def resolve_device(requested: str, framework: str | None) -> str:
    """"auto" picks CUDA (or a TensorFlow GPU) when there is one, else the CPU; else a device this machine has."""
    requested = (requested or "auto").strip().lower()
    if framework == "torch":
        import torch
        if requested == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(requested)
        except (RuntimeError, ValueError):
            raise LabError(f"DEVICE {requested!r} is not a torch device; use auto, cpu or cuda") from None
        xpu = getattr(torch, "xpu", None)
        present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(),
                   "xpu": xpu is not None and xpu.is_available()}
        if device.type not in present:  # meta, hpu, privateuseone...: nothing this project can train on
            raise LabError(f"DEVICE {requested!r} is not a device these scripts run on; use auto, cpu or cuda")
        if not present[device.type]:
            raise LabError(f"DEVICE is {requested} but this machine has no {device.type} device; "
                           "use --set DEVICE=auto or cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise LabError(f"DEVICE is {requested} but this machine has {torch.cuda.device_count()} CUDA "
                           f"device(s), numbered from 0; use --set DEVICE=cuda:0 or auto")
        return requested
    if framework == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        if requested == "auto":
            return "gpu" if gpus else "cpu"
        if requested == "cpu":
            tf.config.set_visible_devices([], "GPU")
            return "cpu"
        if requested in ("gpu", "cuda"):
            if not gpus:
                raise LabError("DEVICE is gpu but TensorFlow sees no GPU; use --set DEVICE=auto or cpu")
            return "gpu"
        raise LabError(f"DEVICE {requested!r} is not one of auto, cpu, gpu")
    if requested not in ("auto", "cpu"):  # a script without a framework computes on the CPU only
        raise LabError(f"DEVICE {requested!r}: this script runs on the CPU only; use auto or cpu")
    return "cpu"


def apply_torch_threads(threads: int, framework: str | None, device: str) -> None:
    """TORCH_THREADS (0: torch's default) for the CPU: small networks on a busy machine run faster
    on one thread than on two, whose OpenMP workers spin-wait for each other."""
    if framework != "torch" or not threads:
        return
    if not isinstance(threads, int) or threads < 0:
        raise LabError(f"TORCH_THREADS must be 0 (torch's default) or a positive count, got {threads!r}")
    if device == "cpu":
        import torch
        torch.set_num_threads(threads)


def start_cell(constants: dict[str, Any], folder: Path | str, curves: Path | str, framework: str | None,
               device: str = "cpu", profile: str = "quick") -> CellRun:
    """A lab.executor cell's run: seeded and threaded as start_run does for a script (SEED, TORCH_THREADS), so a
    cell with a script's constants trains what `--set SEED=s` trains; checkpoints in `folder`, curves in `curves`."""
    seed_everything(int(constants["SEED"]), framework)
    apply_torch_threads(constants.get("TORCH_THREADS", 0), framework, device)
    return CellRun(constants, Path(folder), Path(curves), device=device, profile=profile)


@dataclass
class Run:
    """One run of one script: its constants, folders, seed, device and record."""

    experiment: str
    script: str
    profile: str
    constants: dict[str, Any]
    seed: int
    device: str
    out_dir: Path
    fresh: bool = False
    sources: dict[str, str] = field(default_factory=dict)  # constant -> the layer its value came from
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, str]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    _scalars: ScalarLog | None = None

    @property
    def cfg(self) -> SimpleNamespace:
        return SimpleNamespace(**self.constants)


    def path(self, *parts: str) -> Path:
        """A file in this run's output folder; its parent folders are created."""
        target = self.out_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    @property
    def checkpoint_dir(self) -> Path:
        """outputs/<experiment>/checkpoints/<profile>[-<RUN_NAME>]: profiles and named runs never share."""
        return checkpoint_folder(self.experiment, self.profile, self.constants)

    def checkpoint_path(self, name: str) -> Path:
        """A file in the checkpoint folder, which this run locks: a second run on it stops at once."""
        lock_checkpoints(self.checkpoint_dir)
        return self.checkpoint_dir / name

    def log_scalars(self, step: int, **values: float) -> None:
        """Curves to watch while it runs: TensorBoard events and scalars.csv in the run's folder."""
        if self._scalars is None:
            self._scalars = ScalarLog(self.out_dir)
        self._scalars.log(step, **values)

    def add_claim(self, claim: str, measured: str, reproduced: bool | None, full_profile: str = "") -> None:
        """An article claim, the figure this run measured, and whether it reproduced it (None: not run)."""
        entry = {"claim": claim, "measured": measured,
                 "reproduced": None if reproduced is None else bool(reproduced), "full_profile": full_profile}
        self.claims = [c for c in self.claims if c["claim"] != claim] + [entry]

    def add_artifact(self, path: Path | str, caption: str = "") -> None:
        """Show this file in the gallery (images, mp4/gif, plotly html, anything linkable)."""
        path = Path(path)
        rel = os.path.relpath(path.resolve(), self.out_dir.resolve())
        entry = {"path": rel.replace(os.sep, "/"), "caption": caption}
        self.artifacts = [a for a in self.artifacts if a["path"] != entry["path"]] + [entry]

    def finish(self, metrics: dict[str, Any] | None = None, status: str = "complete") -> Path:
        """Write run.json (constants, seed, device, versions, machine, wall time, metrics, artifacts)."""
        if metrics:
            self.metrics.update(metrics)
        record = {
            "experiment": self.experiment, "script": self.script, "profile": self.profile, "status": status,
            "started_at": dt.datetime.fromtimestamp(self.started).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - self.started, 2), "seed": self.seed, "device": self.device,
            "constants": self.constants, "constant_sources": self.sources,
            "machine": machine_provenance(),  # first: it may load threadpoolctl, whose version goes below
            "versions": library_versions(),
            "metrics": self.metrics, "claims": self.claims, "artifacts": self.artifacts,
        }
        if self._scalars is not None:
            self._scalars.close()
            self._scalars = None
        target = self.path("run.json")
        atomic_write_text(target, json.dumps(to_jsonable(record), indent=2) + "\n")
        print(f"[{self.experiment}.{self.script}] {status} in {record['wall_time_s']:.1f} s; record: {target}")
        return target


def checkpoint_folder(experiment: str, profile: str, constants: dict[str, Any]) -> Path:
    run_name = constants.get("RUN_NAME") or ""
    return outputs_root() / experiment / "checkpoints" / (f"{profile}-{run_name}" if run_name else profile)


def lock_checkpoints(folder: Path) -> None:
    """lab.checkpoint.lock_folder, with a clear error when the folder cannot be written."""
    try:
        lock_folder(folder)
    except OSError as error:
        raise LabError(f"cannot write checkpoints to {folder} ({error.strerror or error}); make it writable "
                       "or set LAB_OUTPUT_ROOT to a writable folder") from None


def _script_name(namespace: dict[str, Any]) -> str:
    """The script's module name: from `python -m a.b` its spec, from `python b.py` its file."""
    spec = namespace.get("__spec__")
    name = spec.name if spec is not None else namespace.get("__name__", "script")
    if name == "__main__" and namespace.get("__file__"):
        name = Path(namespace["__file__"]).stem
    return name.rsplit(".", 1)[-1]


def build_parser(namespace: dict[str, Any], prog: str, resolved: Resolved | None = None,
                 variants: Variants | None = None) -> argparse.ArgumentParser:
    """The shared command line; its --help lists the constants as this command line resolves them."""
    listing = describe_constants(namespace, resolved, variants)
    parser = argparse.ArgumentParser(
        prog=prog, description=(namespace.get("__doc__") or "").strip().split("\n\n")[0],
        epilog=("constants (override with --set NAME=VALUE; --set beats the profile, which beats the variant, "
                f"which beats the default):\n{listing}"),
        formatter_class=argparse.RawDescriptionHelpFormatter, add_help=resolved is not None,
    )
    parser.add_argument("--quick", action="store_true", help="the quick profile (the script's QUICK dict)")
    parser.add_argument("--dry-run", action="store_true", help="a seconds-long pass through every code path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a constant (repeatable)")
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    return parser


def ensure_writable(folder: Path) -> None:
    """Make `folder` and prove it takes files, before any work is done that could not be saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise LabError(f"cannot write to the outputs folder {folder} ({error.strerror or error}); make it "
                       "writable, or set LAB_OUTPUT_ROOT to a folder you can write to") from None


def start_run(experiment: str, namespace: dict[str, Any], argv: list[str] | None = None, framework: str | None = None,
              subdir: str | Callable[[SimpleNamespace], str] | None = None, variants: Variants | None = None,
              checkpoints: bool = False) -> Run:
    """Parse the command line, resolve constants, seed, pick the device, make the output folder.

    `namespace` is the script's globals() (read, never modified). `subdir` replaces the folder name
    (the script's), maybe as a function of the constants; RUN_NAME adds a suffix. `variants`: see
    lab.constants.Variants. `checkpoints=True` locks the checkpoint folder before any work."""
    script = _script_name(namespace)
    prog = f"python -m {experiment}.{script}"
    # Resolved once without --help, so that --help shows the values this command line would run with.
    known, _ = build_parser(namespace, prog).parse_known_args(argv)
    profile = "dry_run" if known.dry_run else "quick" if known.quick else "full"
    resolved = resolve_layers(namespace, known.overrides, profile, variants)
    from_environment = environment_overrides(resolved.values)  # LAB_SEED_OFFSET, LAB_TORCH_THREADS
    if from_environment:
        print(f"from the environment: --set {' --set '.join(from_environment)}")
        resolved = resolve_layers(namespace, [*known.overrides, *from_environment], profile, variants)
    args = build_parser(namespace, prog, resolved, variants).parse_args(argv)
    constants = resolved.values
    check_path_settings(constants)
    folder = subdir(SimpleNamespace(**constants)) if callable(subdir) else (subdir or script)
    if constants.get("RUN_NAME"):
        folder = f"{folder}-{constants['RUN_NAME']}"
    out_dir = outputs_root() / experiment / folder
    ensure_writable(out_dir)
    if checkpoints:
        lock_checkpoints(checkpoint_folder(experiment, profile, constants))

    seed = int(constants.get("SEED", 0))
    if seed == -1:
        seed = random.SystemRandom().randrange(2**31)
        print(f"SEED=-1: drew seed {seed}; repeat this run with --set SEED={seed}")
    seed_everything(seed, framework)
    device = resolve_device(str(constants.get("DEVICE", "auto")), framework)
    apply_torch_threads(constants.get("TORCH_THREADS", 0), framework, device)
    print(f"[{experiment}.{script}] profile={profile} seed={seed} device={device} outputs={out_dir}")
    return Run(experiment, script, profile, constants, seed, device, out_dir, fresh=args.fresh,
               sources=resolved.sources)
