"""Convert the official weight files once into plain state_dicts that load without pickled code.

    python -m vqgan_clip.convert_checkpoint openai-clip data/checkpoints/ViT-B-32.pt
        -> data/checkpoints/ViT-B-32.state_dict.pt (OpenAI's TorchScript archive -> open_clip keys, float32)
    python -m vqgan_clip.convert_checkpoint vqgan data/checkpoints/vqgan_imagenet_f16_16384.ckpt
        -> data/checkpoints/vqgan_imagenet_f16_16384.pt (only the weights; `loss.` entries dropped)

Both read the files with lab.safe_load, so nothing from them runs (never torch.jit.load; Lightning
classes become inert stand-ins). The VQGAN conversion is optional (load_vqgan reads a last.ckpt the
same way) but smaller and faster to load; generate.py picks the .pt when no .ckpt is present.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lab import LabError, exit_on_lab_error
from lab.checkpoint import atomic_write
from vqgan_clip.clip_model import convert_openai_clip


def convert_vqgan(source: Path, target: Path | None = None) -> Path:
    """A Lightning VQGAN checkpoint -> a plain state_dict without the `loss.` entries (no pickled code runs)."""
    from vqgan_clip.vqgan import read_vqgan_state_dict, strip_training_entries

    state_dict = strip_training_entries(read_vqgan_state_dict(source))
    target = target or source.with_suffix(".pt")
    if target.resolve() == source.resolve():
        raise LabError(f"{source} would be overwritten; give another name with -o")
    atomic_write(target, lambda tmp: torch.save(state_dict, tmp))
    return target


@exit_on_lab_error
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vqgan_clip.convert_checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("openai-clip", "vqgan"))
    parser.add_argument("source", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=None, help="where to write the state_dict")
    parser.add_argument("--trust", action="store_true", help="accepted for old commands; no longer needed")
    args = parser.parse_args(argv)
    if args.kind == "openai-clip":
        target = convert_openai_clip(args.source, args.output)
    else:
        target = convert_vqgan(args.source, args.output)
    print(f"wrote {target}")
    return target


if __name__ == "__main__":
    main()
