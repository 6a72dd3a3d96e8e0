"""Loading the date's pictures: every image in the pictures folder, in name order, resized to the
constants' size as the article did ("I interpolated the pictures to 360x640 beforehand"); and the
trained VAE, rebuilt from the settings its checkpoint stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lab import LabError
from lab.checkpoint import fingerprint_files, load_checkpoint, load_state_dict_strict
from lab.images import read_rgb
from lab.safe_load import settings_from_checkpoint
from pen_cap_vae.model import GaussianAutoencoder, VAESettings
from pen_cap_vae.pictures import list_pictures, pictures_dir

DRAW_COMMAND = "python -m pen_cap_vae.draw_pictures"


def load_pictures(setting: str, settings: VAESettings, device,
                  *also_fingerprinted: Path) -> tuple[torch.Tensor, list[Path], str]:
    """The (N >= 2, 3, H, W) pictures on `device`, their paths, and the fingerprint a resume checks."""
    height, width, patch = settings.image_height, settings.image_width, settings.patch
    if height % patch or width % patch:
        raise LabError(f"IMAGE_HEIGHT and IMAGE_WIDTH ({height}x{width}) must be multiples of PATCH={patch}: "
                       "the encoder's first convolution has stride PATCH")
    folder = pictures_dir(setting)
    if not folder.is_dir():
        raise LabError(f"the pictures folder {folder} does not exist; draw the pictures with {DRAW_COMMAND} "
                       "or put your own there (PICTURES_DIR)")
    paths = list_pictures(folder)
    if len(paths) < 2:
        raise LabError(f"the pictures folder {folder} holds {len(paths)} picture(s) but the date needs at least 2; "
                       f"draw them with {DRAW_COMMAND} or put your own there")
    images = [read_rgb(path, "picture") for path in paths]
    if len({image.size for image in images}) > 1:
        listing = ", ".join(f"{path.name} {image.width}x{image.height}" for path, image in zip(paths, images, strict=True))
        raise LabError(f"the pictures in {folder} have different sizes ({listing}); the date morphs one into "
                       "another, so crop or resize them to one size (any size: they are then resized together)")
    arrays = []
    for path, image in zip(paths, images, strict=True):
        if image.size != (width, height):
            print(f"note: {path.name} is {image.width}x{image.height}; resized to {width}x{height}")
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(image, dtype=np.float32) / 255.0)
    pictures = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return pictures.to(device), paths, fingerprint_files([*paths, *also_fingerprinted])


def load_trained_vae(path: Path, device, profile: str = "full") -> tuple[GaussianAutoencoder, VAESettings]:
    """The VAE at `path` (train.py's checkpoint, or the article's bare state_dict) in eval mode, and its settings."""
    flag = {"quick": " --quick", "dry_run": " --dry-run"}.get(profile, "")
    if not path.is_file():
        raise LabError(f"no trained VAE at {path}: run python -m pen_cap_vae.train{flag} first")
    checkpoint = load_checkpoint(path, map_location="cpu")
    if not isinstance(checkpoint, dict):
        raise LabError(f"{path} is not a checkpoint of pen_cap_vae.train (it holds no dict); give the vae.pt that "
                       "pen_cap_vae.train wrote")
    if "settings" in checkpoint:
        settings = settings_from_checkpoint(VAESettings, checkpoint["settings"], path, "pen_cap_vae.train")
        if not isinstance(checkpoint.get("model"), dict):
            raise LabError(f"{path} is not a checkpoint of pen_cap_vae.train: it has no VAE weights ('model')")
        state_dict = checkpoint["model"]
    elif "model" in checkpoint:
        raise LabError(f"the VAE checkpoint {path} has no stored settings (an older version of train.py made it); "
                       f"retrain with python -m pen_cap_vae.train{flag} --fresh")
    else:  # a bare state_dict, e.g. saved by the article's code: the article's architecture
        settings, state_dict = VAESettings(), checkpoint
    vae = settings.build()
    load_state_dict_strict(vae, state_dict, f"the VAE checkpoint {path}")
    return vae.to(device).eval(), settings
