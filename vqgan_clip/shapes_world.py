"""A captioned shapes world: pictures and their captions generated together, deterministically.

The article's pretrained VQGAN and CLIP cannot be downloaded here, so the project trains small
versions of both on this world, where every picture comes with a caption that describes it exactly:

    from vqgan_clip.shapes_world import make_scenes, render_scenes
    scenes = make_scenes("train", 0, 1000)         # scene dicts, deterministic in (split, index)
    images = render_scenes(scenes)                  # uint8 array (1000, 64, 64, 3)
    captions = [scene["caption"] for scene in scenes]

A scene has one or two shapes of a named colour, size and position on a plain or gradient
background of another colour. The colour-shape pairs HELD_OUT_PAIRS appear only outside "train".

Run alone to write a sample grid: python -m vqgan_clip.shapes_world
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from lab import LabError

# -----------------------------------------------------------------------------
# Constants of the world. Changing them changes every picture (and invalidates trained weights).
IMAGE_SIZE = 64                  # pixels per side of every scene
SUPERSAMPLE = 4                  # shapes are drawn at 4x and box-filtered down: smooth edges
SHAPES = ("circle", "square", "triangle", "star", "ring")
COLOURS = {                      # named colours and their RGB values
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 220), "yellow": (240, 220, 30),
    "purple": (140, 50, 180), "orange": (250, 140, 20), "white": (245, 245, 245), "black": (15, 15, 15),
}
SIZES = {"small": 9.0, "large": 15.0}   # shape "radius" in pixels at 64x64
POSITIONS = {"left": (16, 32), "right": (48, 32), "top": (32, 16), "bottom": (32, 48), "centre": (32, 32)}  # px
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "centre": "in the centre"}
JITTER = 2                       # random shift of a shape's centre, pixels
TWO_SHAPE_SHARE = 0.25           # share of scenes with two shapes
GRADIENT_SHARE = 0.5             # share of backgrounds that are gradients (towards grey)
# Colour-shape pairs never seen in training (one per shape, five colours): the generalisation test.
HELD_OUT_PAIRS = (("red", "star"), ("green", "ring"), ("blue", "triangle"), ("yellow", "square"),
                  ("purple", "circle"))
SPLIT_IDS = {"train": 0, "test": 1, "val": 2}
# -----------------------------------------------------------------------------

COLOUR_NAMES = tuple(COLOURS)
SIZE_NAMES = tuple(SIZES)
POSITION_NAMES = tuple(POSITIONS)

# Caption templates for one shape. Every template names the colour and the shape; the others add
# the size, the position and/or the background, so captions vary the way real alt-texts do.
ONE_SHAPE_TEMPLATES = (
    "a {size} {colour} {shape} on a {background} background",
    "a {colour} {shape} {where} on a {background} background",
    "a {size} {colour} {shape} {where} on a {background} background",
    "a {colour} {shape} on a {background} background",
    "a {colour} {shape} {where}",
    "a {size} {colour} {shape} {where}, {background} background",
)
TWO_SHAPE_TEMPLATES = (
    "a {colour} {shape} {where} and a {colour2} {shape2} {where2} on a {background} background",
    "a {colour} {shape} and a {colour2} {shape2} on a {background} background",
)


def caption_for(scene: dict, template: str) -> str:
    """Fill a caption template with the scene's attributes (first shape, and the second if any)."""
    first = scene["shapes"][0]
    values = {"colour": first["colour"], "shape": first["shape"], "size": first["size"],
              "where": POSITION_PHRASES[first["position"]], "background": scene["background"]}
    if len(scene["shapes"]) > 1:
        second = scene["shapes"][1]
        values.update(colour2=second["colour"], shape2=second["shape"], size2=second["size"],
                      where2=POSITION_PHRASES[second["position"]])
    return template.format(**values)


def make_scene(split: str, index: int, seed: int = 0, rng: np.random.Generator | None = None) -> dict:
    """Scene `index` of `split`: the same dict every time for the same (split, index, seed)."""
    if split not in SPLIT_IDS:
        raise LabError(f"unknown split {split!r}; use one of {', '.join(SPLIT_IDS)}")
    rng = rng or np.random.default_rng([seed, SPLIT_IDS[split], index])
    count = 2 if rng.random() < TWO_SHAPE_SHARE else 1
    positions = list(rng.permutation(POSITION_NAMES)) if count == 1 else list(
        [("left", "right"), ("top", "bottom"), ("right", "left"), ("bottom", "top")][rng.integers(4)])
    shapes = []
    for k in range(count):
        while True:
            colour = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
            shape = SHAPES[rng.integers(len(SHAPES))]
            if split != "train" or (colour, shape) not in HELD_OUT_PAIRS:
                break
        size = "small" if count == 2 else SIZE_NAMES[rng.integers(len(SIZE_NAMES))]
        jitter = rng.integers(-JITTER, JITTER + 1, size=2)
        shapes.append({"shape": shape, "colour": colour, "size": size, "position": str(positions[k]),
                       "jitter": (int(jitter[0]), int(jitter[1])), "angle": float(rng.uniform(-8, 8))})
    used = {s["colour"] for s in shapes}
    background = str(rng.choice([c for c in COLOUR_NAMES if c not in used]))
    gradient = bool(rng.random() < GRADIENT_SHARE)
    direction = float(rng.uniform(0, 2 * np.pi))
    scene = {"shapes": shapes, "background": background, "gradient": gradient, "direction": direction,
             "split": split, "index": index}
    templates = ONE_SHAPE_TEMPLATES if count == 1 else TWO_SHAPE_TEMPLATES
    scene["caption"] = caption_for(scene, templates[rng.integers(len(templates))])
    return scene


def make_scenes(split: str, start: int, count: int, seed: int = 0) -> list[dict]:
    return [make_scene(split, i, seed) for i in range(start, start + count)]


def random_caption(scene: dict, rng: np.random.Generator) -> str:
    """Another caption of the same scene from a random template (a text augmentation)."""
    templates = ONE_SHAPE_TEMPLATES if len(scene["shapes"]) == 1 else TWO_SHAPE_TEMPLATES
    return caption_for(scene, templates[rng.integers(len(templates))])


def _polygon(shape: str, cx: float, cy: float, r: float, angle_deg: float) -> list[tuple[float, float]]:
    """Vertices of a square, triangle or five-pointed star centred on (cx, cy)."""
    if shape == "square":
        angles, radii = np.deg2rad(45 + np.arange(4) * 90), np.full(4, r * 1.2)
    elif shape == "triangle":
        angles, radii = np.deg2rad(-90 + np.arange(3) * 120), np.full(3, r * 1.25)
        cy = cy + r * 0.2  # the centroid sits low: centre the triangle's bounding box instead
    else:  # star: ten vertices alternating outer and inner radius (ratio 0.45)
        angles = np.deg2rad(-90 + np.arange(10) * 36)
        radii = np.where(np.arange(10) % 2 == 0, r * 1.3, r * 0.55)
    angles = angles + np.deg2rad(angle_deg)
    return [(cx + rad * np.cos(a), cy + rad * np.sin(a)) for a, rad in zip(angles, radii, strict=True)]


def shape_mask(shape: dict) -> np.ndarray:
    """Coverage (0..1, float32, IMAGE_SIZE x IMAGE_SIZE) of one shape, anti-aliased by supersampling."""
    big = IMAGE_SIZE * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    x, y = POSITIONS[shape["position"]]
    cx, cy = (x + shape["jitter"][0]) * SUPERSAMPLE, (y + shape["jitter"][1]) * SUPERSAMPLE
    r = SIZES[shape["size"]] * SUPERSAMPLE
    if shape["shape"] == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape["shape"] == "ring":
        draw.ellipse([cx - r * 1.1, cy - r * 1.1, cx + r * 1.1, cy + r * 1.1], fill=255)
        inner = r * 0.6
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    else:
        draw.polygon(_polygon(shape["shape"], cx, cy, r, shape["angle"]), fill=255)
    small = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


_GRID = np.stack(np.meshgrid(np.linspace(-1, 1, IMAGE_SIZE), np.linspace(-1, 1, IMAGE_SIZE)), -1)


def background_image(scene: dict) -> np.ndarray:
    """The background (float32 RGB 0..255): plain, or blended up to 35 % towards grey along a direction."""
    colour = np.array(COLOURS[scene["background"]], dtype=np.float32)
    image = np.broadcast_to(colour, (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    if scene["gradient"]:
        d = np.array([np.cos(scene["direction"]), np.sin(scene["direction"])], dtype=np.float32)
        t = ((_GRID @ d) / np.sqrt(2) + 1) / 2  # 0..1 across the picture
        image = image * (1 - 0.35 * t[..., None]) + 128.0 * 0.35 * t[..., None]
    return image


def render_scene(scene: dict) -> np.ndarray:
    """The scene's picture: uint8 array (IMAGE_SIZE, IMAGE_SIZE, 3)."""
    image = background_image(scene)
    for shape in scene["shapes"]:
        coverage = shape_mask(shape)[..., None]
        image = image * (1 - coverage) + np.array(COLOURS[shape["colour"]], dtype=np.float32) * coverage
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_scenes(scenes: list[dict]) -> np.ndarray:
    if not scenes:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return np.stack([render_scene(scene) for scene in scenes])


def single_shape_scene(colour: str, shape: str, background: str, size: str = "large",
                       position: str = "centre", gradient: bool = False) -> dict:
    """A hand-specified one-shape scene (for prompts, tests and zero-shot probes)."""
    for value, valid, what in ((colour, COLOURS, "colour"), (background, COLOURS, "background colour"),
                               (shape, SHAPES, "shape"), (size, SIZES, "size"), (position, POSITIONS, "position")):
        if value not in valid:
            raise LabError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    scene = {"shapes": [{"shape": shape, "colour": colour, "size": size, "position": position,
                         "jitter": (0, 0), "angle": 0.0}],
             "background": background, "gradient": gradient, "direction": 0.0, "split": "manual", "index": -1}
    scene["caption"] = caption_for(scene, ONE_SHAPE_TEMPLATES[0])
    return scene


def palette_shares(image: np.ndarray) -> dict[str, float]:
    """Share of pixels nearest to each named colour (a check without CLIP). A gradient background
    (at most 35 % towards grey) stays nearest to its own colour, so it counts whole."""
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    palette = np.array([COLOURS[name] for name in COLOUR_NAMES], dtype=np.float32)
    nearest = np.argmin(((pixels[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(COLOUR_NAMES)) / len(pixels)
    return {name: float(c) for name, c in zip(COLOUR_NAMES, counts, strict=True)}


def pixel_check(image: np.ndarray, colour: str, background: str) -> tuple[bool, dict[str, float]]:
    """True when the shape colour and the background colour are the picture's two commonest named colours."""
    shares = palette_shares(image)
    top_two = set(sorted(shares, key=shares.get, reverse=True)[:2])
    return top_two == {colour, background}, shares


def prompt_colours(prompt: str) -> tuple[str, str] | None:
    """(shape colour, background colour) of a prompt "a <colour> <shape> on a <colour> background", else None."""
    words = prompt.lower().replace(",", " ").split()
    if len(words) == 7 and words[0] == "a" and words[3:5] == ["on", "a"] and words[6] == "background" \
            and words[1] in COLOURS and words[2] in SHAPES and words[5] in COLOURS:
        return words[1], words[5]
    return None
