"""Photos: export the bundled ones, load a folder with clear errors, split by photo, crop.

NumPy and Pillow only (no TensorFlow); pixels are float32 in [0, 1], arrays H x W x 3.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lab import LabError
from lab.images import ImageTooLarge, read_rgb
from lab.paths import data_root

# The real photographs inside scikit-image and scikit-learn (licences in data/README.md); their synthetic
# images (chessboard, logo, text) are left out: the article is about photographs.
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "rocket.jpg",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
MIN_SIDE = 128  # the predictor's surroundings: a photo must hold at least one 128x128 crop


def default_photos_dir() -> Path:
    return data_root() / "photos"


def export_bundled_photos(target: Path | None = None) -> list[Path]:
    """Copy the bundled photos, byte for byte, into `target` (data/photos/ by default)."""
    import skimage.data
    import sklearn.datasets

    target = Path(target) if target is not None else default_photos_dir()
    target.mkdir(parents=True, exist_ok=True)
    sources = [Path(skimage.data.__file__).parent / name for name in SKIMAGE_PHOTOS]
    sources += [Path(sklearn.datasets.__file__).parent / "images" / name for name in SKLEARN_PHOTOS]
    written = []
    for source in sorted((path for path in sources if path.is_file()), key=lambda path: path.name):
        destination = target / source.name
        if not destination.exists():
            shutil.copyfile(source, destination)
        written.append(destination)
    if not written:
        raise LabError("found none of the photos bundled with scikit-image/scikit-learn; "
                       "reinstall them (./run.sh rebuilds .venv) or point PHOTOS_DIR at your own photos")
    return written


def resolve_photos_dir(setting: str) -> Path:
    """PHOTOS_DIR as a path (relative to the repository root); the default is exported on demand."""
    from lab.paths import REPO_ROOT

    path = Path(setting)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if path.resolve() == default_photos_dir().resolve():
        has_images = path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
        if not has_images:
            print(f"exporting the bundled photos into {path} (python -m beauty_predictor.export_photos)")
            export_bundled_photos(path)
    return path


@dataclass
class Photo:
    name: str
    pixels: np.ndarray  # H x W x 3 float32 in [0, 1]
    path: Path | None = None  # the file it was read from (its bytes go into the data fingerprint)


def load_photos(folder: Path | str, max_side: int = 512, verbose: bool = True) -> list[Photo]:
    """Every readable image in `folder` as RGB floats, larger ones shrunk to `max_side`, ones under 128 px
    skipped with a notice; a LabError listing what was found when no usable photo is left."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LabError(f"PHOTOS_DIR {folder} is not a folder; point PHOTOS_DIR at a folder of photos "
                       "(--set PHOTOS_DIR=/path) or run python -m beauty_predictor.export_photos")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    photos, unreadable, small = [], [], []
    for path in entries:
        if path.is_dir():
            continue
        try:
            rgb = read_rgb(path, "photo")
        except ImageTooLarge:
            unreadable.append(f"{path.name} (more pixels than the safety limit)")
            continue
        except LabError:
            unreadable.append(f"{path.name} (not an image)")
            continue
        if min(rgb.size) < MIN_SIDE:
            small.append(f"{path.name} ({rgb.width}x{rgb.height})")
            continue
        scale = max_side / max(rgb.size)
        if scale < 1:
            rgb = rgb.resize((max(MIN_SIDE, round(rgb.width * scale)), max(MIN_SIDE, round(rgb.height * scale))),
                             Image.Resampling.LANCZOS)
        photos.append(Photo(path.stem, np.asarray(rgb, dtype=np.float32) / 255.0, path))
    if small and verbose:
        print(f"notice: skipped {len(small)} photo(s) smaller than {MIN_SIDE} px on a side: {', '.join(small)}")
    if unreadable and verbose:
        print(f"notice: skipped {len(unreadable)} file(s) that are not readable images: {', '.join(unreadable)}")
    if not photos:
        listing = ", ".join(p.name for p in entries[:20]) or "nothing"
        reasons = [f"{why}: {', '.join(names[:10])}"
                   for why, names in (("unreadable", unreadable), (f"smaller than {MIN_SIDE} px", small)) if names]
        raise LabError(f"no usable photo in {folder} (found {len(entries)} entries: {listing}"
                       + ("; " + "; ".join(reasons) if reasons else "")
                       + f"). Put photos of at least {MIN_SIDE}x{MIN_SIDE} px (png/jpg) there, "
                       "or run python -m beauty_predictor.export_photos for the bundled ones")
    return photos


def split_by_photo(photos: list[Photo], held_out_names: list[str] | tuple[str, ...],
                   every: int = 5) -> tuple[list[Photo], list[Photo]]:
    """Train and held-out photos, whole photos each: those named (file stems), or when none of them is in the
    folder (your own photos), every `every`-th photo in name order."""
    if len(photos) < 2:
        raise LabError(f"need at least 2 photos to split train/held-out by photo, found {len(photos)}; "
                       "add photos to PHOTOS_DIR")
    wanted = {Path(name).stem for name in held_out_names}
    held = [p for p in photos if p.name in wanted]
    if not held:
        held = [p for i, p in enumerate(photos) if i % every == every - 1] or [photos[-1]]
    train = [p for p in photos if p not in held]
    if not train:
        raise LabError("HELD_OUT_PHOTOS covers every photo; leave at least one photo for training")
    return train, held


def random_crops(photos: list[Photo], count: int, size: int, rng: np.random.Generator,
                 flip: bool = True) -> np.ndarray:
    """`count` random size x size crops (photo chosen at random, then a position), mirrored at random."""
    batch = np.empty((count, size, size, 3), dtype=np.float32)
    for i in range(count):
        pixels = photos[rng.integers(len(photos))].pixels
        top = rng.integers(pixels.shape[0] - size + 1)
        left = rng.integers(pixels.shape[1] - size + 1)
        crop = pixels[top:top + size, left:left + size]
        if flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        batch[i] = crop
    return batch


def centre_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """The central size x size square (or the largest multiple of 32 that fits, when smaller)."""
    side = min(size, pixels.shape[0] // 32 * 32, pixels.shape[1] // 32 * 32)
    top = (pixels.shape[0] - side) // 2
    left = (pixels.shape[1] - side) // 2
    return pixels[top:top + side, left:left + side]
