"""Reading a user's image file: one clear error for a missing or unreadable file, and RGB always."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lab.errors import LabError


def read_rgb(path: Path | str, what: str = "image", flatten_on_white: bool = True) -> Image.Image:
    """Open `path` as a fully loaded RGB image; `what` names it in the error ("PICTURE", ...).

    Grayscale, palette and CMYK images are converted. Transparent ones (RGBA, LA, palette with
    transparency) are composited on white by default, since the colour under a fully transparent
    pixel is arbitrary (often black) and would otherwise show; `flatten_on_white=False` keeps
    the stored colours and drops the alpha channel instead.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if flatten_on_white and image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, rgba).convert("RGB")
            return image.convert("RGB")
    except FileNotFoundError:
        raise LabError(f"{what} {path} not found; give the path of a PNG or JPEG image") from None
    except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise LabError(f"{what} {path} cannot be read: it is not an image Pillow can read ({error}); "
                       "give a PNG or JPEG file") from None
