"""Generate an image from text with VQGAN + CLIP. Run: python -m vqgan_clip.generate [--quick] [--set PROMPTS="..."]

The loop the article (002) walks through in its Colab, written here: a VQGAN latent z is decoded
into an image, CLIP embeds many random cutouts of that image, and Adam moves z so that the
embeddings come closer (on the unit sphere) to the embeddings of the text prompts and image
prompts. Every DISPLAY_FREQUENCY iterations a frame is saved; at the end final.png and
progress.mp4 (through imageio-ffmpeg's bundled ffmpeg, no system ffmpeg needed).

Models (MODEL): "small" - the VQGAN and CLIP trained in this project on the shapes world
(data/vqgan_clip_small/), or the official "vqgan_imagenet_f16_16384" / "vqgan_imagenet_f16_1024"
from data/checkpoints/ with OpenAI's CLIP ViT-B/32 (CLIP_MODEL, CLIP_WEIGHTS); see
vqgan_clip/README.md for the files. A folder holding vqgan.yaml, vqgan.pt, clip_config.json and
clip.pt works as MODEL too.

Outputs: outputs/vqgan_clip/<run-name>/ with steps/0000.png ..., final.png (prompts and seed in its
PNG text), progress.mp4, losses.png, run.json. The run name comes from the prompt and never
overwrites an earlier run. Ctrl+C stops cleanly and still writes final.png and the video.
"""

from __future__ import annotations

import itertools
import math
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard
from lab.images import read_rgb
from lab.paths import REPO_ROOT, data_root, outputs_root
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants. The article's Colab parameters are the defaults; edit them here or use --set.
PROMPTS = "a red circle on a blue background"  # "text:weight | text:weight:stop"; negative weights push away
WIDTH = 64                  # image width in pixels, rounded down to the VQGAN's factor (Colab: 480 for ImageNet)
HEIGHT = 64                 # image height in pixels (Colab: 480 for ImageNet)
MODEL = "small"             # "small", "vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_1024", or a folder
DISPLAY_FREQUENCY = 50      # save a frame every this many iterations (Colab: 50)
INITIAL_IMAGE = ""          # start from this image instead of random codebook tokens ("" = none)
TARGET_IMAGES = ""          # image prompts, "path:weight | path" ("" = none)
SEED = -1                   # -1 draws a random seed and prints it (Colab: -1); it governs the initial latent
MAX_ITERATIONS = 300        # iterations; -1 runs until Ctrl+C (the Colab's default; here finite so ./run.sh ends)
STEP_SIZE = 0.1             # Adam's learning rate on the latent (Colab: 0.1)
CUTN = 64                   # random cutouts per iteration (Colab: 64)
CUT_POW = 1.0               # cutout size distribution: size ~ U^cut_pow (Colab: 1.0)
INIT_WEIGHT = 0.0           # weight of ||z - z_initial||^2, keeps the result near INITIAL_IMAGE (Colab: 0)
AUGMENT = True              # random flips, rotations, shifts, colour jitter and noise on the cutouts
CLIP_MODEL = "ViT-B-32-quickgelu"                    # open_clip name for the official models
CLIP_WEIGHTS = "data/checkpoints/ViT-B-32.state_dict.pt"  # CLIP state_dict for the official models
VIDEO_FPS = 15              # frames per second of progress.mp4
DEVICE = "auto"             # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"MAX_ITERATIONS": 60, "DISPLAY_FREQUENCY": 5, "CUTN": 32, "SEED": 0}
DRY_RUN = {"MAX_ITERATIONS": 4, "DISPLAY_FREQUENCY": 2, "CUTN": 4}
# -----------------------------------------------------------------------------

SMALL_MODEL_DIR = data_root() / "vqgan_clip_small"
_SMALL_FILES = ("vqgan.yaml", "vqgan.pt", "clip_config.json", "clip.pt")
_OFFICIAL_MODELS = ("vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_1024")
_URL_MARK = "\x00URL\x00"


# -----------------------------------------------------------------------------------------------
# Prompts


@dataclass(frozen=True)
class Prompt:
    """One prompt: text (or an image path), its weight (negative pushes away) and stop distance."""

    text: str
    weight: float = 1.0
    stop: float = -math.inf


def parse_prompt(item: str, what: str = "prompt") -> Prompt:
    """Parse "text", "text:weight" or "text:weight:stop"; a "://" (as in a URL) is never a separator."""
    protected = item.strip().replace("://", _URL_MARK)
    parts = protected.rsplit(":", 2)
    # "text:weight:stop" has three parts; "text:weight" two; anything where the trailing parts are
    # not numbers is an error rather than silently part of the text.
    text = parts[0].replace(_URL_MARK, "://").strip()
    numbers = [p.strip() for p in parts[1:]]
    values = []
    for number in numbers:
        try:
            values.append(float(number))
        except ValueError:
            raise LabError(
                f"cannot read the weight {number!r} in the {what} {item.strip()!r}; write 'text:weight' or "
                "'text:weight:stop' with numbers, e.g. 'a red circle:1 | a square:-0.5'"
            ) from None
    if not text:
        raise LabError(f"the {what} {item.strip()!r} has no text; write 'text:weight'")
    weight = values[0] if values else 1.0
    stop = values[1] if len(values) > 1 else -math.inf
    return Prompt(text, weight, stop)


def parse_prompts(spec: str, what: str = "prompt") -> list[Prompt]:
    """Split "a:1 | b:-0.5 | c" at the bars and parse each part."""
    return [parse_prompt(part, what) for part in (spec or "").split("|") if part.strip()]


# -----------------------------------------------------------------------------------------------
# Differentiable pieces of the loop


class _ClampWithGrad(torch.autograd.Function):
    """Clamp to [low, high] in the forward pass; in the backward pass let the gradient through
    wherever following it (a descent step, -grad) would move the value back towards the range -
    the Colab's trick so that saturated pixels can still be pulled back in."""

    @staticmethod
    def forward(ctx, x, low, high):
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        outside = x - x.clamp(ctx.low, ctx.high)
        return grad * (grad * outside >= 0), None, None


def clamp_with_grad(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return _ClampWithGrad.apply(x, low, high)


def straight_through(forward_value: torch.Tensor, backward_value: torch.Tensor) -> torch.Tensor:
    """forward_value in the forward pass, the gradient of backward_value in the backward pass."""
    return backward_value + (forward_value - backward_value).detach()


def quantize_straight_through(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Replace each latent vector by its nearest code, passing the gradient to z unchanged
    (the straight-through estimator of VQ-VAE, van den Oord et al. 2017)."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    distances = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2.0 * flat @ codebook.t()
    codes = codebook[distances.argmin(1)].reshape(z.shape[0], z.shape[2], z.shape[3], z.shape[1])
    return straight_through(codes.permute(0, 3, 1, 2), z)


def synthesize(vqgan, z: torch.Tensor) -> torch.Tensor:
    """Latent -> image in [0, 1]: straight-through quantisation, decode, clamp with gradient."""
    z_q = quantize_straight_through(z, vqgan.quantize.embedding.weight)
    return clamp_with_grad(vqgan.decode(z_q).add(1.0).div(2.0), 0.0, 1.0)


def make_cutouts(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float, augment: bool) -> torch.Tensor:
    """`cutn` random square crops of the image, each resized to CLIP's input size (cutn, 3, s, s).

    Crop sides are min_side + (max_side - min_side) * U^cut_pow, U uniform on [0, 1) (the Colab's
    MakeCutouts); with augment, each crop is randomly flipped, rotated (up to 15 degrees), shifted
    (up to 10 %), colour-jittered, and gets Gaussian noise of a random strength up to 0.1.
    """
    _, _, side_y, side_x = image.shape
    max_size = min(side_x, side_y)
    min_size = min(side_x, side_y, cut_size)
    cutouts = []
    for _ in range(cutn):
        size = int(torch.rand([]).item() ** cut_pow * (max_size - min_size) + min_size)
        offset_x = int(torch.randint(0, side_x - size + 1, ()).item())
        offset_y = int(torch.randint(0, side_y - size + 1, ()).item())
        crop = image[:, :, offset_y:offset_y + size, offset_x:offset_x + size]
        cutouts.append(F.interpolate(crop, size=(cut_size, cut_size), mode="bilinear", align_corners=False,
                                     antialias=size > cut_size))
    batch = torch.cat(cutouts)
    if not augment:
        return batch
    n = batch.shape[0]
    device = batch.device
    flip = torch.rand(n, device=device) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    # A random rotation and shift for each cutout, as one batched affine warp (reflection padding).
    angle = (torch.rand(n, device=device) * 2 - 1) * math.radians(15.0)
    shift = (torch.rand(n, 2, device=device) * 2 - 1) * 0.2  # grid units span 2, so 0.2 is 10 %
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # Colour jitter: brightness and saturation within +-5 %.
    brightness = 1 + (torch.rand(n, 1, 1, 1, device=device) * 2 - 1) * 0.05
    grey = batch.mean(1, keepdim=True)
    saturation = 1 + (torch.rand(n, 1, 1, 1, device=device) * 2 - 1) * 0.05
    batch = (grey + (batch - grey) * saturation) * brightness
    noise_strength = torch.rand(n, 1, 1, 1, device=device) * 0.1
    return batch + noise_strength * torch.randn_like(batch)


def spherical_distance_loss(embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit vectors: 2 * arcsin(|a - b| / 2)^2, per pair."""
    embeddings = F.normalize(embeddings, dim=-1)
    target = F.normalize(target, dim=-1)
    chord = (embeddings[:, None, :] - target[None, :, :]).norm(dim=-1)
    return chord.div(2).clamp(max=1.0).arcsin().pow(2).mul(2)


# -----------------------------------------------------------------------------------------------
# Models and files


def resolve_model_files(model: str, clip_model: str, clip_weights: str) -> dict[str, Any]:
    """The four files (VQGAN yaml and weights, CLIP config or name, CLIP weights) for MODEL."""
    if model in _OFFICIAL_MODELS:
        folder = data_root() / "checkpoints"
        yaml_path = folder / f"{model}.yaml"
        ckpt = folder / f"{model}.ckpt"
        if not ckpt.is_file() and (folder / f"{model}.pt").is_file():
            ckpt = folder / f"{model}.pt"  # the plain state_dict written by convert_checkpoint
        weights = Path(clip_weights)
        weights = weights if weights.is_absolute() else REPO_ROOT / weights
        missing = [str(p) for p in (yaml_path, ckpt, weights) if not p.is_file()]
        if missing:
            raise LabError(
                f"MODEL={model} needs {', '.join(missing)}. The VQGAN files are CompVis' '{model}' checkpoint "
                "(last.ckpt) and its model.yaml from https://github.com/CompVis/taming-transformers (section "
                "'Overview of pretrained models'), renamed to data/checkpoints/<name>.ckpt and .yaml; CLIP is OpenAI's "
                "ViT-B-32.pt from https://github.com/openai/CLIP, converted with python -m vqgan_clip.convert_checkpoint "
                "openai-clip data/checkpoints/ViT-B-32.pt. Nothing is downloaded automatically; see vqgan_clip/README.md"
            )
        return {"vqgan_yaml": yaml_path, "vqgan_weights": ckpt, "clip_model": clip_model, "clip_weights": weights}
    folder = SMALL_MODEL_DIR if model == "small" else Path(model)
    if model != "small" and not folder.is_dir():
        raise LabError(f"MODEL={model!r} is neither 'small', one of {', '.join(_OFFICIAL_MODELS)}, nor a folder "
                       f"holding {', '.join(_SMALL_FILES)}")
    missing = [name for name in _SMALL_FILES if not (folder / name).is_file()]
    if missing:
        raise LabError(
            f"MODEL={model} needs {', '.join(missing)} in {folder}. The small models are trained by this project: "
            "they ship in data/vqgan_clip_small/ (git checkout -- data/vqgan_clip_small restores them), or retrain "
            "them with python -m vqgan_clip.train_vqgan --set SHIP=true and python -m vqgan_clip.train_clip "
            "--set SHIP=true, "
            f"or use MODEL={_OFFICIAL_MODELS[0]} with the official files (vqgan_clip/README.md)"
        )
    return {"vqgan_yaml": folder / "vqgan.yaml", "vqgan_weights": folder / "vqgan.pt",
            "clip_model": folder / "clip_config.json", "clip_weights": folder / "clip.pt"}


def load_models(model: str, clip_model: str = CLIP_MODEL, clip_weights: str = CLIP_WEIGHTS, device: str = "cpu"):
    """(vqgan, (clip, tokenizer, mean, std), files) for MODEL, on the device, in eval mode."""
    from vqgan_clip.clip_model import load_clip
    from vqgan_clip.vqgan import load_vqgan

    files = resolve_model_files(model, clip_model, clip_weights)
    vqgan = load_vqgan(files["vqgan_yaml"], files["vqgan_weights"], device=device)
    clip = load_clip(files["clip_model"], files["clip_weights"], device=device)
    return vqgan, clip, files


def read_image(path: str | Path, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    return read_rgb(path, what)


def image_to_tensor(image: Image.Image, width: int, height: int, device) -> torch.Tensor:
    """A (1, 3, height, width) tensor in [0, 1], resized with Lanczos."""
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device)


def round_size(width: int, height: int, factor: int, notify: bool = True) -> tuple[int, int]:
    """Width and height rounded down to multiples of the VQGAN's downsampling factor."""
    if width < factor or height < factor:
        raise LabError(f"the image size {width}x{height} is smaller than one VQGAN token ({factor}x{factor} pixels); "
                       f"use WIDTH and HEIGHT of at least {factor}")
    rounded = (width // factor * factor, height // factor * factor)
    if notify and rounded != (width, height):
        print(f"notice: {width}x{height} rounded down to {rounded[0]}x{rounded[1]}, a multiple of the VQGAN's "
              f"downsampling factor {factor}")
    return rounded


# -----------------------------------------------------------------------------------------------
# The loop


@dataclass
class GenerationResult:
    image: np.ndarray                      # final image, HxWx3 uint8
    losses: dict[str, list[float]]         # per prompt label, one value per iteration
    total_losses: list[float]              # summed loss per iteration (the quantity Adam lowers)
    iterations: int                        # iterations actually run
    seed: int
    width: int
    height: int
    interrupted: bool = False
    frames: list[Path] = field(default_factory=list)


def default_config(**overrides: Any) -> SimpleNamespace:
    """This script's constants (full profile) with overrides, for callers such as evaluate.py."""
    from lab.constants import collect_constants

    constants = collect_constants(globals())
    unknown = [name for name in overrides if name not in constants]
    if unknown:
        raise LabError(f"unknown generate constant(s) {', '.join(unknown)}; valid: {', '.join(constants)}")
    constants.update(overrides)
    return SimpleNamespace(**constants)


def settings_from(config: Any) -> SimpleNamespace:
    """This script's constants updated from a dict (unknown names are an error) or a namespace
    (such as another script's run.cfg: names this script does not have are ignored)."""
    if isinstance(config, dict):
        return default_config(**config)
    settings = default_config()
    for name, value in vars(config).items():
        if hasattr(settings, name):
            setattr(settings, name, value)
    return settings


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image[0].detach().clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)


def generate(config: Any, vqgan, clip, *, device: str | torch.device = "cpu", seed: int | None = None,
             on_display=None, guard=None, progress: bool = True) -> GenerationResult:
    """Run the VQGAN+CLIP loop and return the final image and the losses per iteration.

    config: a namespace or dict with this script's constant names (PROMPTS, WIDTH, HEIGHT,
    MAX_ITERATIONS, STEP_SIZE, CUTN, CUT_POW, INIT_WEIGHT, AUGMENT, INITIAL_IMAGE, TARGET_IMAGES,
    DISPLAY_FREQUENCY, SEED); missing names take this script's defaults. clip is load_clip()'s
    tuple. on_display(iteration, image_uint8) is called every DISPLAY_FREQUENCY iterations;
    guard.requested (an InterruptGuard) stops the loop early. The same seed gives the same image.
    """
    cfg = settings_from(config)
    seed = int(cfg.SEED if seed is None else seed)
    if seed < 0:
        raise LabError("generate() needs a seed >= 0 (start_run draws one for SEED=-1)")
    clip_model, tokenizer, mean, std = clip
    prompts = parse_prompts(cfg.PROMPTS, "prompt")
    image_prompts = parse_prompts(cfg.TARGET_IMAGES, "target image")
    if not prompts and not image_prompts:
        raise LabError("nothing to steer towards: PROMPTS and TARGET_IMAGES are both empty")
    factor = vqgan.downsampling_factor
    width, height = round_size(int(cfg.WIDTH), int(cfg.HEIGHT), factor, notify=progress)
    cut_size = _clip_size(clip_model)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)

    torch.manual_seed(seed)
    codebook = vqgan.quantize.embedding.weight
    tokens_x, tokens_y = width // factor, height // factor
    with torch.no_grad():
        if cfg.INITIAL_IMAGE:
            start = image_to_tensor(read_image(cfg.INITIAL_IMAGE, "INITIAL_IMAGE"), width, height, device)
            z, _, _ = vqgan.encode(start * 2 - 1)
        else:
            # Random codebook tokens, drawn from the seeded generator: the seed fixes the start.
            indices = torch.randint(codebook.shape[0], (1, tokens_y, tokens_x), device=device)
            z = vqgan.quantize.lookup(indices)
        # Per-channel range of the codebook; z is kept inside it after every step (the Colab's z_min/z_max).
        z_min = codebook.min(0).values.view(1, -1, 1, 1)
        z_max = codebook.max(0).values.view(1, -1, 1, 1)
        z_initial = z.clone()

        targets, labels, weights, stops = [], [], [], []
        for prompt in prompts:
            targets.append(clip_model.encode_text(tokenizer([prompt.text]).to(device)).float())
            labels.append(prompt.text)
            weights.append(prompt.weight)
            stops.append(prompt.stop)
        for prompt in image_prompts:
            picture = image_to_tensor(read_image(prompt.text, "target image"), width, height, device)
            cutouts = make_cutouts(picture, cut_size, int(cfg.CUTN), float(cfg.CUT_POW), False)
            targets.append(clip_model.encode_image((cutouts - mean_t) / std_t).float())
            labels.append(f"image {Path(prompt.text).name}")
            weights.append(prompt.weight)
            stops.append(prompt.stop)

    z = z.detach().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=float(cfg.STEP_SIZE))
    losses: dict[str, list[float]] = {label: [] for label in labels}
    if cfg.INIT_WEIGHT:
        losses["init"] = []
    total_losses: list[float] = []
    max_iterations = int(cfg.MAX_ITERATIONS)
    display_frequency = max(1, int(cfg.DISPLAY_FREQUENCY))
    counter = range(max_iterations) if max_iterations >= 0 else itertools.count()
    bar = tqdm(counter, total=max_iterations if max_iterations >= 0 else None, desc="VQGAN+CLIP",
               unit="it", disable=not progress, file=sys.stdout)
    iteration = 0
    interrupted = False
    for iteration in bar:
        optimizer.zero_grad(set_to_none=True)
        image = synthesize(vqgan, z)
        if on_display is not None and iteration % display_frequency == 0:
            on_display(iteration, to_uint8(image))
        cutouts = make_cutouts(image, cut_size, int(cfg.CUTN), float(cfg.CUT_POW), bool(cfg.AUGMENT))
        embeddings = clip_model.encode_image((cutouts - mean_t) / std_t).float()
        terms = []
        for target, label, weight, stop in zip(targets, labels, weights, stops, strict=True):
            distances = spherical_distance_loss(embeddings, target)
            # A stop value: once the distance is below it, the gradient of that prompt is cut
            # (the value is kept, the gradient is that of max(distance, stop)).
            distances = straight_through(distances, torch.maximum(distances, torch.full_like(distances, stop)))
            # Each prompt's loss is the mean distance times |weight|, with the weight's sign:
            # negative weights push the image away from that prompt.
            term = abs(weight) * distances.mean() * math.copysign(1.0, weight)
            terms.append(term)
            losses[label].append(float(term.detach()))
        if cfg.INIT_WEIGHT:
            term = F.mse_loss(z, z_initial) * float(cfg.INIT_WEIGHT) / 2
            terms.append(term)
            losses["init"].append(float(term.detach()))
        total = torch.stack(terms).sum()
        total.backward()
        optimizer.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
        total_losses.append(float(total.detach()))
        bar.set_postfix(loss=f"{total_losses[-1]:.4f}")
        if guard is not None and guard.requested:
            interrupted = True
            break
    bar.close()
    iterations = len(total_losses)
    with torch.no_grad():
        final = to_uint8(synthesize(vqgan, z))
    if on_display is not None:
        on_display(iterations, final)
    return GenerationResult(final, losses, total_losses, iterations, seed, width, height, interrupted)


def _clip_size(clip_model) -> int:
    from vqgan_clip.clip_model import clip_input_size

    return clip_input_size(clip_model)


# -----------------------------------------------------------------------------------------------
# Outputs


def run_name(prompts: str, target_images: str = "") -> str:
    """A folder name from the first prompt: lowercase words joined by '-', at most 48 characters."""
    parsed = parse_prompts(prompts) or parse_prompts(target_images, "target image")
    text = parsed[0].text if parsed else "image"
    if "://" in text or "/" in text:
        text = Path(text.split("://")[-1]).stem
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")
    return slug or "image"


def unique_run_dir(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3, ... : created atomically, an earlier run is never overwritten."""
    parent.mkdir(parents=True, exist_ok=True)
    for index in itertools.count(1):
        candidate = parent / (name if index == 1 else f"{name}-{index}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def save_png_with_metadata(image: np.ndarray, path: Path, metadata: dict[str, str]) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_text(key, str(value))
    Image.fromarray(image).save(path, pnginfo=info)
    return path


def plot_losses(result: GenerationResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in result.losses.items():
        ax.plot(values, label=label[:40], linewidth=1)
    if len(result.losses) > 1:
        ax.plot(result.total_losses, label="sum", color="black", linewidth=1.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (weighted squared spherical distance)")
    ax.set_title("VQGAN+CLIP loss per prompt")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)


def peak_memory_mb(device: str) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA memory on a GPU), in MiB."""
    memory = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if str(device).startswith("cuda"):
        memory["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return memory


@exit_on_lab_error
def main(argv=None):
    run = start_run("vqgan_clip", globals(), argv, framework="torch", subdir="generate")
    cfg = run.cfg
    # The run's folder is named after the prompt; start_run made outputs/vqgan_clip/generate, unused.
    placeholder = run.out_dir
    run.out_dir = unique_run_dir(outputs_root() / "vqgan_clip", run_name(cfg.PROMPTS, cfg.TARGET_IMAGES))
    if placeholder.is_dir() and not any(placeholder.iterdir()):
        placeholder.rmdir()
    print(f"outputs: {run.out_dir}")
    # Check the prompts before the (slow) model loading, so a typo fails at once.
    parse_prompts(cfg.PROMPTS)
    parse_prompts(cfg.TARGET_IMAGES, "target image")
    vqgan, clip, files = load_models(cfg.MODEL, cfg.CLIP_MODEL, cfg.CLIP_WEIGHTS, run.device)
    from vqgan_clip.vqgan import describe

    print(describe(vqgan))
    frames: list[Path] = []

    def save_frame(iteration: int, image: np.ndarray) -> None:
        path = run.path("steps", f"{len(frames):04d}.png")
        Image.fromarray(image).save(path)
        frames.append(path)

    if str(run.device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    loop_started = time.time()
    with InterruptGuard() as guard:
        result = generate(cfg, vqgan, clip, device=run.device, seed=run.seed, on_display=save_frame, guard=guard)
    loop_seconds = time.time() - loop_started
    metadata = {"prompts": cfg.PROMPTS, "target_images": cfg.TARGET_IMAGES, "seed": run.seed, "model": cfg.MODEL,
                "iterations": result.iterations, "initial_image": cfg.INITIAL_IMAGE,
                "repeat": f"python -m vqgan_clip.generate --set SEED={run.seed} --set PROMPTS='{cfg.PROMPTS}'"}
    final = save_png_with_metadata(result.image, run.path("final.png"), metadata)
    from lab.media import write_video

    video_frames = write_video(frames, run.path("progress.mp4"), fps=cfg.VIDEO_FPS)
    run.add_artifact(final, f"final image: {cfg.PROMPTS} (seed {run.seed}, {result.iterations} iterations)")
    run.add_artifact(run.path("progress.mp4"), f"progress, one frame every {cfg.DISPLAY_FREQUENCY} iterations")
    if result.total_losses:
        run.add_artifact(plot_losses(result, run.path("losses.png")), "loss per prompt over iterations")
    first = result.total_losses[:5]
    last = result.total_losses[-5:]
    metrics = {
        "iterations": result.iterations,
        "width": result.width,
        "height": result.height,
        "loss_first5_mean": float(np.mean(first)) if first else None,
        "loss_last5_mean": float(np.mean(last)) if last else None,
        "video_frames": video_frames,
        "seconds_per_iteration": round(loop_seconds / max(1, result.iterations), 4),
        **peak_memory_mb(run.device),
        "files": {key: str(value) for key, value in files.items()},
    }
    run.finish(metrics, status="interrupted" if result.interrupted else "complete")
    return result


if __name__ == "__main__":
    main()
