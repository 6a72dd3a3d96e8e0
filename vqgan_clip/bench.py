"""Speed and memory of the VQGAN+CLIP loop. Run: python -m vqgan_clip.bench [--quick]

The official f16_16384 VQGAN architecture (from its model.yaml values) and OpenAI's ViT-B/32 CLIP
architecture, with random weights (speed and memory do not depend on the weight values), at
each image size and cutout count below, on the current device; on a GPU also with mixed
precision (bfloat16 autocast). Each configuration runs in its own subprocess, so its peak
resident memory (RSS) is its own; on a GPU the peak VRAM is torch's max_memory_allocated.
Prints the median seconds per iteration over REPEATS timed iterations (after WARMUP), the
iterations per second, and the speed ratio against the first configuration, and writes
outputs/vqgan_clip/bench/bench.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import torch

from lab import exit_on_lab_error, start_run
from lab.paths import REPO_ROOT

# -----------------------------------------------------------------------------
# Constants.
SIZES = [256, 512]          # square image sides in pixels (issue: 256x256 and 512x512)
CUTNS = [32, 64]            # cutouts per iteration (issue: 32 and 64; the Colab uses 64)
REPEATS = 3                 # timed iterations per configuration (the median is reported)
WARMUP = 1                  # untimed iterations first (allocator, caches)
MIXED_PRECISION = "auto"    # "auto": also bfloat16 autocast on a GPU; "off": fp32 only
SEED = 0
DEVICE = "auto"             # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"SIZES": [256], "CUTNS": [32], "REPEATS": 2}
# -----------------------------------------------------------------------------

F16_16384 = {"model": {"params": {"embed_dim": 256, "n_embed": 16384, "ddconfig": {
    "double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}}}}


def measure(size: int, cutn: int, repeats: int, warmup: int, device: str, amp: bool) -> dict:
    """Seconds per iteration of the generate loop (forward, backward, Adam step, clamp) and peak memory."""
    from vqgan_clip.clip_model import clip_input_size, load_clip
    from vqgan_clip.generate import make_cutouts, peak_memory_mb, spherical_distance_loss, synthesize
    from vqgan_clip.vqgan import VQModel

    torch.manual_seed(0)
    vqgan = VQModel.from_config(F16_16384).eval().requires_grad_(False).to(device)
    clip_model, tokenizer, mean, std = load_clip("ViT-B-32-quickgelu", None, device=device)
    cut_size = clip_input_size(clip_model)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    with torch.no_grad():
        target = clip_model.encode_text(tokenizer(["a red circle on a blue background"]).to(device)).float()
    tokens = size // vqgan.downsampling_factor
    z = vqgan.quantize.lookup(torch.randint(vqgan.n_embed, (1, tokens, tokens), device=device)).requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=0.1)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                            enabled=amp):
            image = synthesize(vqgan, z)
            cutouts = make_cutouts(image, cut_size, cutn, 1.0, True)
            embeddings = clip_model.encode_image((cutouts - mean_t) / std_t).float()
        loss = spherical_distance_loss(embeddings, target).mean()
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"size": size, "cutn": cutn, "amp": amp, "seconds_per_iteration": round(seconds, 3),
            "iterations_per_second": round(1.0 / seconds, 3), **peak_memory_mb(device)}


@exit_on_lab_error
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--one":  # a single configuration, in a subprocess of the main benchmark
        size, cutn, repeats, warmup, device, amp = argv[1:7]
        torch.set_num_threads(torch.get_num_threads())
        print(json.dumps(measure(int(size), int(cutn), int(repeats), int(warmup), device, amp == "1")))
        return None
    run = start_run("vqgan_clip", globals(), argv, framework="torch", subdir="bench")
    cfg = run.cfg
    precisions = [False] + ([True] if run.device.startswith("cuda") and cfg.MIXED_PRECISION != "off" else [])
    configurations = [(size, cutn, amp) for amp in precisions for size in cfg.SIZES for cutn in cfg.CUTNS]
    results = []
    print(f"VQGAN f16_16384 + CLIP ViT-B/32 (random weights) on {run.device}, torch threads {torch.get_num_threads()}")
    for size, cutn, amp in configurations:
        command = [sys.executable, "-m", "vqgan_clip.bench", "--one", str(size), str(cutn), str(cfg.REPEATS),
                   str(cfg.WARMUP), run.device, "1" if amp else "0"]
        finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        if finished.returncode != 0:
            tail = finished.stderr.strip().splitlines()[-1:] or ["no output"]
            print(f"  {size}x{size} cutn {cutn}: failed ({tail[0]})", flush=True)
            results.append({"size": size, "cutn": cutn, "amp": amp, "error": tail[0]})
            continue
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        results.append(result)
        baseline = next(r for r in results if "error" not in r)
        ratio = baseline["seconds_per_iteration"] / result["seconds_per_iteration"]
        vram = f", peak VRAM {result['peak_vram_mb']:.0f} MiB" if "peak_vram_mb" in result else ""
        print(f"  {size}x{size} cutn {cutn}{' bf16' if amp else ''}: {result['seconds_per_iteration']:.2f} s/it "
              f"({result['iterations_per_second']:.3f} it/s, {ratio:.2f}x the first), peak RSS "
              f"{result['peak_rss_mb']:.0f} MiB{vram}", flush=True)
    out = run.path("bench.json")
    out.write_text(json.dumps({"device": run.device, "results": results}, indent=2) + "\n")
    run.finish({"results": results})
    return results


if __name__ == "__main__":
    main()
