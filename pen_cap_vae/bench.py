"""Benchmark: medians of REPEATS timings of a VAE step (against the article's formulation, with train.py's
MIXED_PRECISION and CHANNELS_LAST) and a recoder iteration (bare, with the EEG, frames, plots, bf16).

Run: python -m pen_cap_vae.bench [--quick] [--set REPEATS=7] [--set TORCH_THREADS=2]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from lab import exit_on_lab_error, start_run
from pen_cap_vae import model as model_module
from pen_cap_vae.date import Date, FrameSink
from pen_cap_vae.eeg import EEGPlotter, EEGRecorder, draw_probes
from pen_cap_vae.model import GaussianAutoencoder, RecoderSettings, VAESettings, output_variance, vae_step

# -----------------------------------------------------------------------------
# Constants. The article's sizes are the defaults; edit them here or use --set.
REPEATS = 5            # timed runs per measurement (the median is reported) {> 0}
PICTURES = 3           # batch of pictures per VAE step (article: 3) {> 0}
IMAGE_HEIGHT = 360     # picture height (article: 360) {> 0}
IMAGE_WIDTH = 640      # picture width (article: 640) {> 0}
LAYERS = 20            # VAE gated layers (article: 20) {>= 0}
CHANNELS = 128         # VAE width (article: 128) {>= 4}
RECODER_LAYERS = 20    # recoder layers (article: 20) {> 0}
RECODER_CHANNELS = 64  # recoder width (article: 64) {> 0}
EEG_WINDOW = 1000      # the plots of one window are spread over this many iterations (article: 1000) {> 0}
EEG_PLOT_DPI = 120     # EEG plot resolution (article: 120) {> 0}
TORCH_THREADS = 0      # 0: torch's default {>= 0}
SEED = 0               # the weights and codes are random {>= -1}
DEVICE = "auto"        # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"IMAGE_HEIGHT": 90, "IMAGE_WIDTH": 160, "LAYERS": 3, "CHANNELS": 32, "RECODER_CHANNELS": 32,
         "EEG_WINDOW": 200, "EEG_PLOT_DPI": 50, "TORCH_THREADS": 1, "REPEATS": 7}
DRY_RUN = {"REPEATS": 2, "IMAGE_HEIGHT": 30, "IMAGE_WIDTH": 50, "LAYERS": 2, "CHANNELS": 16, "RECODER_LAYERS": 3,
           "RECODER_CHANNELS": 16, "EEG_WINDOW": 20}
# -----------------------------------------------------------------------------


def _article_gate(layer_out, previous):  # y_ * (1 - g) + y * g in four element-wise ops
    candidate, gate = torch.chunk(layer_out, 2, dim=1)
    gate = gate.sigmoid()
    return candidate * (1.0 - gate) + previous * gate


def article_style_loss(vae: GaussianAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """The article's training forward with torch.distributions, on this package's modules."""
    mean, std = vae.encoder(x), vae.encoder_var(x).sigmoid()
    code = Normal(mean, std)
    decoded = vae.decoder(code.rsample())
    variance = output_variance(vae.sigma)
    sample = Normal(decoded, variance.sqrt()).rsample()
    loss = ((sample - x) ** 2 / (2.0 * variance)).mean(dim=0).sum()
    loss = loss + kl_divergence(code, Normal(0.0, 1.0)).mean(dim=0).sum()
    return loss + variance.log() * x[0].numel() * 0.5


def median_seconds(repeats: int, device: str, *functions) -> list[float]:
    """Median seconds per call of each function, the calls interleaved so that load from other jobs
    spreads over all of them alike; a GPU is synchronised around each call."""
    for function in functions:
        function()  # warm-up
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, samples in zip(functions, times, strict=True):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            function()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv, framework="torch")
    cfg = run.cfg
    device = run.device
    print(f"torch threads: {torch.get_num_threads()}; sizes {cfg.PICTURES}x{cfg.IMAGE_HEIGHT}x{cfg.IMAGE_WIDTH}, "
          f"VAE {cfg.LAYERS}x{cfg.CHANNELS}, recoder {cfg.RECODER_LAYERS}x{cfg.RECODER_CHANNELS}")
    vae = VAESettings(cfg.IMAGE_HEIGHT, cfg.IMAGE_WIDTH, 10, cfg.LAYERS, cfg.CHANNELS).build().to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-5)
    pictures = torch.rand(cfg.PICTURES, 3, cfg.IMAGE_HEIGHT, cfg.IMAGE_WIDTH, device=device)

    def article_vae_step():
        with mock.patch.object(model_module, "gated_residual", _article_gate):
            loss = article_style_loss(vae, pictures)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    vae.train()
    (ours,) = median_seconds(cfg.REPEATS, device, lambda: vae_step(vae, optimizer, pictures))
    (article,) = median_seconds(cfg.REPEATS, device, article_vae_step)
    metrics = {"vae_step_s": round(ours, 4), "vae_step_article_style_s": round(article, 4),
               "vae_speedup_vs_article_style": round(article / ours, 3)}
    print(f"VAE training step: {ours:.4f} s (article-style code {article:.4f} s, ratio {article / ours:.2f}x)")

    # train.py's options, on the same weights: bfloat16 autocast and the channels-last layout.
    for name, (channels_last, mixed) in {"channels_last": (True, False), "bf16_autocast": (False, True),
                                         "bf16_and_channels_last": (True, True)}.items():
        layout = torch.channels_last if channels_last else torch.contiguous_format
        vae.to(memory_format=layout)
        batch = pictures.contiguous(memory_format=layout)
        (seconds,) = median_seconds(cfg.REPEATS, device,
                                    lambda b=batch, m=mixed: vae_step(vae, optimizer, b, mixed_precision=m))
        vae.to(memory_format=torch.contiguous_format)
        metrics.update({f"vae_step_{name}_s": round(seconds, 4), f"vae_speedup_{name}": round(ours / seconds, 3)})
        print(f"VAE training step with {name.replace('_', ' ')}: {seconds:.4f} s ({ours / seconds:.2f}x float32 NCHW)")

    vae.eval()
    grid = (cfg.IMAGE_HEIGHT // 10, cfg.IMAGE_WIDTH // 10)
    code = torch.randn(1, 8, *grid, device=device)
    date = Date(RecoderSettings(cfg.RECODER_LAYERS, cfg.RECODER_CHANNELS), 1e-4, code, torch.randn_like(code),
                torch.randn_like(code), cycle=5300, switch=1060)
    recorder = EEGRecorder(draw_probes(20, cfg.RECODER_LAYERS, min(16, cfg.RECODER_CHANNELS), *grid))
    folder = Path(tempfile.mkdtemp(prefix="pen_cap_bench_"))
    sink = FrameSink(90)
    state = {"i": 2000, "hidden": None}  # a plateau iteration

    def iteration(eeg: bool, frames: bool, mixed: bool = False):
        _, _, hidden = date.iterate(state["i"], mixed)
        state["i"] += 1
        with torch.no_grad():
            if eeg:
                recorder.record(recorder.read(hidden))
            frame = vae.decoder(date.x1)[0]  # the decode is part of every iteration
            if frames:
                sink.put(frame, folder / f"{state['i'] % 50:06d}.jpg")
            else:
                frame.cpu()
        state["hidden"] = hidden

    variants = {"bare": (False, False), "eeg": (True, False), "frames": (False, True), "eeg_and_frames": (True, True),
                "bare_bf16_autocast": (False, False, True)}
    seconds = median_seconds(cfg.REPEATS, device, *(lambda f=flags: iteration(*f) for flags in variants.values()))
    sink.close()
    timings = dict(zip(variants, seconds, strict=True))

    plotter = EEGPlotter(cfg.EEG_PLOT_DPI)
    signals = np.random.default_rng(0).standard_normal((20, cfg.EEG_WINDOW))
    start = time.perf_counter()
    for j in range(20):
        plotter.save(signals[j], folder / "trace.jpg", np.arange(cfg.EEG_WINDOW), signals[j], folder / "spec.jpg", "b")
    plots_per_window = time.perf_counter() - start
    plotter.close()
    plots_per_iteration = plots_per_window / cfg.EEG_WINDOW
    bare = timings["bare"]
    metrics["recoder_speedup_bf16_autocast"] = round(bare / timings["bare_bf16_autocast"], 3)
    metrics.update({f"recoder_iteration_{name}_s": round(seconds, 5) for name, seconds in timings.items()})
    metrics["eeg_plots_per_window_s"] = round(plots_per_window, 3)
    everything = timings["eeg_and_frames"] + plots_per_iteration
    metrics["extras_overhead_percent"] = round(100.0 * (everything / bare - 1.0), 2)
    print(f"recoder iteration (forward, backward, step, decode): {bare:.4f} s bare; "
          + ", ".join(f"{k} {v:.4f} s" for k, v in timings.items() if k != "bare"))
    print(f"EEG plots: {plots_per_window:.2f} s per window of {cfg.EEG_WINDOW} = {plots_per_iteration * 1e3:.2f} ms "
          f"per iteration; all extras add {metrics['extras_overhead_percent']:.1f} % (goal <= 5 %)")

    # The EEG recording: vectorised against the article's per-probe loop of tensor operations.
    hidden = state["hidden"]
    mu, var = [0.0] * 20, [1.0] * 20

    def article_eeg():
        values = []
        for j, (p, q, m, n) in enumerate(recorder.probes.tolist()):
            value = hidden[p][:, q, m, n]
            values.append(((value - mu[j]) / var[j] ** 0.5).unsqueeze(0))
            mu[j] = mu[j] * 0.99 + value * 0.01
            var[j] = var[j] * 0.9 + 0.1 * (value - mu[j]) ** 2
        return torch.cat(values, dim=0)

    (ours_eeg,) = median_seconds(cfg.REPEATS * 20, device, lambda: recorder.record(recorder.read(hidden)))
    (article_eeg_s,) = median_seconds(cfg.REPEATS * 20, device, article_eeg)
    metrics.update(eeg_record_s=round(ours_eeg, 6), eeg_record_article_style_s=round(article_eeg_s, 6))
    print(f"EEG recording of 20 probes: {ours_eeg * 1e6:.0f} us (article-style loop {article_eeg_s * 1e6:.0f} us)")
    run.finish(metrics)


if __name__ == "__main__":
    main()
