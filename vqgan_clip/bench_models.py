"""Random-weight models of the official sizes, and the timing of one loop, for bench.py: the f16_16384
VQGAN (vqgan.py) and OpenAI's ViT-B/32 image tower in plain torch, so the benchmark needs neither
open_clip nor weights files (speed and memory do not depend on the weight values).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from torch import nn

F16_16384 = {"model": {"target": "taming.models.vqgan.VQModel", "params": {"embed_dim": 256, "n_embed": 16384,
             "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                          "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                          "dropout": 0.0}}}}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class _Block(nn.Module):
    """Pre-norm transformer block with QuickGELU, as OpenAI's CLIP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.fc, self.proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = self.fc(self.ln_2(x))
        return x + self.proj(h * torch.sigmoid(1.702 * h))


class VisionTower(nn.Module):
    """CLIP's ViT image encoder: patch conv, class token, positions, blocks, projection of the class token."""

    def __init__(self, image_size=224, patch_size=32, width=768, layers=12, heads=12, output_dim=512):
        super().__init__()
        self.image_size = image_size
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn((image_size // patch_size) ** 2 + 1, width) * 0.01)
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.proj = nn.Parameter(torch.randn(width, output_dim) * width ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype), x], 1)
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x[:, 0]) @ self.proj


class BenchClip(nn.Module):
    """encode_image through the tower; encode_text returns a fixed random embedding (no tokenizer needed)."""

    def __init__(self):
        super().__init__()
        self.visual = VisionTower()
        self.register_buffer("text", torch.randn(1, 512))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text.expand(tokens.shape[0], -1)


class _NoTokenizer:
    context_length = 77

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return torch.zeros(len(texts), self.context_length, dtype=torch.long)


def build_models(device: str, seed: int = 0):
    """(vqgan, clip tuple) with random weights, eval mode, no gradients, on the device."""
    from vqgan_clip.vqgan import build_vqgan

    torch.manual_seed(seed)
    vqgan = build_vqgan(F16_16384).eval().requires_grad_(False).to(device)
    clip_model = BenchClip().eval().requires_grad_(False).to(device)
    return vqgan, (clip_model, _NoTokenizer(), OPENAI_MEAN, OPENAI_STD)


def time_loop(kind: str, vqgan, clip, size: int, cutn: int, iterations: int, warmup: int, device: str,
              bf16: bool, cut_method: str = "updated") -> list[float]:
    """Seconds of each timed iteration of our loop (loop.generate) or the reference's (reference.py)."""
    from vqgan_clip import loop, reference

    times: list[float] = []
    autocast = torch.autocast(device_type="cuda" if str(device).startswith("cuda") else "cpu",
                              dtype=torch.bfloat16, enabled=bf16)
    if kind == "ours":
        last = [0.0]

        def on_step(iteration: int, loss: float) -> None:  # float(loss) already waited for the GPU
            now = time.perf_counter()
            if iteration >= warmup:
                times.append(now - last[0])
            last[0] = now

        settings = loop.LoopSettings(prompts="a bench prompt", width=size, height=size,
                                     max_iterations=warmup + iterations, step_size=0.1, cutn=cutn, cut_pow=1.0,
                                     cut_method=cut_method, init_weight=0.0, seed=0, display_frequency=10**9)
        with autocast:
            last[0] = time.perf_counter()
            loop.generate(settings, vqgan, clip, device=device, progress=False, on_step=on_step)
        return times
    clip_model, _, mean, std = clip
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    torch.manual_seed(0)
    with torch.no_grad():
        z = reference.reference_initial_z(vqgan, size, size, device)
        targets = [(clip_model.encode_text(torch.zeros(1, 77, dtype=torch.long, device=device)).float(), 1.0,
                    float("-inf"))]
        z_min = vqgan.codebook.min(0).values[None, :, None, None]
        z_max = vqgan.codebook.max(0).values[None, :, None, None]
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=0.1)
    with autocast:
        for index in range(warmup + iterations):
            started = time.perf_counter()
            loss = reference.reference_step(vqgan, clip_model, z, optimizer, targets, mean_t, std_t,
                                            clip_model.visual.image_size, cutn, z_min, z_max)
            float(loss.detach())
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            if index >= warmup:
                times.append(time.perf_counter() - started)
    return times


def measure(kind: str, size: int, cutn: int, repeats: int, warmup: int, device: str, bf16: bool,
            cut_method: str, models=None) -> dict:
    """Median seconds per iteration and peak memory of one loop at one configuration."""
    from vqgan_clip.loop import peak_memory_mb

    vqgan, clip = models or build_models(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = time_loop(kind, vqgan, clip, size, cutn, repeats, warmup, device, bf16, cut_method)
    seconds = statistics.median(times)
    return {"loop": kind, "size": size, "cutn": cutn, "bf16": bf16, "seconds_per_iteration": round(seconds, 4),
            "iterations_per_second": round(1.0 / seconds, 3), **peak_memory_mb(device)}


def measure_in_fresh_process(kind: str, size: int, cutn: int, repeats: int, warmup: int, device: str,
                             cut_method: str) -> dict:
    """measure() in a new process started for it alone (float32), so that the peak resident memory
    it reports is this configuration's, not the largest one measured before it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(measure, kind, size, cutn, repeats, warmup, device, False, cut_method).result()
        except Exception as error:
            return {"loop": kind, "size": size, "cutn": cutn, "bf16": False,
                    "error": f"{type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"}
