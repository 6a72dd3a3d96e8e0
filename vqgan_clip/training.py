"""What train_clip.py and train_vqgan.py share: the start of a run, the resumable step loop, the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from lab import start_run
from lab.checkpoint import InterruptGuard
from lab.paths import REPO_ROOT


def start(scope: dict, argv, check_settings: Callable) -> tuple:
    """(run, torch device) of a trainer whose constants are `scope`, its settings checked first."""
    run = start_run("vqgan_clip", scope, argv, framework="torch", checkpoints=True)
    check_settings(run.cfg)
    return run, torch.device(run.device)


def run_steps(cfg, ckpt, progress: dict, desc: str, one_step: Callable, save: Callable[[int, float], None]) -> bool:
    """one_step(step, bar) for the steps not yet done; save(steps done, seconds so far) every CHECKPOINT_EVERY
    steps, at the end and on Ctrl+C (which also stops the loop). Adds the time and the step count to
    progress; returns whether the run was interrupted."""
    started = time.time()
    with InterruptGuard() as guard, tqdm(range(ckpt.step, cfg.STEPS), initial=ckpt.step, total=cfg.STEPS,
                                          desc=desc) as bar:
        for step in bar:
            one_step(step, bar)
            if (step + 1) % cfg.CHECKPOINT_EVERY == 0 or step + 1 == cfg.STEPS or guard.requested:
                save(step + 1, progress["seconds"] + time.time() - started)
            if guard.requested:
                break
    progress["seconds"] += time.time() - started
    progress["steps"] = len(progress["losses"])
    return guard.requested


def ship_folder(cfg) -> Path:
    """SHIP_DIR (relative to the repository), created."""
    target = Path(cfg.SHIP_DIR) if Path(cfg.SHIP_DIR).is_absolute() else REPO_ROOT / cfg.SHIP_DIR
    target.mkdir(parents=True, exist_ok=True)
    return target


def finish(run, metrics: dict, interrupted: bool, ship: Callable[[], Path]) -> dict:
    """Print the metrics, ship() the model when SHIP is set (its size joins the metrics), finish the run."""
    for name, value in metrics.items():
        print(f"  {name}: {value}")
    if run.cfg.SHIP:
        metrics["shipped_mb"] = ship().stat().st_size / 1e6
    run.finish(metrics, status="interrupted" if interrupted else "complete")
    return metrics
