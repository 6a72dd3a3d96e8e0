"""CLIP (Radford et al. 2021) through open_clip, with weights from a local file only.

The architecture is an open_clip model name (`ViT-B-32-quickgelu` is OpenAI's ViT-B/32) or a JSON
open_clip config (the small CLIP's clip_config.json); the weights an open_clip state_dict or
.safetensors on disk (OpenAI's TorchScript ViT-B-32.pt converted once by convert_checkpoint).
open_clip is called with pretrained=None, so it never downloads; its tokenizer works offline.

    model, tokenizer, mean, std = load_clip("ViT-B-32-quickgelu", "data/checkpoints/ViT-B-32.state_dict.pt")
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from lab import LabError
from lab.checkpoint import atomic_write, load_state_dict_strict
from lab.paths import read_text_file
from lab.safe_load import is_torchscript_archive, load_torch, load_torchscript_tensors

# Where OpenAI's weights are published (named in error messages; never downloaded).
OPENAI_CLIP_SOURCE = (
    "OpenAI's ViT-B/32 weights are the file ViT-B-32.pt linked from https://github.com/openai/CLIP "
    "(clip/clip.py, _MODELS['ViT-B/32']); put it in data/checkpoints/ and convert it once with "
    "python -m vqgan_clip.convert_checkpoint openai-clip data/checkpoints/ViT-B-32.pt "
    "(see vqgan_clip/README.md)"
)

# Entries of OpenAI's state_dict that are not parameters of open_clip's CLIP.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")

_REGISTERED: dict[str, str] = {}  # config file content hash -> registered open_clip model name


def _register_config(model_cfg: dict[str, Any], source: str) -> str:
    """Register a model config with open_clip under a name from its hash (open_clip's registry is keyed
    by file stem, so two different clip_config.json files never shadow each other); returns the name."""
    import open_clip

    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in model_cfg:
            raise LabError(f"CLIP config {source} has no {key!r}; an open_clip model config has "
                           "embed_dim, vision_cfg and text_cfg (see open_clip/model_configs/*.json)")
    text = json.dumps(model_cfg, sort_keys=True)
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    if digest not in _REGISTERED:
        folder = Path(tempfile.mkdtemp(prefix="genlab-clip-config-"))
        name = f"genlab-local-{digest}"
        (folder / f"{name}.json").write_text(text, encoding="utf-8")
        open_clip.add_model_config(folder / f"{name}.json")
        _REGISTERED[digest] = name
    return _REGISTERED[digest]


def resolve_model_name(model_name_or_config: str | Path | dict) -> tuple[str, dict[str, Any]]:
    """(registered open_clip name, preprocessing overrides) for a name, a JSON config path or a dict."""
    import open_clip

    preprocess: dict[str, Any] = {}
    if isinstance(model_name_or_config, dict):
        config, source = model_name_or_config, "dict"
    elif str(model_name_or_config).endswith(".json") or Path(str(model_name_or_config)).is_file():
        path = Path(model_name_or_config)
        if not path.is_file():
            raise LabError(f"CLIP config {path} not found; it is written next to clip.pt by "
                           "python -m vqgan_clip.train_clip, or give an open_clip model name such as ViT-B-32-quickgelu")
        try:
            config = json.loads(read_text_file(path, "CLIP config"))
        except json.JSONDecodeError as error:
            raise LabError(f"CLIP config {path} is not valid JSON: {error}") from None
        source = str(path)
    else:
        name = str(model_name_or_config)
        if name not in open_clip.list_models():
            close = [m for m in open_clip.list_models() if name.lower().split("-")[0] in m.lower()][:8]
            raise LabError(f"{name!r} is not an open_clip model name; close ones: {', '.join(close) or 'none'} "
                           "(ViT-B-32-quickgelu matches OpenAI's ViT-B/32), or give a JSON open_clip config path")
        return name, preprocess
    # An optional "preprocess_cfg" (mean, std) sits beside the model config or, in open_clip's
    # local-dir layout, beside a nested "model_cfg".
    preprocess = dict(config.get("preprocess_cfg") or {})
    config = config["model_cfg"] if "model_cfg" in config else {k: v for k, v in config.items() if k != "preprocess_cfg"}
    return _register_config(config, source), preprocess


def read_clip_state_dict(weights_path: Path | str) -> dict[str, torch.Tensor]:
    """A CLIP state_dict from .safetensors, or from a torch file read by lab.safe_load.load_torch."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise LabError(f"CLIP weights {weights_path} not found; {OPENAI_CLIP_SOURCE}")
    if weights_path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state_dict = load_file(str(weights_path), device="cpu")
        except Exception as error:  # safetensors holds no code; a damaged file is all that can fail
            raise LabError(f"cannot read CLIP weights {weights_path}: the file is damaged or incomplete "
                           f"({str(error).splitlines()[0][:160]})") from None
    elif is_torchscript_archive(weights_path):  # never torch.jit.load: it runs the archive's code
        raise LabError(f"CLIP weights {weights_path} are a TorchScript archive (OpenAI's release); convert them "
                       "once with python -m vqgan_clip.convert_checkpoint openai-clip")
    else:
        state_dict = load_torch(weights_path, "CLIP weights")
    if isinstance(state_dict, dict) and "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise LabError(f"{weights_path} does not hold a state_dict (names to tensors)")
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module."):]: value for key, value in state_dict.items()}
    return {key: value.float() if value.is_floating_point() else value
            for key, value in state_dict.items() if key not in OPENAI_EXTRA_KEYS}


def load_clip(model_name_or_config: str | Path | dict, weights_path: Path | str | None,
              device: str | torch.device = "cpu"):
    """(model, tokenizer, mean, std): an open_clip CLIP in eval mode without gradients; `weights_path`
    None leaves the weights random. mean, std: the model's normalisation (OpenAI's by default)."""
    import open_clip

    name, preprocess = resolve_model_name(model_name_or_config)
    # open_clip warns "no pretrained weights loaded" because the weights are loaded below, by us.
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(name, pretrained=None, pretrained_image=False, pretrained_text=False,
                                       device="cpu", force_preprocess_cfg=preprocess or None)
    finally:
        logging.disable(logging.NOTSET)
    if weights_path is not None:
        state_dict = read_clip_state_dict(weights_path)
        load_state_dict_strict(model, state_dict, f"CLIP weights {weights_path} (for {model_name_or_config})")
    model.eval().requires_grad_(False)
    model = model.to(device)
    tokenizer = open_clip.get_tokenizer(name)
    preprocess_cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(preprocess_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(preprocess_cfg.get("std", open_clip.OPENAI_DATASET_STD))
    return model, tokenizer, mean, std


def clip_input_size(model) -> int:
    """The side of CLIP's square input in pixels (224 for ViT-B/32)."""
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def convert_openai_clip(source: Path, target: Path | None = None) -> Path:
    """OpenAI's TorchScript CLIP file -> a float32 state_dict with open_clip's key names."""
    if not source.is_file():
        raise LabError(f"{source} not found; OpenAI's ViT-B-32.pt is linked from https://github.com/openai/CLIP "
                       "(clip/clip.py, _MODELS['ViT-B/32']); put it in data/checkpoints/")
    if is_torchscript_archive(source):
        # Read from the archive's pickled module state; torch.jit.load would run the archive's code.
        state_dict = load_torchscript_tensors(source, "OpenAI CLIP archive")
    else:  # some copies are plain state_dicts already
        state_dict = load_torch(source, "CLIP weights")
    if not isinstance(state_dict, dict) or not state_dict or not all(
            isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise LabError(f"{source} is neither OpenAI's TorchScript CLIP archive nor a CLIP state_dict")
    # open_clip's CLIP uses OpenAI's module names, so only the three metadata entries go, and the
    # causal attention mask, which a TorchScript archive stores but open_clip rebuilds (not persistent).
    state_dict = {key: value.float() if value.is_floating_point() else value
                  for key, value in state_dict.items()
                  if key not in OPENAI_EXTRA_KEYS and key.rsplit(".", 1)[-1] != "attn_mask"}
    target = target or source.with_name(f"{source.stem}.state_dict.pt")
    atomic_write(target, lambda tmp: torch.save(state_dict, tmp))
    return target
