"""A variational autoencoder that generates new images and morphs one input into another.

Article 004: a VAE's middle holds "probabilities of belonging to boxes", so the decoder alone creates
new things (MusicVAE glides between melodies). Prior samples, a 2-D latent traversal and a morph between
two held-out inputs beside a pixel cross-fade; the held-out ELBO against an independent-pixel Gaussian.

Run: python -m gan_basics.vae [--quick] [--set DATASET=faces] [--set DECODER=gaussian] [--set MORPH_PAIR="(3, 7)"]
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from gan_basics.ae_model import VAESettings, VariationalAutoencoder, image_grid, to_unit_range, train_model, upscale
from gan_basics.data import DATASETS, load_dataset
from lab import LabError, exit_on_lab_error, start_run
from lab.constants import settings_from
from lab.media import write_gif
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants. The primer gives no numbers for this demo; the defaults are small-data choices.
DATASET = "digits"          # "digits" (8x8) or "faces" (25x25) {nonempty}
DECODER = "sigma"           # "sigma": calibrated sigma-VAE decoder; "gaussian": fixed DECODER_SIGMA
DECODER_SIGMA = 0.1         # the fixed decoder's std (pixels in [0, 1]); used when DECODER = "gaussian"
LATENT_SIZE = 8             # size of the latent code z {> 0}
HIDDEN_SIZES = (256, 128)   # encoder widths (the decoder mirrors them)
EPOCHS = 60                 # passes over the training images (300 overfits: held-out ELBO 26 vs 33 nats) {> 0}
BATCH_SIZE = 64             # images per optimisation step {> 0}
CHECKPOINT_EVERY = 25       # epochs between checkpoints (and at the end, and on Ctrl+C) {> 0}
LEARNING_RATE = 1e-3        # Adam's step size {> 0}
SAMPLE_GRID = 8             # the prior-sample figure is SAMPLE_GRID x SAMPLE_GRID images {> 0}
TRAVERSAL_STEPS = 9         # images per side of the 2-D latent traversal
TRAVERSAL_RANGE = 2.0       # the traversal spans -range .. +range prior standard deviations
MORPH_PAIR = (3, 12)        # indices of the two held-out images to morph between (digits: a 2 and a 0)
MORPH_STEPS = 10            # images in the morph strip {> 1}
GIF_FRAMES = 40             # frames of the back-and-forth morph GIF
ELBO_SAMPLES = 20           # posterior samples per held-out image for the ELBO estimate
SEED = 0                    # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"             # "auto" (CUDA if available), "cpu" or "cuda"
TORCH_THREADS = 1           # torch threads on the CPU (tiny models: 1 is fastest on shared cores)
QUICK = {"EPOCHS": 60, "BATCH_SIZE": 128, "ELBO_SAMPLES": 5}
DRY_RUN = {"EPOCHS": 2, "GIF_FRAMES": 6, "ELBO_SAMPLES": 1}
# -----------------------------------------------------------------------------

_DECODERS = ("sigma", "gaussian")


def independent_gaussian_log_likelihood(train: torch.Tensor, test: torch.Tensor) -> float:
    """Held-out log-likelihood (nats per image) of one Gaussian per pixel fitted to the training set;
    the std is floored at 0.05 so always-blank border pixels do not get an infinite density."""
    flat_train, flat_test = train.flatten(1).double(), test.flatten(1).double()
    mean, std = flat_train.mean(0), flat_train.std(0).clamp_min(0.05)
    log_density = -torch.log(std) - 0.5 * math.log(2 * math.pi) - 0.5 * ((flat_test - mean) / std) ** 2
    return float(log_density.sum(1).mean())


@torch.no_grad()
def held_out_elbo(model, images: torch.Tensor, samples: int) -> dict[str, float]:
    """The held-out ELBO and its two parts, averaged over `samples` posterior draws per image."""
    draws = [model.negative_elbo(images) for _ in range(samples)]
    nelbo = torch.stack([total.mean() for total, _ in draws]).mean()
    nll = torch.stack([parts["nll"].mean() for _, parts in draws]).mean()
    kl = torch.stack([parts["kl"].mean() for _, parts in draws]).mean()
    return {"elbo_nats_per_image": -float(nelbo), "reconstruction_log_likelihood": -float(nll),
            "kl_nats_per_image": float(kl)}


def show_grid(run, name: str, images: np.ndarray, columns: int, title: str, dark_on_light: bool, caption: str):
    """A titled grid as an artifact; digits (ink values) are drawn dark on white, faces as photographs."""
    grid = image_grid(1.0 - images if dark_on_light else images, columns)
    fig, ax = plt.subplots(figsize=(min(12, 0.15 * grid.shape[1] + 1.5), min(12, 0.15 * grid.shape[0] + 1.0)))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    run.add_artifact(save_figure(fig, run.path(name), dpi=120), caption)


@exit_on_lab_error
def main(argv=None):
    run = start_run("gan_basics", globals(), argv, framework="torch", checkpoints=True)
    cfg = run.cfg
    if cfg.DATASET not in DATASETS:
        raise LabError(f"unknown DATASET {cfg.DATASET!r}; valid: {', '.join(DATASETS)}")
    if cfg.DECODER not in _DECODERS:
        raise LabError(f"unknown DECODER {cfg.DECODER!r}; valid: {', '.join(_DECODERS)}")
    if cfg.DECODER == "gaussian" and not cfg.DECODER_SIGMA > 0:
        raise LabError(f"DECODER_SIGMA must be > 0 for the fixed Gaussian decoder, got {cfg.DECODER_SIGMA}")
    if cfg.LATENT_SIZE < 2:
        raise LabError(f"LATENT_SIZE is {cfg.LATENT_SIZE}; the 2-D traversal needs at least 2")
    data = load_dataset(cfg.DATASET, seed=0)
    train, test = to_unit_range(data.train_images), to_unit_range(data.test_images)
    if len(cfg.MORPH_PAIR) != 2 or any(not -len(test) <= int(i) < len(test) for i in cfg.MORPH_PAIR):
        raise LabError(f"MORPH_PAIR must be two indices of held-out images, each in 0..{len(test) - 1}; "
                       f"got {cfg.MORPH_PAIR}")
    dark_on_light = cfg.DATASET == "digits"  # digits are ink on paper; faces are photographs

    settings = settings_from(VAESettings, cfg, image_shape=data.image_shape)
    model = VariationalAutoencoder.from_settings(settings)

    def loss(indices):
        # The sigma-VAE's sigma is the batch's RMS error; a running average is kept for scoring.
        return model.negative_elbo(train[indices], update_sigma=True)[0].mean()

    history, interrupted = train_model(
        run, f"vae_{cfg.DATASET}_{cfg.DECODER}_latent{cfg.LATENT_SIZE}", model, settings, loss, len(train),
        epochs=cfg.EPOCHS, desc="VAE (-ELBO, nats/image)", checkpoint_every=cfg.CHECKPOINT_EVERY)

    scores = held_out_elbo(model, test, cfg.ELBO_SAMPLES)
    baseline = independent_gaussian_log_likelihood(train, test)
    print(f"held-out ELBO {scores['elbo_nats_per_image']:.1f} nats/image; independent-pixel Gaussian "
          f"log-likelihood {baseline:.1f}; decoder sigma {float(model.sigma):.4f}")

    with torch.no_grad():
        # Samples from the prior: z ~ N(0, I), decoded to the mean image (the decoder's noise is not added).
        samples = model.decode(torch.randn(cfg.SAMPLE_GRID**2, cfg.LATENT_SIZE)).numpy()
        show_grid(run, "vae_prior_samples.png", samples, cfg.SAMPLE_GRID, "VAE samples from the prior N(0, I)",
                  dark_on_light, "VAE: decoded samples from the prior")

        # The traversal spans the two most used latent dimensions (largest held-out KL); the rest stay 0.
        kl_per_dim = model.negative_elbo(test)[1]["kl_per_dim"]
        first, second = [int(i) for i in torch.argsort(kl_per_dim, descending=True)[:2]]
        offsets = torch.linspace(-cfg.TRAVERSAL_RANGE, cfg.TRAVERSAL_RANGE, cfg.TRAVERSAL_STEPS)
        codes = torch.zeros(cfg.TRAVERSAL_STEPS**2, cfg.LATENT_SIZE)
        codes[:, first] = offsets.repeat_interleave(cfg.TRAVERSAL_STEPS)
        codes[:, second] = offsets.repeat(cfg.TRAVERSAL_STEPS)
        traversal = model.decode(codes).numpy()
        span = f"-{cfg.TRAVERSAL_RANGE:g}..{cfg.TRAVERSAL_RANGE:g}"
        show_grid(run, "vae_latent_traversal.png", traversal, cfg.TRAVERSAL_STEPS,
                  f"latent traversal: z[{first}] down, z[{second}] across, {span}", dark_on_light,
                  "VAE: 2-D traversal of the two most used latent dimensions")

        # The morph decodes the line between two inputs' posterior means (MusicVAE's interpolation).
        start, end = test[cfg.MORPH_PAIR[0]:][:1], test[cfg.MORPH_PAIR[1]:][:1]
        mean_start, mean_end = model.encode(start)[0], model.encode(end)[0]

        def morph(weights: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            weights = weights[:, None]
            latent = model.decode((1 - weights) * mean_start + weights * mean_end).numpy()
            crossfade = ((1 - weights[:, :, None, None]) * start + weights[:, :, None, None] * end).numpy()
            return latent, crossfade

        latent_strip, crossfade_strip = morph(torch.linspace(0, 1, cfg.MORPH_STEPS))
        strip = np.concatenate([start.numpy(), latent_strip, end.numpy(), start.numpy(), crossfade_strip, end.numpy()])
        show_grid(run, "vae_morph_strip.png", strip, cfg.MORPH_STEPS + 2,
                  "top: VAE morph (input, decoded latent line, input); bottom: pixel cross-fade", dark_on_light,
                  "VAE morph between two held-out inputs vs a pixel cross-fade")
        there = torch.linspace(0, 1, max(1, cfg.GIF_FRAMES // 2))
        latent_frames, crossfade_frames = morph(torch.cat([there, there.flip(0)]))
        frames = []
        for latent_image, crossfade_image in zip(latent_frames[:, 0], crossfade_frames[:, 0], strict=True):
            pair = np.concatenate([latent_image, np.ones((latent_image.shape[0], 1), np.float32), crossfade_image], 1)
            pair = 1.0 - pair if dark_on_light else pair
            frames.append(upscale(pair, max(1, 128 // latent_image.shape[0])))
        write_gif(frames, run.path("vae_morph.gif"), fps=12)
        run.add_artifact(run.path("vae_morph.gif"), "VAE morph (left) vs pixel cross-fade (right), looping")

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.plot(np.arange(1, len(history) + 1), history)
    ax.set(xlabel="epoch", ylabel="training -ELBO (nats per image)",
           title=f"VAE training on {cfg.DATASET}, {cfg.DECODER} decoder")
    ax.grid(alpha=0.3)
    run.add_artifact(save_figure(fig, run.path("vae_training_loss.png"), dpi=120), "VAE training loss")

    labels = None if data.test_labels is None else [int(data.test_labels[i]) for i in cfg.MORPH_PAIR]
    elbo = scores["elbo_nats_per_image"]
    run.add_claim("a VAE keeps a distribution in its middle, so it models the data better than independent "
                  "pixels (held-out ELBO vs an independent-pixel Gaussian's exact log-likelihood)",
                  f"{elbo:.1f} vs {baseline:.1f} nats/image", elbo > baseline, "32.6 vs 23.1 nats/image")
    run.finish({**scores, "independent_gaussian_log_likelihood": baseline,
                "elbo_minus_baseline_nats": scores["elbo_nats_per_image"] - baseline,
                "decoder_sigma": float(model.sigma), "final_train_negative_elbo": history[-1] if history else None,
                "traversal_dims": [first, second], "morph_labels": labels},
               status="interrupted" if interrupted else "complete")


if __name__ == "__main__":
    main()
