"""Generate an image from text with VQGAN + CLIP. Run: python -m vqgan_clip.generate [--quick] [--set PROMPTS="..."]

The article's (002) Colab loop (loop.py): Adam moves a VQGAN latent so that CLIP's embeddings of
random cutouts of the decoded image approach those of the text and image prompts. MODEL: "small"
(trained here, data/vqgan_clip_small/), an official VQGAN of models.OFFICIAL_MODELS with OpenAI's
CLIP (`python -m vqgan_clip.download NAME`), or a folder of vqgan.yaml, vqgan.pt, clip_config.json,
clip.pt. Beyond the Colab: story mode (PROMPTS phrases split by "^"), a zoom video (ZOOM_*), a batch
of prompts (PROMPTS_FILE, plus a contact sheet).

Writes outputs/vqgan_clip/<prompt>/ (never an earlier run's): steps/*.png every DISPLAY_FREQUENCY
iterations, final.png (prompts and seed in its PNG text), progress.mp4, losses.png, run.json.
Ctrl+C stops cleanly and still writes final.png and the video.
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard
from lab.paths import REPO_ROOT, outputs_root, read_text_file
from vqgan_clip import claims, loop
from vqgan_clip import shapes_world as world
from vqgan_clip.figures import image_grid, plot_losses
from vqgan_clip.models import load_models

# -----------------------------------------------------------------------------
# Constants. The article's Colab parameters are the defaults; edit them here or use --set.
PROMPTS = "a red circle on a blue background"  # "text:weight:stop | text"; negative weights push away; "^" separates story phrases
WIDTH = 64                  # image width in pixels, rounded down to the VQGAN's factor (Colab: 480 for ImageNet) {> 0}
HEIGHT = 64                 # image height in pixels (Colab: 480 for ImageNet) {> 0}
MODEL = "small"             # "small", "vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_1024", "vqgan_gumbel_f8_8192", or a folder {nonempty}
DISPLAY_FREQUENCY = 50      # save a frame every this many iterations (Colab: 50) {> 0}
INITIAL_IMAGE = ""          # start from this image instead of random codebook tokens ("" = none)
TARGET_IMAGES = ""          # image prompts, "path:weight | path" ("" = none); each keeps its aspect ratio
SEED = -1                   # -1 draws a random seed and prints it (Colab: -1); it governs the initial latent {-1 or >= 0}
MAX_ITERATIONS = 300        # iterations; -1 runs until Ctrl+C (the Colab's default; here finite so ./run.sh ends) {-1 or > 0}
STEP_SIZE = 0.1             # Adam's learning rate on the latent (Colab: 0.1) {> 0}
CUTN = 64                   # random cutouts per iteration (Colab: 64) {> 0}
CUT_POW = 1.0               # cutout side ~ U^CUT_POW between CLIP's input and the image's side (Colab: 1.0) {> 0}
CUT_METHOD = "updated"      # cutout augmentations: "updated" (the Colab's), "latest" (nerdyrodent's pooled), "original", "ours"
INIT_WEIGHT = 0.0           # weight of ||z - z_initial||^2, keeps the result near INITIAL_IMAGE (Colab: 0) {>= 0}
PROMPT_FREQUENCY = 0        # story mode: iterations per "^" phrase of PROMPTS (0: no story) {>= 0}
ZOOM_EVERY = 0              # zoom video: zoom, shift and re-encode the image every this many iterations (0: off) {>= 0}
ZOOM_SCALE = 1.02           # zoom factor per zoom step (> 1 zooms in, < 1 out) {> 0}
ZOOM_SHIFT_X = 0            # pixels the image moves right per zoom step (wraps around)
ZOOM_SHIFT_Y = 0            # pixels the image moves down per zoom step (wraps around)
PROMPTS_FILE = ""           # a text file of prompts, one run per line, plus a contact sheet ("" = PROMPTS only)
CLIP_MODEL = "ViT-B-32-quickgelu"                    # open_clip name for the official models {nonempty}
CLIP_WEIGHTS = "data/checkpoints/ViT-B-32.state_dict.pt"  # CLIP state_dict for the official models {nonempty}
VIDEO_FPS = 15              # frames per second of progress.mp4 {> 0}
TORCH_THREADS = 0           # torch CPU threads (0: torch's default); the small models run fastest on 1 {>= 0}
DEVICE = "auto"             # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"MAX_ITERATIONS": 60, "DISPLAY_FREQUENCY": 5, "CUTN": 32, "SEED": 0, "TORCH_THREADS": 1}
DRY_RUN = {"MAX_ITERATIONS": 4, "DISPLAY_FREQUENCY": 2, "CUTN": 4}
# -----------------------------------------------------------------------------


def loop_settings(cfg, prompts: str, seed: int) -> loop.LoopSettings:
    """This script's constants as the loop's typed settings (one prompt line of a batch at a time)."""
    return loop.LoopSettings(
        prompts=prompts, width=cfg.WIDTH, height=cfg.HEIGHT, max_iterations=cfg.MAX_ITERATIONS,
        step_size=cfg.STEP_SIZE, cutn=cfg.CUTN, cut_pow=cfg.CUT_POW, cut_method=cfg.CUT_METHOD,
        init_weight=cfg.INIT_WEIGHT, seed=seed, initial_image=cfg.INITIAL_IMAGE, target_images=cfg.TARGET_IMAGES,
        display_frequency=cfg.DISPLAY_FREQUENCY, prompt_frequency=cfg.PROMPT_FREQUENCY, zoom_every=cfg.ZOOM_EVERY,
        zoom_scale=cfg.ZOOM_SCALE, zoom_shift_x=cfg.ZOOM_SHIFT_X, zoom_shift_y=cfg.ZOOM_SHIFT_Y)


def read_prompt_lines(cfg) -> list[str]:
    """PROMPTS, or one PROMPTS spec per non-empty line of PROMPTS_FILE (lines starting with # skipped)."""
    if not cfg.PROMPTS_FILE:
        return [cfg.PROMPTS]
    path = Path(cfg.PROMPTS_FILE)
    path = path if path.is_absolute() or path.exists() else REPO_ROOT / path
    lines = read_text_file(path, "PROMPTS_FILE").splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise LabError(f"PROMPTS_FILE {path} holds no prompts; write one prompt per line")
    return prompts


def slug(text: str) -> str:
    """Lowercase words joined by '-', at most 48 characters (a URL or path gives its file stem)."""
    if "://" in text or "/" in text:
        text = Path(text.split("://")[-1]).stem
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-") or "image"


def run_name(prompts: str, target_images: str = "") -> str:
    """A folder name from the first prompt (or the first target image)."""
    first = prompts.split(loop.STORY_SEPARATOR)[0]
    parsed = loop.parse_prompts(first) or loop.parse_prompts(target_images, "target image")
    return slug(parsed[0].text) if parsed else "image"


def folder_name(cfg) -> str:
    """The run's folder, after the prompt (or the prompts file): the first name not yet taken."""
    base = (f"batch-{slug(Path(cfg.PROMPTS_FILE).stem)}" if cfg.PROMPTS_FILE
            else run_name(cfg.PROMPTS, cfg.TARGET_IMAGES))
    parent = outputs_root() / "vqgan_clip"
    suffix = f"-{cfg.RUN_NAME}" if getattr(cfg, "RUN_NAME", "") else ""  # start_run appends RUN_NAME
    for index in itertools.count(1):
        name = base if index == 1 else f"{base}-{index}"
        if not (parent / f"{name}{suffix}").exists():
            return name
    raise AssertionError("unreachable")


def generate_one(run, vqgan, clip, prompts: str, folder: Path, step_offset: int) -> loop.GenerationResult:
    """One run of the loop into `folder`: frames, final.png with its metadata, progress.mp4, losses.png."""
    from lab.media import write_video

    cfg = run.cfg
    frames: list[Path] = []

    def save_frame(iteration: int, image: np.ndarray) -> None:
        path = folder / "steps" / f"{len(frames):04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        frames.append(path)

    with InterruptGuard() as guard:
        result = loop.generate(loop_settings(cfg, prompts, run.seed), vqgan, clip, device=run.device,
                               on_display=save_frame, guard=guard,
                               on_step=lambda iteration, loss: run.log_scalars(step_offset + iteration, loss=loss))
    metadata = {"prompts": prompts, "target_images": cfg.TARGET_IMAGES, "seed": run.seed, "model": cfg.MODEL,
                "iterations": result.iterations, "initial_image": cfg.INITIAL_IMAGE, "cut_method": cfg.CUT_METHOD,
                "repeat": f"python -m vqgan_clip.generate --set SEED={run.seed} --set PROMPTS='{prompts}'"}
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_text(key, str(value))
    Image.fromarray(result.image).save(folder / "final.png", pnginfo=info)
    result.frames = frames
    result.video_frames = write_video(frames, folder / "progress.mp4", fps=cfg.VIDEO_FPS)
    if result.total_losses:
        plot_losses(result.losses, result.total_losses, folder / "losses.png")
    return result


def add_claims(run, result: loop.GenerationResult, prompts: str) -> dict:
    """The article's claim that the loss falls over the iterations; for a shapes-world prompt also the
    picture's colour shares and pixel check, as figures."""
    first, last = float(np.mean(result.total_losses[:5])), float(np.mean(result.total_losses[-5:]))
    run.add_claim(claims.IMPROVES, f"loss {first:.3f} -> {last:.3f}", last < first,
                  full_profile=claims.FULL_PROFILE[claims.IMPROVES])
    colours = world.prompt_colours(prompts)
    measured = {"loss_first5_mean": first, "loss_last5_mean": last}
    if colours is not None:
        # One picture is one trajectory: whether it takes the prompt's colours changes with the seed and
        # the CPU, so it is a figure here; the claim is judged over 20 prompts by evaluate.py.
        agrees, shares = world.pixel_check(result.image, *colours)
        measured.update(pixel_check=agrees, shape_colour_share=shares[colours[0]],
                        background_colour_share=shares[colours[1]])
    return measured


def report(run, lines: list[str], results: list[loop.GenerationResult], folders: list[Path], files: dict,
           seconds: float) -> None:
    cfg = run.cfg
    if len(results) > 1:
        sheet = image_grid(run.path("contact_sheet.png"), [r.image for r in results], [line[:60] for line in lines],
                           columns=4, cell=(3.0, 3.3))
        run.add_artifact(sheet, f"{len(results)} prompts of {cfg.PROMPTS_FILE}, seed {run.seed}")
    for prompts, result, folder in zip(lines, results, folders, strict=True):
        run.add_artifact(folder / "final.png", f"final image: {prompts} (seed {run.seed}, {result.iterations} "
                         "iterations)")
        if len(results) == 1:
            run.add_artifact(folder / "progress.mp4", f"progress, one frame every {cfg.DISPLAY_FREQUENCY} iterations")
            if result.total_losses:
                run.add_artifact(folder / "losses.png", "loss per prompt over iterations")
    iterations = sum(r.iterations for r in results)
    metrics = {
        "iterations": results[0].iterations if len(results) == 1 else [r.iterations for r in results],
        "width": results[0].width,
        "height": results[0].height,
        "video_frames": results[0].video_frames if len(results) == 1 else [r.video_frames for r in results],
        "seconds_per_iteration": round(seconds / max(1, iterations), 4),
        **loop.peak_memory_mb(run.device),
        "files": {key: str(value) for key, value in files.items()},
    }
    if results[0].total_losses:
        metrics.update(add_claims(run, results[0], lines[0]))
    run.finish(metrics, status="interrupted" if any(r.interrupted for r in results) else "complete")


@exit_on_lab_error
def main(argv=None):
    run = start_run("vqgan_clip", globals(), argv, framework="torch", subdir=folder_name)
    try:
        cfg = run.cfg
        lines = read_prompt_lines(cfg)
        for line in lines:  # a typo or an empty prompt fails at once, before the (slow) model loading
            loop.check_settings(loop_settings(cfg, line, run.seed))
        vqgan, clip, files = load_models(cfg.MODEL, cfg.CLIP_MODEL, cfg.CLIP_WEIGHTS, run.device)
        from vqgan_clip.vqgan import describe

        print(describe(vqgan))
        if str(run.device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        started, results, folders = time.time(), [], []
        for number, prompts in enumerate(lines):
            folder = run.out_dir if len(lines) == 1 else run.out_dir / f"{number + 1:02d}-{run_name(prompts)}"
            print(f"[{number + 1}/{len(lines)}] {prompts}" if len(lines) > 1 else f"outputs: {folder}")
            results.append(generate_one(run, vqgan, clip, prompts, folder, sum(r.iterations for r in results)))
            folders.append(folder)
            if results[-1].interrupted:
                lines = lines[:number + 1]
                break
        report(run, lines, results, folders, files, time.time() - started)
    except BaseException:  # a run that fails before it wrote anything leaves no empty folder behind
        if run.out_dir.is_dir() and not any(run.out_dir.iterdir()):
            shutil.rmtree(run.out_dir, ignore_errors=True)
        raise
    return results[0] if len(results) == 1 else results


if __name__ == "__main__":
    main()
