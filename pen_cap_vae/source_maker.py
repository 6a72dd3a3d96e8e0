"""Assemble the date's frames into the animation (article 000: "collect it in source_maker.py").

Run: python -m pen_cap_vae.source_maker [--quick] [--set FPS=30]   (after python -m pen_cap_vae.test)

Writes animation.mp4 (H.264 through imageio-ffmpeg's bundled ffmpeg) and a small preview GIF.
"""

from __future__ import annotations

from pathlib import Path

from lab import LabError, exit_on_lab_error, start_run
from lab.media import count_video_frames, write_gif, write_video
from lab.paths import outputs_root

# -----------------------------------------------------------------------------
# Constants. Edit them here or use --set.
FRAMES_DIR = ""        # the frames; "" = outputs/pen_cap_vae/test/frames (written by pen_cap_vae.test)
FPS = 25               # frames per second of the animation (not in the article: our choice)
GIF_EVERY = 10         # the preview GIF keeps every n-th frame
GIF_FPS = 10           # ... and plays at this rate
GIF_MAX_SIDE = 320     # ... shrunk to this longer side
SEED = 0               # unused: assembling is deterministic
DEVICE = "cpu"
QUICK = {"GIF_EVERY": 10}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv)
    cfg = run.cfg
    if cfg.FPS <= 0 or cfg.GIF_FPS <= 0 or cfg.GIF_EVERY < 1:
        raise LabError(f"FPS and GIF_FPS must be > 0 and GIF_EVERY >= 1, got {cfg.FPS}, {cfg.GIF_FPS}, {cfg.GIF_EVERY}")
    frames_dir = Path(cfg.FRAMES_DIR) if cfg.FRAMES_DIR else outputs_root() / "pen_cap_vae" / "test" / "frames"
    frames = sorted(frames_dir.glob("*.jpg")) if frames_dir.is_dir() else []
    if not frames:
        flag = {"quick": " --quick", "dry_run": " --dry-run"}.get(run.profile, "")
        raise LabError(f"no frames in {frames_dir}: run python -m pen_cap_vae.test{flag} first")
    video = run.path("animation.mp4")
    written = write_video(frames, video, fps=cfg.FPS)
    preview = run.path("preview.gif")
    write_gif(frames[:: cfg.GIF_EVERY], preview, fps=cfg.GIF_FPS, max_side=cfg.GIF_MAX_SIDE)
    run.add_artifact(video, f"the date of the pen and its cap: {written} frames at {cfg.FPS} fps")
    run.add_artifact(preview, f"preview: every {cfg.GIF_EVERY}th frame")
    run.finish({"video_frames": count_video_frames(video), "seconds": round(written / cfg.FPS, 2)})


if __name__ == "__main__":
    main()
