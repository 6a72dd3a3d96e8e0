"""The date's pictures, painted (the article's photographs are not published): a shaded pen and its
cap on a wooden table, the same pixels on every machine. The cap's place in each is known
(CAP_OPEN_END): the date track finds the cap in the frames with it. draw_pictures.py writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from lab.paths import data_root

PICTURE_NAMES = ("1_pen_and_cap_apart.jpg", "2_cap_approaching.jpg", "3_cap_on_pen.jpg")
# Where the cap's open end sits, as a fraction of the width, in each picture.
CAP_OPEN_END = (0.74, 0.655, 0.545)
_PEN_TIP_X = 0.62
_AXIS_Y = 0.55          # the pen's axis, as a fraction of the height
_PEN_RADIUS = 0.045     # the barrel's radius, as a fraction of the height
_CAP_LENGTH = 0.21      # the cap's tube, as a fraction of the width
_CAP_RADIUS = 1.18      # the cap's radius, in barrel radii
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def pictures_dir(setting: str) -> Path:
    return Path(setting) if setting else data_root() / "pen_cap"


def _table(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A warm wooden table: horizontal grain from smoothed noise and a light fall-off to the right."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    grain = rng.standard_normal(height // 4 + 2)
    grain = np.convolve(grain, np.ones(5) / 5.0, mode="same")
    rows = np.interp(y[:, 0] / 4.0, np.arange(grain.size), grain)[:, None]
    streaks = 0.04 * rows + 0.02 * np.sin(x / width * 9.0 + rows * 3.0)
    light = 1.0 - 0.35 * ((x / width - 0.2) ** 2 + (y / height - 0.1) ** 2)
    base = np.array([0.74, 0.58, 0.42])
    return np.clip((base[None, None, :] + streaks[..., None]) * light[..., None], 0.0, 1.0)


def _cylinder_shade(offset: np.ndarray, colour: np.ndarray, gloss: float) -> np.ndarray:
    """Lambert plus Phong shading of a horizontal cylinder; offset is -1..1 across its width."""
    normal_y = np.clip(offset, -1.0, 1.0)
    normal_z = np.sqrt(np.clip(1.0 - normal_y**2, 0.0, 1.0))
    light = np.array([-0.55, 0.83])  # from above (negative y is up) and towards the viewer
    diffuse = np.clip(normal_y * light[0] + normal_z * light[1], 0.0, 1.0)
    specular = diffuse**40 * gloss
    return np.clip(colour * (0.25 + 0.75 * diffuse[..., None]) + specular[..., None], 0.0, 1.0)


def _shadow(canvas: np.ndarray, boxes: list[tuple[float, float, float, float]], blur: float) -> np.ndarray:
    """Darken the table under each (x0, x1, yc, radius) box with a blurred soft shadow."""
    height, width, _ = canvas.shape
    array = np.zeros((height, width), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    for x0, x1, yc, radius in boxes:
        array[(x >= x0 + radius) & (x <= x1 + radius) & (np.abs(y - yc - radius * 1.2) < radius * 0.8)] = 150
    shadow = Image.fromarray(array).filter(ImageFilter.GaussianBlur(blur))
    darkness = np.asarray(shadow, dtype=np.float64)[..., None] / 255.0
    return canvas * (1.0 - 0.55 * darkness)


def cap_box(cap_open: float, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of the cap (tube, end, clip) drawn with its open end at `cap_open`."""
    radius = _PEN_RADIUS * _CAP_RADIUS * height
    left = cap_open * width
    right = left + _CAP_LENGTH * width + 0.5 * radius
    top = _AXIS_Y * height - 1.3 * radius
    bottom = _AXIS_Y * height + 1.05 * radius
    return int(round(left)), int(round(top)), int(round(right)), int(round(bottom))


def draw_table(height: int = 360, width: int = 640, supersample: int = 2) -> Image.Image:
    """The pictures' bare table: the date track's reference for a frame without pen and cap."""
    canvas = _table(height * supersample, width * supersample, np.random.default_rng(1234))
    image = Image.fromarray((np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return image.resize((width, height), Image.Resampling.LANCZOS) if supersample > 1 else image


def draw_picture(index: int, height: int = 360, width: int = 640, supersample: int = 2,
                 cap_open: float | None = None) -> Image.Image:
    """Picture `index` (0, 1, 2) of the date; `cap_open` moves the cap's open end (fraction of the width)."""
    big_h, big_w = height * supersample, width * supersample
    rng = np.random.default_rng(1234)  # the same grain in all three pictures
    canvas = _table(big_h, big_w, rng)
    y, x = np.mgrid[0:big_h, 0:big_w].astype(np.float64)
    centre_y = _AXIS_Y * big_h
    radius = _PEN_RADIUS * big_h
    body_start, tip_x = 0.12 * big_w, _PEN_TIP_X * big_w
    cone_start = tip_x - 0.06 * big_w
    cap_open = (CAP_OPEN_END[index] if cap_open is None else cap_open) * big_w
    cap_length, cap_radius = _CAP_LENGTH * big_w, radius * _CAP_RADIUS
    cap_end = cap_open + cap_length

    canvas = _shadow(canvas, [(body_start, tip_x, centre_y, radius), (cap_open, cap_end, centre_y, cap_radius)],
                     blur=radius * 0.9)
    offset = (y - centre_y) / radius
    # The pen: a blue barrel, a grey grip, a metal cone and the ball.
    barrel = (x >= body_start) & (x < cone_start - 0.12 * big_w) & (np.abs(offset) <= 1.0)
    canvas[barrel] = _cylinder_shade(offset, np.array([0.12, 0.25, 0.70]), 0.6)[barrel]
    grip = (x >= cone_start - 0.12 * big_w) & (x < cone_start) & (np.abs(offset) <= 0.95)
    ridges = 0.85 + 0.15 * np.cos((x - cone_start) / (0.006 * big_w))
    canvas[grip] = (_cylinder_shade(offset / 0.95, np.array([0.35, 0.36, 0.40]), 0.3) * ridges[..., None])[grip]
    cone_radius = radius * 0.95 * np.clip(1.0 - (x - cone_start) / (tip_x - cone_start), 0.12, 1.0)
    cone = (x >= cone_start) & (x <= tip_x) & (np.abs(y - centre_y) <= cone_radius)
    canvas[cone] = _cylinder_shade((y - centre_y) / cone_radius, np.array([0.78, 0.78, 0.80]), 0.9)[cone]
    end_cap = (x >= body_start - 0.02 * big_w) & (x < body_start) & (np.abs(offset) <= 0.8)
    canvas[end_cap] = _cylinder_shade(offset / 0.8, np.array([0.08, 0.15, 0.45]), 0.5)[end_cap]

    # The cap: a translucent-looking dark blue tube with a rounded closed end and a metal clip.
    cap_offset = (y - centre_y) / cap_radius
    tube = (x >= cap_open) & (x <= cap_end) & (np.abs(cap_offset) <= 1.0)
    dome = ((x - cap_end) / (0.5 * cap_radius)) ** 2 + cap_offset**2 <= 1.0
    cap_mask = tube | (dome & (x > cap_end))
    canvas[cap_mask] = _cylinder_shade(cap_offset, np.array([0.05, 0.12, 0.48]), 0.8)[cap_mask]
    rim = cap_mask & (x < cap_open + 0.012 * big_w)
    canvas[rim] = _cylinder_shade(cap_offset, np.array([0.20, 0.30, 0.65]), 0.4)[rim]
    clip_offset = (y - (centre_y - cap_radius * 1.05)) / (0.22 * cap_radius)
    clip = (x >= cap_open + 0.35 * cap_length) & (x <= cap_end - 0.02 * big_w) & (np.abs(clip_offset) <= 1.0)
    canvas[clip] = _cylinder_shade(clip_offset, np.array([0.75, 0.75, 0.78]), 1.0)[clip]

    image = Image.fromarray((np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return image.resize((width, height), Image.Resampling.LANCZOS) if supersample > 1 else image


def list_pictures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
