"""The VQGAN+CLIP loop (Crowson's "z+quantize" method, as in the article's Colab), used by
generate.py, evaluate.py and bench.py.

    settings = LoopSettings(prompts="a red circle", width=64, height=64, max_iterations=60, step_size=0.1,
                            cutn=32, cut_pow=1.0, cut_method="updated", init_weight=0.0, seed=0)
    result = generate(settings, vqgan, clip)      # result.image: HxWx3 uint8

One iteration: z snapped to its nearest codes (straight-through), decoded, clamped to [0, 1];
CUTN augmented cutouts embedded by CLIP; each prompt's loss the signed squared spherical distance,
floored at its stop; an Adam step on z, then z clamped to the codebook's range. It follows
nerdyrodent/VQGAN-CLIP's generate.py (the reference), its kornia augmentations restated in torch.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageChops
from tqdm import tqdm

from lab import LabError
from lab.images import read_rgb
from lab.paths import REPO_ROOT
from vqgan_clip.clip_model import clip_input_size

_URL_MARK = "\x00URL\x00"
STORY_SEPARATOR = "^"

# Settings and prompts


@dataclass(frozen=True)
class LoopSettings:
    """Everything one run of the loop needs; every caller states each value (no hidden defaults
    inherited from another script). Field names are the Colab's parameters in lower case."""

    prompts: str            # "text:weight:stop | text"; "^" separates story phrases
    width: int              # pixels, rounded down to the VQGAN's downsampling factor
    height: int
    max_iterations: int     # -1: until guard.requested (Ctrl+C)
    step_size: float        # Adam's learning rate on z (Colab: 0.1)
    cutn: int               # cutouts per iteration (Colab: 64)
    cut_pow: float          # cutout side ~ U^cut_pow between CLIP's input and the image's side
    cut_method: str         # one of CUT_METHODS
    init_weight: float      # weight of ||z - z_initial||^2 / 2 (Colab: 0)
    seed: int               # fixes the initial tokens and every random draw of the loop
    initial_image: str = ""
    target_images: str = ""  # image prompts "path:weight:stop | path"
    display_frequency: int = 50
    prompt_frequency: int = 0  # story mode: switch to the next "^" phrase every this many iterations
    zoom_every: int = 0        # zoom video: every this many iterations zoom/shift the image and re-encode
    zoom_scale: float = 1.0    # > 1 zooms in, < 1 out (the reference's zoom_at)
    zoom_shift_x: int = 0      # pixels, wrapped around (the reference's ImageChops.offset)
    zoom_shift_y: int = 0


@dataclass(frozen=True)
class Prompt:
    """One prompt: text (or an image path), its weight (negative pushes away) and stop distance."""

    text: str
    weight: float = 1.0
    stop: float = -math.inf


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_prompt(item: str, what: str = "prompt") -> Prompt:
    """Parse "text", "text:weight" or "text:weight:stop" (the reference's split_prompt); a "://"
    (as in a URL) is never a separator. Weights and stops must be finite numbers; more than two
    numeric fields ("text:1:2:3") is an error rather than text "text:1"."""
    shown = item.strip()
    parts = shown.replace("://", _URL_MARK).rsplit(":", 2)
    text = parts[0].replace(_URL_MARK, "://").strip()
    values = []
    for number in (p.strip() for p in parts[1:]):
        value = _number(number)
        if value is None:
            raise LabError(f"cannot read the weight {number!r} in the {what} {shown!r}; write 'text:weight' or "
                           "'text:weight:stop' with numbers, e.g. 'a red circle:1 | a square:-0.5'")
        if not math.isfinite(value):
            raise LabError(f"the weight or stop {number!r} in the {what} {shown!r} is not a finite number; "
                           "use e.g. 'a cat:1' or 'a cat:-1:0.5'")
        values.append(value)
    if len(values) == 2 and ":" in text and _number(text.rsplit(":", 1)[1].strip()) is not None:
        raise LabError(f"the {what} {shown!r} has more than three fields; write at most 'text:weight:stop'")
    if not text:
        raise LabError(f"the {what} {shown!r} has no text; write 'text:weight'")
    return Prompt(text, values[0] if values else 1.0, values[1] if len(values) > 1 else -math.inf)


def parse_prompts(spec: str, what: str = "prompt") -> list[Prompt]:
    """Split "a:1 | b:-0.5 | c" at the bars and parse each part."""
    return [parse_prompt(part, what) for part in (spec or "").split("|") if part.strip()]


def parse_story(spec: str) -> list[list[Prompt]]:
    """Story mode (nerdyrodent #48): phrases separated by "^", each a "|"-list of prompts."""
    phrases = [parse_prompts(phrase) for phrase in (spec or "").split(STORY_SEPARATOR)]
    return [phrase for phrase in phrases if phrase]


# Differentiable pieces


class _ClampWithGrad(torch.autograd.Function):
    """Clamp in the forward pass; in the backward pass let the gradient through wherever a descent
    step (-grad) would move the value back towards the range (the Colab's ClampWithGrad)."""

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
    """forward_value in the forward pass, the gradient of backward_value in the backward pass
    (the reference's replace_grad, for tensors of the same shape)."""
    return backward_value + (forward_value - backward_value).detach()


def quantize_straight_through(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Each latent vector replaced by its nearest code, the gradient passed to z unchanged (VQ-VAE's
    straight-through estimator, van den Oord et al. 2017). The reference does the same for VQModel
    and for GumbelVQ (nearest code in quantize.embed), never sampling Gumbel noise in the loop."""
    flat = z.movedim(1, 3)
    distances = flat.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2.0 * flat @ codebook.t()
    codes = codebook[distances.argmin(-1)]
    return straight_through(codes, flat).movedim(3, 1)


def synthesize(vqgan, z: torch.Tensor) -> torch.Tensor:
    """Latent -> image in [0, 1]: straight-through quantisation, decode, clamp with gradient."""
    z_q = quantize_straight_through(z, vqgan.codebook)
    return clamp_with_grad(vqgan.decode(z_q).add(1.0).div(2.0), 0.0, 1.0)


def spherical_distance(embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit vectors, 2 arcsin(|a - b| / 2)^2, per (cutout, target) pair."""
    chord = (F.normalize(embeddings, dim=-1)[:, None, :] - F.normalize(target, dim=-1)[None, :, :]).norm(dim=-1)
    return chord.div(2).clamp(max=1.0).arcsin().pow(2).mul(2)


def prompt_loss(embeddings: torch.Tensor, target: torch.Tensor, weight: float, stop: float) -> torch.Tensor:
    """The reference's Prompt: the distances times sign(weight) first, then the stop (the value kept,
    the gradient that of max(signed distance, stop)), the mean times |weight|. So "text:-1:-0.5"
    pushes away only until the distance exceeds 0.5 (its gradient is zero beyond)."""
    signed = spherical_distance(embeddings, target) * math.copysign(1.0, weight)
    floored = straight_through(signed, torch.maximum(signed, torch.full_like(signed, stop)))
    return abs(weight) * floored.mean()


# Cutouts: resampling and the reference's augmentation sets


def lanczos_kernel(ratio: float, a: int = 2) -> torch.Tensor:
    """Lanczos(a) taps, sinc(x) sinc(x / a), at multiples of `ratio` (output/input size) inside (-a, a),
    normalised to sum 1: the low-pass filter the reference applies before shrinking."""
    half = math.ceil(a / ratio + 1) - 2
    x = torch.arange(-half, half + 1, dtype=torch.float32) * ratio
    taps = torch.sinc(x) * torch.sinc(x / a) * (x.abs() < a)
    return taps / taps.sum()


def resample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (n, c, h, w) to `size`: where it shrinks, a separable Lanczos(2) low-pass (reflect
    padding) first, then bicubic interpolation with align_corners=True (the reference's resample)."""
    n, c, h, w = image.shape
    out_h, out_w = size
    if (out_h, out_w) == (h, w):
        return image  # bicubic with align_corners=True at the same size samples the pixels themselves
    x = image.reshape(n * c, 1, h, w)
    if out_h < h:
        kernel = lanczos_kernel(out_h / h).to(x)
        pad = (kernel.numel() - 1) // 2
        x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))
    if out_w < w:
        kernel = lanczos_kernel(out_w / w).to(x)
        pad = (kernel.numel() - 1) // 2
        x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.interpolate(x.reshape(n, c, h, w), size, mode="bicubic", align_corners=True)


def _random_boxes(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float) -> list[tuple[int, int, int]]:
    """`cutn` random squares (side, x, y), side min + (max - min) * U^cut_pow (the reference's MakeCutouts)."""
    _, _, side_y, side_x = image.shape
    max_size, min_size = min(side_x, side_y), min(side_x, side_y, cut_size)
    boxes = []
    for _ in range(cutn):
        size = int(torch.rand([]).item() ** cut_pow * (max_size - min_size) + min_size)
        offset_x = int(torch.randint(0, side_x - size + 1, ()).item())
        offset_y = int(torch.randint(0, side_y - size + 1, ()).item())
        boxes.append((size, offset_x, offset_y))
    return boxes


def random_crops(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float) -> torch.Tensor:
    """`cutn` random square crops, each resampled to cut_size (crops of one side together: fewer calls)."""
    boxes = _random_boxes(image, cut_size, cutn, cut_pow)
    out: list[torch.Tensor | None] = [None] * cutn
    for size in sorted({box[0] for box in boxes}):
        chosen = [i for i, box in enumerate(boxes) if box[0] == size]
        crops = torch.cat([image[:, :, boxes[i][2]:boxes[i][2] + size, boxes[i][1]:boxes[i][1] + size] for i in chosen])
        for i, cutout in zip(chosen, resample(crops, (cut_size, cut_size)), strict=True):
            out[i] = cutout
    return torch.stack(out)


def pooled_cutouts(image: torch.Tensor, cut_size: int, cutn: int) -> torch.Tensor:
    """nerdyrodent's pooled cutouts: the whole image, (adaptive average + adaptive max pool) / 2,
    repeated cutn times (the augmentations make them differ)."""
    pooled = (F.adaptive_avg_pool2d(image, cut_size) + F.adaptive_max_pool2d(image, cut_size)) / 2
    return pooled.expand(cutn, -1, -1, -1)


def _some(batch: torch.Tensor, p: float, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply `transform` to a random share p of the cutouts (kornia's per-sample probability); only the
    chosen ones are computed."""
    chosen = (torch.rand(batch.shape[0], device=batch.device) < p).nonzero()[:, 0]
    if chosen.numel() == 0:
        return batch
    return batch.index_copy(0, chosen, transform(batch.index_select(0, chosen)))


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def random_flip(batch: torch.Tensor, p: float) -> torch.Tensor:
    return _some(batch, p, lambda x: x.flip(3))


def _hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue (HSV, in turns) of each image by `shift`, keeping saturation and value."""
    value, argmax = x.max(1, keepdim=True)
    delta = value - x.min(1, keepdim=True).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = x.unbind(1)
    sector = torch.stack([(g - b), 2 * safe[:, 0] + (b - r), 4 * safe[:, 0] + (r - g)], 1).gather(1, argmax) / safe
    hue = (sector / 6 + shift.view(-1, 1, 1, 1)) % 1
    # Back to RGB, the piecewise-linear form: channel = v - (v - min) clamp(min(k, 4 - k), 0, 1),
    # k = (n + 6 hue) mod 6 with n = 5, 3, 1 for r, g, b.
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) + hue * 6) % 6
    return value - delta * torch.minimum(k, 4 - k).clamp(0, 1)


def color_jitter(batch: torch.Tensor, p: float, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0) -> torch.Tensor:
    """kornia's ColorJitter, restated: brightness and contrast factors in [1 - b, 1 + b] (contrast about
    the mean grey), HSV saturation factor in [1 - s, 1 + s] and hue shift in [-h, h] turns, in that order."""

    def jitter(x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        if brightness:
            x = (x * _uniform(n, 1 - brightness, 1 + brightness, device).view(n, 1, 1, 1)).clamp(0, 1)
        if contrast:
            mean = x.mean((1, 2, 3), keepdim=True)
            x = (mean + (x - mean) * _uniform(n, 1 - contrast, 1 + contrast, device).view(n, 1, 1, 1)).clamp(0, 1)
        if saturation:
            # Scaling HSV's saturation with the value kept moves each channel towards the largest: exact.
            value = x.max(1, keepdim=True).values
            factor = _uniform(n, 1 - saturation, 1 + saturation, device).view(n, 1, 1, 1)
            x = (value + (x - value) * factor).clamp(0, 1)
        if hue:
            x = _hue_shift(x, _uniform(n, -hue, hue, device))
        return x

    return _some(batch, p, jitter)


def random_sharpness(batch: torch.Tensor, p: float, sharpness: float) -> torch.Tensor:
    """kornia's RandomSharpness, restated: blend towards the 3x3 smoothing [[1,1,1],[1,5,1],[1,1,1]]/13
    by a factor in [0, sharpness] (kornia's convention: 0 leaves the image), borders left as they are."""

    def sharpen(x: torch.Tensor) -> torch.Tensor:
        inner = x[..., 1:-1, 1:-1]
        smooth = (F.avg_pool2d(x, 3, stride=1) * 9 + 4 * inner) / 13
        factor = _uniform(x.shape[0], 0.0, sharpness, x.device).view(-1, 1, 1, 1)
        return x + F.pad((smooth - inner) * factor, (1, 1, 1, 1))

    return _some(batch, p, sharpen)


def _warp(batch: torch.Tensor, matrices: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Sample batch at M @ (x, y, 1) for every output pixel (normalised coordinates; 3x3 M, projective)."""
    n, _, h, w = batch.shape
    identity = torch.eye(2, 3, device=batch.device, dtype=batch.dtype).expand(n, 2, 3)
    base = F.affine_grid(identity, [n, 1, h, w], align_corners=False)  # (n, h, w, 2)
    points = torch.cat([base, torch.ones_like(base[..., :1])], -1) @ matrices.transpose(1, 2)[:, None]
    grid = points[..., :2] / points[..., 2:]
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_affine(batch: torch.Tensor, p: float, degrees: float, translate: float, shear: float = 0.0,
                  padding_mode: str = "border") -> torch.Tensor:
    """kornia's RandomAffine, restated: rotation in [-degrees, degrees], shift up to `translate` of the
    side along each axis, x-shear in [-shear, shear] degrees; padding `border` or `zeros`."""

    def warp(x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        angle = torch.deg2rad(_uniform(n, -degrees, degrees, device))
        shift = (torch.rand(n, 2, device=device) * 2 - 1) * translate * 2  # normalised coordinates span 2
        shear_x = torch.tan(torch.deg2rad(_uniform(n, -shear, shear, device)))
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin + cos * shear_x, shift[:, 0]], 1),
                             torch.stack([sin, cos + sin * shear_x, shift[:, 1]], 1)], 1).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)

    return _some(batch, p, warp)


def random_perspective(batch: torch.Tensor, p: float, distortion: float) -> torch.Tensor:
    """kornia's RandomPerspective, restated: each corner moves inwards by up to distortion * half the
    side along each axis; the image is warped by the homography between the two quadrilaterals."""

    def warp(x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=device)
        moved = corners - corners * distortion * torch.rand(n, 4, 2, device=device)
        # The homography H with H(moved_k) ~ corners_k (output pixel -> where to sample): 8 unknowns.
        mx, my = moved.unbind(-1)
        u, v = corners.expand(n, 4, 2).unbind(-1)
        zeros, ones = torch.zeros_like(mx), torch.ones_like(mx)
        rows_u = torch.stack([mx, my, ones, zeros, zeros, zeros, -u * mx, -u * my], -1)
        rows_v = torch.stack([zeros, zeros, zeros, mx, my, ones, -v * mx, -v * my], -1)
        system = torch.cat([rows_u, rows_v], 1).double()
        solution = torch.linalg.solve(system, torch.cat([u, v], 1).double()[..., None])[..., 0]
        matrices = torch.cat([solution, torch.ones(n, 1, device=device, dtype=solution.dtype)], 1).view(n, 3, 3)
        return _warp(x, matrices.to(x.dtype), "zeros")

    return _some(batch, p, warp)


def random_erasing(batch: torch.Tensor, p: float, scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3)) -> torch.Tensor:
    """kornia's RandomErasing(same_on_batch=True), restated: one rectangle of area scale * h * w and
    aspect ratio log-uniform in `ratio`, set to 0 in every cutout, with probability p."""
    _, _, h, w = batch.shape
    if torch.rand([]).item() >= p:
        return batch
    area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand([]).item())
    aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand([]).item())
    eh, ew = min(h, max(1, round(math.sqrt(area * aspect)))), min(w, max(1, round(math.sqrt(area / aspect))))
    top, left = int(torch.randint(0, h - eh + 1, ()).item()), int(torch.randint(0, w - ew + 1, ()).item())
    mask = torch.ones(1, 1, h, w, device=batch.device, dtype=batch.dtype)
    mask[..., top:top + eh, left:left + ew] = 0
    return batch * mask


def add_noise(batch: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
    """Gaussian noise of a random strength in [0, strength) per cutout (the reference's noise_fac)."""
    factors = torch.rand(batch.shape[0], 1, 1, 1, device=batch.device, dtype=batch.dtype) * strength
    return batch + factors * torch.randn_like(batch)


def ours_augment(batch: torch.Tensor) -> torch.Tensor:
    """This project's first set (kept as CUT_METHOD="ours"): flip, rotation up to 15 degrees and shift
    up to 10 % (reflection padding), brightness and saturation within 5 %, noise up to 0.1."""
    n, device = batch.shape[0], batch.device
    batch = random_flip(batch, 0.5)
    angle = (torch.rand(n, device=device) * 2 - 1) * math.radians(15.0)
    shift = (torch.rand(n, 2, device=device) * 2 - 1) * 0.2
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = 1 + (torch.rand(n, 1, 1, 1, device=device) * 2 - 1) * 0.05
    grey = batch.mean(1, keepdim=True)
    saturation = 1 + (torch.rand(n, 1, 1, 1, device=device) * 2 - 1) * 0.05
    return add_noise((grey + (batch - grey) * saturation) * brightness)


def _ours_cutouts(image, cut_size, cutn, cut_pow):
    return torch.cat([F.interpolate(image[:, :, y:y + size, x:x + size], size=(cut_size, cut_size), mode="bilinear",
                                    align_corners=False, antialias=size > cut_size)
                      for size, x, y in _random_boxes(image, cut_size, cutn, cut_pow)])


def _updated(image, cut_size, cutn, cut_pow):
    # The Colab's MakeCutouts ("z+quantize method with augmentations"; the reference's "updated").
    batch = random_crops(image, cut_size, cutn, cut_pow)
    batch = random_flip(batch, 0.5)
    batch = color_jitter(batch, 0.7, saturation=0.01, hue=0.01)
    batch = random_sharpness(batch, 0.4, 0.3)
    batch = random_affine(batch, 0.8, degrees=30, translate=0.1, padding_mode="border")
    return add_noise(random_perspective(batch, 0.4, 0.2))


def _latest(image, cut_size, cutn, cut_pow):
    # nerdyrodent's default ("latest"): pooled cutouts, augments Af, Pe, Ji, Er in that order.
    batch = pooled_cutouts(image, cut_size, cutn)
    batch = random_affine(batch, 0.7, degrees=15, translate=0.1, shear=5, padding_mode="zeros")
    batch = random_perspective(batch, 0.7, 0.7)
    batch = color_jitter(batch, 0.7, brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1)
    return add_noise(random_erasing(batch, 0.7))


def _original(image, cut_size, cutn, cut_pow):
    # The first notebook's MakeCutouts: crops only, clamped with gradient.
    return clamp_with_grad(random_crops(image, cut_size, cutn, cut_pow), 0.0, 1.0)


CUT_METHODS: dict[str, Callable] = {
    "updated": _updated,
    "latest": _latest,
    "original": _original,
    "ours": lambda image, cut_size, cutn, cut_pow: ours_augment(_ours_cutouts(image, cut_size, cutn, cut_pow)),
}


def make_cutouts(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float, method: str) -> torch.Tensor:
    """(cutn, 3, cut_size, cut_size) cutouts of the image by CUT_METHOD `method` (see CUT_METHODS)."""
    if method not in CUT_METHODS:
        raise LabError(f"CUT_METHOD {method!r} is not one of {', '.join(CUT_METHODS)}")
    return CUT_METHODS[method](image, cut_size, cutn, cut_pow)


# Images


def read_image(path: str | Path, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    return read_rgb(path, what)


def to_tensor(image: Image.Image, device) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device)


def keep_aspect(image: Image.Image, width: int, height: int) -> Image.Image:
    """An image prompt resized with Lanczos to its own aspect ratio, area at most width x height
    (the reference's resize_image): a wide picture is not squeezed into a square."""
    ratio = image.size[0] / image.size[1]
    area = min(image.size[0] * image.size[1], width * height)
    return image.resize((round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)), Image.Resampling.LANCZOS)


def zoom_image(image: Image.Image, scale: float, shift_x: int, shift_y: int) -> Image.Image:
    """The reference's zoom_at about the centre (scale > 1 zooms in) then a wrapped shift."""
    w, h = image.size
    if scale != 1:
        half_w, half_h = w / (2 * scale), h / (2 * scale)
        image = image.crop((w / 2 - half_w, h / 2 - half_h, w / 2 + half_w, h / 2 + half_h))
        image = image.resize((w, h), Image.Resampling.LANCZOS)
    if shift_x or shift_y:
        image = ImageChops.offset(image, shift_x, shift_y)
    return image


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


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image[0].detach().clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)


def encode_text(clip, text: str, device, notify: bool = True) -> torch.Tensor:
    """CLIP's text embedding; a prompt longer than CLIP's context is cut, with a notice saying how much."""
    model, tokenizer, _, _ = clip
    context = int(getattr(tokenizer, "context_length", 77))
    if hasattr(tokenizer, "encode"):
        count = len(tokenizer.encode(text))
        if count > context - 2 and notify:
            print(f"notice: the prompt {text[:40]!r}... has {count} tokens; this CLIP reads {context} including its "
                  f"start and end marks, so only the first {context - 2} tokens were kept")
    return model.encode_text(tokenizer([text]).to(device)).float()


# The loop


@dataclass
class GenerationResult:
    image: np.ndarray                      # final image, HxWx3 uint8
    losses: dict[str, list[float]]         # per prompt label, one value per iteration (NaN while inactive)
    total_losses: list[float]              # summed loss per iteration (the quantity Adam lowers)
    iterations: int                        # iterations actually run
    seed: int
    width: int
    height: int
    interrupted: bool = False
    frames: list[Path] = field(default_factory=list)
    video_frames: int = 0


@dataclass
class _Target:
    label: str
    embedding: torch.Tensor
    weight: float
    stop: float
    phrase: int | None  # story phrase index, None for image prompts (always active)


def check_settings(settings: LoopSettings) -> None:
    """The checks generate() relies on, as one-line errors: ranges, prompts (an empty one is refused),
    the initial image. All cheap, so a script runs them before loading the models."""
    problems = []
    if settings.max_iterations != -1 and settings.max_iterations < 1:
        problems.append(f"max_iterations={settings.max_iterations} must be -1 (until Ctrl+C) or > 0")
    values = {name: getattr(settings, name) for name in ("cutn", "display_frequency", "prompt_frequency",
                                                         "zoom_every", "step_size", "cut_pow", "zoom_scale")}
    problems += [f"{name}={values[name]} must be > 0" for name in ("cutn", "display_frequency") if values[name] < 1]
    problems += [f"{name}={values[name]} must be >= 0" for name in ("prompt_frequency", "zoom_every") if values[name] < 0]
    problems += [f"{name}={values[name]} must be a finite number > 0" for name in ("step_size", "cut_pow", "zoom_scale")
                 if not math.isfinite(values[name]) or values[name] <= 0]
    if not math.isfinite(settings.init_weight):
        problems.append(f"init_weight={settings.init_weight} must be finite")
    if settings.cut_method not in CUT_METHODS:
        problems.append(f"cut_method {settings.cut_method!r} is not one of {', '.join(CUT_METHODS)}")
    if settings.seed < 0:
        problems.append("the seed must be >= 0 (start_run draws one for SEED=-1)")
    if problems:
        raise LabError("; ".join(problems))
    story = parse_story(settings.prompts)
    image_prompts = parse_prompts(settings.target_images, "target image")
    if not story and not image_prompts:
        raise LabError("nothing to steer towards: PROMPTS and TARGET_IMAGES are both empty")
    if len(story) > 1 and settings.prompt_frequency < 1:
        raise LabError(f"PROMPTS has {len(story)} story phrases separated by '^'; set PROMPT_FREQUENCY > 0 "
                       "(iterations per phrase) or remove the '^'")
    if settings.initial_image:  # a missing, huge or broken image fails here, before any model is loaded
        read_image(settings.initial_image, "INITIAL_IMAGE")


def _encode_image(vqgan, image: Image.Image, device) -> torch.Tensor:
    """The quantised latent of an image (GumbelVQ: argmax of its logits, no Gumbel noise)."""
    z_q, _, _ = vqgan.encode(to_tensor(image, device) * 2 - 1)
    return z_q


def generate(settings: LoopSettings, vqgan, clip, *, device: str | torch.device = "cpu", on_display=None,
             guard=None, progress: bool = True, on_step=None) -> GenerationResult:
    """Run the loop. clip is load_clip()'s (model, tokenizer, mean, std); on_display(iteration, image_uint8)
    every display_frequency iterations and at the end; on_step(iteration, total_loss) after each step;
    guard.requested (an InterruptGuard) stops early. The same seed gives the same image."""
    check_settings(settings)
    story = parse_story(settings.prompts)
    image_prompts = parse_prompts(settings.target_images, "target image")
    clip_model, _, mean, std = clip
    factor = vqgan.downsampling_factor
    width, height = round_size(settings.width, settings.height, factor, notify=progress)
    cut_size = clip_input_size(clip_model)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def embed_cutouts(image: torch.Tensor) -> torch.Tensor:
        cutouts = make_cutouts(image, cut_size, settings.cutn, settings.cut_pow, settings.cut_method)
        return clip_model.encode_image((cutouts - mean_t) / std_t).float()

    torch.manual_seed(settings.seed)
    codebook = vqgan.codebook
    with torch.no_grad():
        if settings.initial_image:
            start = read_image(settings.initial_image, "INITIAL_IMAGE").resize((width, height), Image.Resampling.LANCZOS)
            z = _encode_image(vqgan, start, device)
        else:
            # Random codebook tokens from the seeded generator: the seed fixes the start.
            indices = torch.randint(codebook.shape[0], (height // factor, width // factor), device=device)
            z = codebook[indices].permute(2, 0, 1)[None]
        # Per-channel range of the codebook; z is kept inside it after every step (the Colab's z_min/z_max).
        z_min = codebook.min(0).values.view(1, -1, 1, 1)
        z_max = codebook.max(0).values.view(1, -1, 1, 1)
        targets = [_Target(prompt.text, encode_text(clip, prompt.text, device, progress), prompt.weight, prompt.stop,
                           phrase if len(story) > 1 else None)
                   for phrase, prompts in enumerate(story) for prompt in prompts]
        for prompt in image_prompts:
            picture = keep_aspect(read_image(prompt.text, "target image"), width, height)
            targets.append(_Target(f"image {Path(prompt.text).name}", embed_cutouts(to_tensor(picture, device)),
                                   prompt.weight, prompt.stop, None))
    z_initial = z.clone()
    z = z.detach().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=settings.step_size)
    losses: dict[str, list[float]] = {target.label: [] for target in targets}
    if settings.init_weight:
        losses["init"] = []
    total_losses: list[float] = []
    counter = range(settings.max_iterations) if settings.max_iterations > 0 else itertools.count()
    bar = tqdm(counter, total=settings.max_iterations if settings.max_iterations > 0 else None, desc="VQGAN+CLIP",
               unit="it", disable=not progress, file=sys.stdout)
    interrupted = False
    for iteration in bar:
        phrase = (iteration // settings.prompt_frequency) % len(story) if len(story) > 1 else None
        optimizer.zero_grad(set_to_none=True)
        image = synthesize(vqgan, z)
        if on_display is not None and iteration % settings.display_frequency == 0:
            on_display(iteration, to_uint8(image))
        embeddings = embed_cutouts(image)
        terms = []
        for target in targets:
            if target.phrase is not None and target.phrase != phrase:
                losses[target.label].append(math.nan)
                continue
            term = prompt_loss(embeddings, target.embedding, target.weight, target.stop)
            terms.append(term)
            losses[target.label].append(float(term.detach()))
        if settings.init_weight:
            term = F.mse_loss(z, z_initial) * settings.init_weight / 2
            terms.append(term)
            losses["init"].append(float(term.detach()))
        total = torch.stack(terms).sum()
        total.backward()
        optimizer.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
        total_losses.append(float(total.detach()))
        bar.set_postfix(loss=f"{total_losses[-1]:.4f}", **({"phrase": phrase} if phrase is not None else {}))
        if on_step is not None:
            on_step(iteration, total_losses[-1])
        if settings.zoom_every and (iteration + 1) % settings.zoom_every == 0:
            # Zoom video (the reference's --zoom_video): zoom and shift the current image, encode it
            # again as the new latent and start a fresh Adam, every zoom_every iterations.
            with torch.no_grad():
                picture = Image.fromarray(to_uint8(synthesize(vqgan, z)))
                zoomed = zoom_image(picture, settings.zoom_scale, settings.zoom_shift_x, settings.zoom_shift_y)
                z = _encode_image(vqgan, zoomed, device).detach().requires_grad_(True)
                z_initial = z.detach().clone()
            optimizer = torch.optim.Adam([z], lr=settings.step_size)
        if guard is not None and guard.requested:
            interrupted = True
            break
    bar.close()
    iterations = len(total_losses)
    with torch.no_grad():
        final = to_uint8(synthesize(vqgan, z))
    if on_display is not None:
        on_display(iterations, final)
    return GenerationResult(final, losses, total_losses, iterations, settings.seed, width, height, interrupted)


def peak_memory_mb(device: str | torch.device) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA memory on a GPU), in MiB."""
    import resource

    memory = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if str(device).startswith("cuda"):
        memory["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return memory
