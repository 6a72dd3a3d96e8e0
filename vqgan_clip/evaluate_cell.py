"""One cell of evaluate.py: generate one prompt's image with the article's loop and judge it.

lab.executor.run_cells calls `evaluate_prompt` in this process (models loaded once) or on a Ray node.
The result is kept in a folder named after the prompt's settings and the models, so a rerun or a
retried task returns a finished prompt at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lab.checkpoint import atomic_write, atomic_write_text, lock_folder
from vqgan_clip import loop
from vqgan_clip import shapes_world as world
from vqgan_clip.clip_model import clip_input_size

TEMPLATE = "a {colour} {shape} on a {background} background"
RESULT_FILE = "result.json"
FINAL_FILE = "final.npy"
_MODELS: dict[tuple[str, str], tuple] = {}  # (MODEL, device) -> (vqgan, clip, files): loaded once per process


def contrasting_captions(item: dict) -> list[str]:
    """The prompt's template with exactly one attribute changed, each way it can be changed."""
    colour, shape, background = item["colour"], item["shape"], item["background"]
    captions = [TEMPLATE.format(colour=c, shape=shape, background=background)
                for c in world.COLOUR_NAMES if c not in (colour, background)]
    captions += [TEMPLATE.format(colour=colour, shape=s, background=background) for s in world.SHAPES if s != shape]
    captions += [TEMPLATE.format(colour=colour, shape=shape, background=b)
                 for b in world.COLOUR_NAMES if b not in (colour, background)]
    return captions


@torch.no_grad()
def clip_similarities(clip, images_uint8: list[np.ndarray], texts: list[str], device) -> torch.Tensor:
    """Cosine similarities (images x texts) by the CLIP, on whole images resized to its input."""
    model, tokenizer, mean, std = clip
    size = clip_input_size(model)
    x = torch.as_tensor(np.stack(images_uint8), device=device).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)
    image_features = F.normalize(model.encode_image(x).float(), dim=-1)
    text_features = F.normalize(model.encode_text(tokenizer(texts).to(device)).float(), dim=-1)
    return image_features @ text_features.t()


def judge(clip, item: dict, initial: np.ndarray, final: np.ndarray, device) -> dict:
    captions = [item["prompt"], *contrasting_captions(item)]
    similarity = clip_similarities(clip, [initial, final], captions, device)
    final_scores = similarity[1]
    rank = int((final_scores[1:] > final_scores[0]).sum().item()) + 1
    agrees, shares = world.pixel_check(final, item["colour"], item["background"])
    return {**item, "rank_among_contrasts": rank, "contrasts": len(captions) - 1,
            "similarity_initial": float(similarity[0, 0]), "similarity_final": float(final_scores[0]),
            "pixel_check": agrees, "shape_colour_share": shares[item["colour"]],
            "background_colour_share": shares[item["background"]]}


def cell_name(number: int, settings: loop.LoopSettings, model: str) -> str:
    """The prompt's number and a digest of everything that makes its image: other settings, another folder."""
    digest = hashlib.sha256(json.dumps([asdict(settings), model], sort_keys=True).encode()).hexdigest()[:10]
    return f"prompt{number:02d}_{digest}"


def models_for(model: str, device: str):
    from vqgan_clip.models import load_models

    if (model, device) not in _MODELS:
        _MODELS[(model, device)] = load_models(model, device=device)
    return _MODELS[(model, device)]


def evaluate_prompt(item: dict, settings: dict, model: str, device: str, folder: str) -> dict:
    """Generate `item`'s prompt with the loop `settings`, judge the final image; kept in `folder`."""
    folder = Path(folder)
    lock_folder(folder)
    if (folder / RESULT_FILE).is_file() and (folder / FINAL_FILE).is_file():
        return {"result": json.loads((folder / RESULT_FILE).read_text()),
                "final": np.load(folder / FINAL_FILE, allow_pickle=False), "reused": True}
    if device == "cuda" and not torch.cuda.is_available():
        device = "cpu"  # a CPU node of a mixed cluster
    vqgan, clip, _ = models_for(model, device)
    frames = {}
    outcome = loop.generate(loop.LoopSettings(**settings), vqgan, clip, device=device, progress=False,
                            on_display=lambda iteration, image: frames.setdefault(iteration, image))
    result = judge(clip, item, frames[0], outcome.image, device)
    result["loss_first"], result["loss_last"] = outcome.total_losses[0], outcome.total_losses[-1]
    atomic_write(folder / FINAL_FILE, lambda tmp: np.save(tmp, outcome.image))
    atomic_write_text(folder / RESULT_FILE, json.dumps(result))
    return {"result": result, "final": outcome.image, "reused": False}
