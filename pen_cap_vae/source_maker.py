"""Assemble the date's frames into the animation (article 000: "collect it in source_maker.py").

Run: python -m pen_cap_vae.source_maker [--quick] [--set FPS=30]   (after python -m pen_cap_vae.test)
Writes animation.mp4 (needs imageio-ffmpeg) and a preview GIF of every GIF_EVERY-th frame."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from lab import LabError, exit_on_lab_error, start_run
from lab.media import count_video_frames, write_gif, write_video
from lab.paths import outputs_root

# -----------------------------------------------------------------------------
# Constants. Edit them here or use --set.
FRAMES_DIR = ""        # the frames; "" = outputs/pen_cap_vae/test[-RUN_NAME]/frames (written by pen_cap_vae.test)
FPS = 25               # frames per second of the animation (not in the article: our choice) {> 0}
GIF_EVERY = 10         # the preview GIF keeps every n-th frame {> 0}
GIF_FPS = 10           # ... and plays at this rate {> 0}
GIF_MAX_SIDE = 320     # ... shrunk to at most this longer side {>= 16}
GIF_MAX_BYTES = 3_000_000  # ... and further, until the file is at most this big {> 0}
SEED = 0               # unused: assembling is deterministic
DEVICE = "cpu"
QUICK = {"GIF_EVERY": 5}
# -----------------------------------------------------------------------------


def find_frames(run, cfg) -> list[Path]:
    default = "test" + (f"-{cfg.RUN_NAME}" if cfg.RUN_NAME else "")
    frames_dir = Path(cfg.FRAMES_DIR) if cfg.FRAMES_DIR else outputs_root() / "pen_cap_vae" / default / "frames"
    frames = sorted(frames_dir.glob("*.jpg")) if frames_dir.is_dir() else []
    if not frames:
        flag = {"quick": " --quick", "dry_run": " --dry-run"}.get(run.profile, "")
        raise LabError(f"no frames in {frames_dir}: run python -m pen_cap_vae.test{flag} first")
    return frames


def write_animation(run, cfg, frames: list[Path]) -> dict:
    """The mp4 of every frame, when imageio-ffmpeg is there to encode it."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        print("note: imageio-ffmpeg is not installed: no animation.mp4 (pip install imageio-ffmpeg); the GIF follows")
        return {}
    video = run.path("animation.mp4")
    written = write_video(frames, video, fps=cfg.FPS)
    run.add_artifact(video, f"the date of the pen and its cap: {written} frames at {cfg.FPS} fps")
    return {"video_frames": count_video_frames(video), "seconds": round(written / cfg.FPS, 2)}


def write_preview(run, cfg, frames: list[Path]) -> dict:
    """Every GIF_EVERY-th frame as a GIF, its side shrunk by the root of the size ratio (bytes grow with the area)."""
    preview, side = run.path("preview.gif"), cfg.GIF_MAX_SIDE
    kept = frames[:: cfg.GIF_EVERY]
    while True:
        write_gif(kept, preview, fps=cfg.GIF_FPS, max_side=side)
        size = preview.stat().st_size
        if size <= cfg.GIF_MAX_BYTES:
            break
        smaller = int(side * math.sqrt(cfg.GIF_MAX_BYTES / size) * 0.95)
        if smaller < 16:
            raise LabError(f"{len(kept)} frames do not fit GIF_MAX_BYTES={cfg.GIF_MAX_BYTES} even at 16 pixels; "
                           "raise GIF_EVERY or GIF_MAX_BYTES")
        print(f"note: the preview GIF at {side} pixels is {size} bytes; shrinking to {smaller} pixels")
        side = smaller
    run.add_artifact(preview, f"preview: every {cfg.GIF_EVERY}th frame ({len(kept)} frames)")
    return {"gif_frames": len(kept), "gif_bytes": size, "gif_max_side": min(side, cfg.GIF_MAX_SIDE)}


@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv)
    cfg = run.cfg
    frames = find_frames(run, cfg)
    metrics = write_animation(run, cfg, frames)
    metrics.update(write_preview(run, cfg, frames))
    run.finish(metrics)


if __name__ == "__main__":
    main()
