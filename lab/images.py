"""Reading a user's image file: one clear error for a missing or unreadable file, and RGB always."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lab.errors import LabError
from lab.paths import shown


class ImageTooLarge(LabError):
    """An image whose header declares more pixels than Pillow's safety limit (a decompression bomb)."""


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale scaled into 0-255 (Pillow's convert("RGB") clips them at 255).

    32-bit integers that fit are 16-bit data (PNG's 16-bit greyscale opens as "I" in some Pillow
    versions); floats in [0, 1] are fractions of white, larger ones already 0-255."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scale = 65535.0
    elif image.mode == "F":
        scale = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    else:
        peak = values.max(initial=0.0)
        scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    grey = np.clip(np.rint(values / scale * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def read_rgb(path: Path | str, what: str = "image", flatten_on_white: bool = True) -> Image.Image:
    """Open `path` as a fully loaded RGB image; `what` names it in the error ("PICTURE", ...).

    Transparent images are composited on white (the colour under a transparent pixel is arbitrary,
    often black); `flatten_on_white=False` drops the alpha channel instead."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I") or image.mode == "F":
                return _wide_to_rgb(image)
            if flatten_on_white and image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, rgba).convert("RGB")
            return image.convert("RGB")
    except FileNotFoundError:
        raise LabError(f"{what} {shown(path)} not found; give the path of a PNG or JPEG image") from None
    except Image.DecompressionBombError as error:  # the header declares more pixels than Pillow's limit
        reason = str(error).rstrip(".")
        raise ImageTooLarge(f"{what} {shown(path)} declares more pixels than the safety limit allows ({reason}); "
                       "give a smaller image") from None
    except MemoryError:
        raise ImageTooLarge(f"{what} {shown(path)} is too large to load into memory; give a smaller image") from None
    except (OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno is not None:  # too long a name, permissions, a folder
            raise LabError(f"{what} {shown(path)} cannot be opened ({error.strerror}); give the path of a "
                           "readable PNG or JPEG file") from None
        raise LabError(f"{what} {shown(path)} cannot be read: it is not an image Pillow can read ({error}); "
                       "give a PNG or JPEG file") from None
