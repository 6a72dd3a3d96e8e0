"""Frames to video (H.264 mp4 through the ffmpeg bundled in the imageio-ffmpeg wheel, so no system
ffmpeg is needed - the wall the popular VQGAN+CLIP notebooks kept hitting) and to GIF (Pillow)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

Frame = np.ndarray | Image.Image | str | Path


def as_rgb_array(frame: Frame) -> np.ndarray:
    """An HxWx3 uint8 array from an array (uint8, or float in [0, 1]), a PIL image or a file."""
    if isinstance(frame, (str, Path)):
        with Image.open(frame) as image:
            return np.asarray(image.convert("RGB"))
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    array = np.asarray(frame)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:
        array = array[:, :, :3]
    return array


def _pad_even(array: np.ndarray) -> np.ndarray:
    # H.264 in yuv420p needs even sides; pad by repeating the edge rather than rescaling.
    pad_h, pad_w = array.shape[0] % 2, array.shape[1] % 2
    if pad_h or pad_w:
        array = np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(array)


def write_video(frames: Iterable[Frame], path: Path | str, fps: float = 24.0) -> int:
    """Write the frames to an H.264 mp4 that browsers play; returns the number of frames."""
    import imageio_ffmpeg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, count, size = None, 0, None
    try:
        for frame in frames:
            array = _pad_even(as_rgb_array(frame))
            if writer is None:
                size = (array.shape[1], array.shape[0])
                writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                                     macro_block_size=1, quality=7, ffmpeg_log_level="error",
                                                     output_params=["-movflags", "+faststart"])
                writer.send(None)  # start the generator
            if (array.shape[1], array.shape[0]) != size:
                raise ValueError(f"frame {count} is {array.shape[1]}x{array.shape[0]}, expected {size[0]}x{size[1]}")
            writer.send(array)
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError(f"no frames to write to {path}")
    return count


def count_video_frames(path: Path | str) -> int:
    import imageio_ffmpeg
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]  # (frames, seconds)


def write_gif(frames: Iterable[Frame], path: Path | str, fps: float = 10.0, max_side: int | None = None) -> int:
    """Write a looping GIF; frames are shrunk so their longer side is at most `max_side`."""
    images = []
    for frame in frames:
        image = Image.fromarray(as_rgb_array(frame))
        if max_side and max(image.size) > max_side:
            scale = max_side / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        images.append(image)
    if not images:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0)
    return len(images)
