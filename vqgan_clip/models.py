"""Which files each MODEL means ("small", one of OFFICIAL_MODELS with OpenAI's CLIP, or a folder of
SMALL_FILES), and loading the VQGAN and CLIP pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab import LabError
from lab.paths import REPO_ROOT, data_root

SMALL_MODEL_DIR = data_root() / "vqgan_clip_small"
SMALL_FILES = ("vqgan.yaml", "vqgan.pt", "clip_config.json", "clip.pt")
OFFICIAL_MODELS = ("vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_1024", "vqgan_gumbel_f8_8192")


def resolve_model_files(model: str, clip_model: str, clip_weights: str) -> dict[str, Any]:
    """The four files (VQGAN yaml and weights, CLIP config or name, CLIP weights) for MODEL."""
    if model in OFFICIAL_MODELS:
        folder = data_root() / "checkpoints"
        yaml_path = folder / f"{model}.yaml"
        ckpt = folder / f"{model}.ckpt"
        if not ckpt.is_file() and (folder / f"{model}.pt").is_file():
            ckpt = folder / f"{model}.pt"  # the plain state_dict written by convert_checkpoint
        weights = Path(clip_weights)
        weights = weights if weights.is_absolute() else REPO_ROOT / weights
        missing = [str(p) for p in (yaml_path, ckpt, weights) if not p.is_file()]
        if missing:
            raise LabError(
                f"MODEL={model} needs {', '.join(missing)}. Fetch them with python -m vqgan_clip.download {model} "
                "and python -m vqgan_clip.download ViT-B-32 (or by hand: CompVis' last.ckpt and model.yaml from "
                "https://github.com/CompVis/taming-transformers, 'Overview of pretrained models', renamed to "
                "data/checkpoints/<name>.ckpt and .yaml; OpenAI's ViT-B-32.pt converted with python -m "
                "vqgan_clip.convert_checkpoint openai-clip data/checkpoints/ViT-B-32.pt). See vqgan_clip/README.md"
            )
        return {"vqgan_yaml": yaml_path, "vqgan_weights": ckpt, "clip_model": clip_model, "clip_weights": weights}
    folder = SMALL_MODEL_DIR if model == "small" else Path(model)
    if model != "small" and not folder.is_dir():
        raise LabError(f"MODEL={model!r} is neither 'small', one of {', '.join(OFFICIAL_MODELS)}, nor a folder "
                       f"holding {', '.join(SMALL_FILES)}")
    missing = [name for name in SMALL_FILES if not (folder / name).is_file()]
    if missing:
        raise LabError(
            f"MODEL={model} needs {', '.join(missing)} in {folder}. The small models are trained by this project: "
            "they ship in data/vqgan_clip_small/ (git checkout -- data/vqgan_clip_small restores them), or retrain "
            "them with python -m vqgan_clip.train_vqgan --set SHIP=true and python -m vqgan_clip.train_clip "
            f"--set SHIP=true, or use MODEL={OFFICIAL_MODELS[0]} with the official files (vqgan_clip/README.md)"
        )
    return {"vqgan_yaml": folder / "vqgan.yaml", "vqgan_weights": folder / "vqgan.pt",
            "clip_model": folder / "clip_config.json", "clip_weights": folder / "clip.pt"}


def load_models(model: str, clip_model: str = "ViT-B-32-quickgelu",
                clip_weights: str = "data/checkpoints/ViT-B-32.state_dict.pt", device: str = "cpu"):
    """(vqgan, (clip, tokenizer, mean, std), files) for MODEL, on the device, in eval mode."""
    from vqgan_clip.clip_model import load_clip
    from vqgan_clip.vqgan import load_vqgan

    files = resolve_model_files(model, clip_model, clip_weights)
    vqgan = load_vqgan(files["vqgan_yaml"], files["vqgan_weights"], device=device)
    clip = load_clip(files["clip_model"], files["clip_weights"], device=device)
    return vqgan, clip, files
