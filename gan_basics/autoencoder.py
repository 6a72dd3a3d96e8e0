"""Autoencoders three ways (article 004), each against the baseline a careful reader would ask for.

1. "reduction" ("linearly (PCA), but sometimes it takes a non-linear approach"): held-out error vs
   latent size, autoencoder vs PCA, and their 2-D maps.
2. "denoising" ("repairs small defects", Vincent et al. 2008; recipe DENOISING_*, measured in README.md):
   PSNR against PCA projection for Gaussian and salt-and-pepper noise at three levels.
3. "anomaly": one digit withheld from training as the "defect"; ROC AUC of the reconstruction error
   against PCA's and an IsolationForest (Liu et al. 2008).

Run: python -m gan_basics.autoencoder [--quick] [--set EXPERIMENTS=anomaly] [--set ANOMALY_CLASS=3]
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.nn import functional as F

from gan_basics.ae_model import (
    Autoencoder,
    AutoencoderSettings,
    DenoiserSettings,
    image_grid,
    parse_choice_list,
    psnr,
    to_unit_range,
    train_model,
)
from gan_basics.data import DATASETS, load_dataset
from lab import LabError, exit_on_lab_error, start_run
from lab.constants import settings_from
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants. The primer gives no numbers for these demos; the defaults are small-data choices.
EXPERIMENTS = "reduction,denoising,anomaly"  # comma-separated: reduction, denoising, anomaly (or all) {nonempty}
DATASET = "digits"              # "digits" (8x8, labelled) or "faces" (25x25, no labels: no anomaly demo) {nonempty}
LATENT_SIZES = (2, 4, 8, 16)    # code sizes compared with PCA's number of components
HIDDEN_SIZES = (256, 128)       # encoder widths (the decoder mirrors them)
EPOCHS = 300                    # passes over the training images, per autoencoder {> 0}
BATCH_SIZE = 64                 # images per optimisation step {> 0}
LEARNING_RATE = 1e-3            # Adam's step size {> 0}
GAUSSIAN_SIGMAS = (0.1, 0.25, 0.4)        # std of additive Gaussian noise, pixels in [0, 1]
SALT_PEPPER_FRACTIONS = (0.05, 0.15, 0.3)  # fraction of pixels set to 0 or 1
DENOISING_LATENT = 32           # code size of the denoising autoencoder and of its PCA baseline {> 0}
# The denoiser's recipe below was measured one change at a time: README.md, "Why these recipes".
DENOISING_HIDDEN_SIZES = (512, 256)  # encoder widths of the denoiser (the decoder mirrors them)
DENOISING_EPOCHS = 450          # passes over the training digits {> 0}
DENOISING_LEARNING_RATE = 3e-3  # Adam's step size at the start of the cosine decay {> 0}
DENOISING_LOSS = "psnr"         # "psnr" (minus the mean per-image PSNR) or "mse" (the classic loss)
DENOISING_SHIFT_PROBABILITY = 0.5  # share of training digits moved by up to 1 pixel each way (0: none)
ANOMALY_CLASS = 9               # the digit withheld from training and scored as the anomaly
ANOMALY_LATENT = 8              # code size of the anomaly autoencoder and its PCA baseline {> 0}
ISOLATION_TREES = 200           # trees of the IsolationForest baseline {> 0}
CHECKPOINT_EVERY = 25           # epochs between checkpoints of each model (and at its end, and on Ctrl+C) {> 0}
SEED = 0                        # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"                 # "auto" (CUDA if available), "cpu" or "cuda"
TORCH_THREADS = 1               # torch threads on the CPU (tiny models: 1 is fastest on shared cores) {>= 0}
QUICK = {"EPOCHS": 50, "BATCH_SIZE": 128, "DENOISING_EPOCHS": 60}
DRY_RUN = {"EPOCHS": 2, "DENOISING_EPOCHS": 2, "LATENT_SIZES": (2, 4), "ISOLATION_TREES": 20}
# -----------------------------------------------------------------------------

_VALID_EXPERIMENTS = ("reduction", "denoising", "anomaly")
_VALID_DENOISING_LOSSES = ("psnr", "mse")


def pca_reconstruct(fit_images: torch.Tensor, images: torch.Tensor, components: int) -> tuple[torch.Tensor, object]:
    """Project onto the first principal components of `fit_images` and back: the linear baseline."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=components, random_state=0).fit(fit_images.flatten(1).numpy())
    codes = pca.transform(images.flatten(1).numpy())
    reconstruction = np.clip(pca.inverse_transform(codes), 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(reconstruction).view(images.shape), pca


def per_image_mse(images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    return (images - reconstruction).pow(2).flatten(1).mean(1)


def fit_autoencoder(run, cfg, name: str, train_inputs, latent_size: int, anomaly_class: int = -1):
    """An autoencoder trained to rebuild `train_inputs`, with the reduction recipe (HIDDEN_SIZES, MSE ...)."""
    settings = settings_from(AutoencoderSettings, cfg, image_shape=tuple(train_inputs.shape[1:]),
                             latent_size=latent_size, anomaly_class=anomaly_class)
    model = Autoencoder.from_settings(settings)

    def reconstruction_loss(indices):
        clean = train_inputs[indices]
        return F.mse_loss(model(clean), clean)

    _history, interrupted = train_model(
        run, f"autoencoder_{cfg.DATASET}_{name}", model, settings, reconstruction_loss, len(train_inputs),
        epochs=cfg.EPOCHS, desc=f"{name} (MSE)", checkpoint_every=cfg.CHECKPOINT_EVERY)
    return model, interrupted


# ----------------------------------------------------------------------------- 1. dimension reduction
def reduction_experiment(run, cfg, data, train, test) -> tuple[dict, bool]:
    ae_errors, pca_errors, models, interrupted = {}, {}, {}, False
    sizes = sorted(set(cfg.LATENT_SIZES) | {2})  # latent size 2 is always trained, for the maps
    for size in sizes:
        model, stopped = fit_autoencoder(run, cfg, f"latent{size}", train, size)
        interrupted |= stopped
        with torch.no_grad():
            ae_errors[size] = float(per_image_mse(test, model(test)).mean())
        pca_errors[size] = float(per_image_mse(test, pca_reconstruct(train, test, size)[0]).mean())
        models[size] = model
        print(f"latent {size:3d}: test MSE autoencoder {ae_errors[size]:.5f}  PCA {pca_errors[size]:.5f}")

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    shown = [s for s in sizes if s in cfg.LATENT_SIZES]
    ax.plot(shown, [ae_errors[s] for s in shown], "o-", color="tab:blue", label="autoencoder (non-linear)")
    ax.plot(shown, [pca_errors[s] for s in shown], "s--", color="tab:orange", label="PCA (linear)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(shown, [str(s) for s in shown])
    ax.set(xlabel="latent size (number of components)", ylabel="held-out reconstruction MSE (pixels in [0, 1])",
           title=f"Dimension reduction on {data.name}: autoencoder vs PCA")
    ax.grid(alpha=0.3)
    ax.legend()
    run.add_artifact(save_figure(fig, run.path("reduction_error_vs_latent.png"), dpi=120),
                     "reconstruction error vs latent size: autoencoder and PCA")

    with torch.no_grad():
        ae_codes = models[2].encode(test).numpy()
    pca_codes = pca_reconstruct(train, test, 2)[1].transform(test.flatten(1).numpy())
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6))
    colours = data.test_labels if data.test_labels is not None else np.zeros(len(test))
    for ax, codes, title in ((axes[0], ae_codes, "autoencoder, latent size 2"), (axes[1], pca_codes, "PCA, 2 components")):
        points = ax.scatter(codes[:, 0], codes[:, 1], c=colours, cmap="tab10", s=10, vmin=-0.5, vmax=9.5)
        ax.set(title=title, xticks=[], yticks=[])
    if data.test_labels is not None:
        fig.colorbar(points, ax=axes, ticks=range(10), label="digit")
    fig.suptitle(f"2-D maps of the held-out {data.name}")
    fig.savefig(run.path("reduction_latent_maps.png"), dpi=120)
    plt.close(fig)
    run.add_artifact(run.path("reduction_latent_maps.png"), "2-D latent maps, autoencoder vs PCA, coloured by digit")
    metrics = {"ae_mse": {str(s): ae_errors[s] for s in shown}, "pca_mse": {str(s): pca_errors[s] for s in shown}}
    metrics.update({f"ae_over_pca_error_ratio_latent{s}": ae_errors[s] / max(pca_errors[s], 1e-12) for s in shown})
    return metrics, interrupted


# ----------------------------------------------------------------------------- 2. denoising
def random_shift(images: torch.Tensor, probability: float) -> torch.Tensor:
    """Each image, with the given probability, moved by -1, 0 or 1 pixel along each axis (border filled with 0)."""
    count, _, height, width = images.shape
    padded = F.pad(images, (1, 1, 1, 1))
    moved = torch.rand(count) < probability
    rows, columns = torch.randint(3, (count,)), torch.randint(3, (count,))
    rows[~moved], columns[~moved] = 1, 1  # offset (1, 1) into the padded images: not moved
    shifted = torch.empty_like(images)
    for row in range(3):
        for column in range(3):
            picked = (rows == row) & (columns == column)
            if picked.any():
                shifted[picked] = padded[picked, :, row:row + height, column:column + width]
    return shifted


def add_noise(images: torch.Tensor, kind: str, level: float, generator=None) -> torch.Tensor:
    """Gaussian: x + N(0, level^2), clipped. Salt and pepper: a fraction `level` of pixels set to 0 or 1."""
    if kind == "gaussian":
        return (images + level * torch.randn(images.shape, generator=generator)).clamp(0.0, 1.0)
    hit = torch.rand(images.shape, generator=generator) < level
    salt = torch.rand(images.shape, generator=generator) < 0.5
    return torch.where(hit, salt.to(images.dtype), images)


def denoising_experiment(run, cfg, data, train, test) -> tuple[dict, bool]:
    levels = {"gaussian": list(cfg.GAUSSIAN_SIGMAS), "salt_and_pepper": list(cfg.SALT_PEPPER_FRACTIONS)}
    for kind, values in levels.items():
        if not values or any(not 0.0 <= v <= 1.0 for v in values):
            name = "GAUSSIAN_SIGMAS" if kind == "gaussian" else "SALT_PEPPER_FRACTIONS"
            raise LabError(f"{name} must be a non-empty list of levels in [0, 1], got {values}")
    if cfg.DENOISING_LOSS not in _VALID_DENOISING_LOSSES:
        raise LabError(f"unknown DENOISING_LOSS {cfg.DENOISING_LOSS!r}; valid: {', '.join(_VALID_DENOISING_LOSSES)}")
    if not 0.0 <= cfg.DENOISING_SHIFT_PROBABILITY <= 1.0:
        raise LabError(f"DENOISING_SHIFT_PROBABILITY must be in [0, 1], got {cfg.DENOISING_SHIFT_PROBABILITY}")

    def corrupt(clean):
        # Each image gets one noise type at one of the tested levels (fresh noise every time), so one
        # network learns to remove both kinds of noise at every strength (Vincent et al. 2008).
        choices = [(kind, level) for kind, values in levels.items() for level in values]
        picks = torch.randint(len(choices), (len(clean),))
        noisy = clean.clone()
        for index, (kind, level) in enumerate(choices):
            rows = picks == index
            if rows.any():
                noisy[rows] = add_noise(clean[rows], kind, level)
        return noisy

    # The denoiser's own recipe: each field from DENOISING_<FIELD> where there is one, else <FIELD>.
    settings = settings_from(DenoiserSettings, cfg, prefix="DENOISING_", image_shape=tuple(train.shape[1:]),
                             latent_size=cfg.DENOISING_LATENT, anomaly_class=-1)
    model = Autoencoder.from_settings(settings)

    def denoising_loss(indices):
        clean = random_shift(train[indices], cfg.DENOISING_SHIFT_PROBABILITY)
        output = model(corrupt(clean))
        return -psnr(clean, output).mean() if cfg.DENOISING_LOSS == "psnr" else F.mse_loss(output, clean)

    _history, interrupted = train_model(
        run, f"autoencoder_{cfg.DATASET}_denoiser_latent{cfg.DENOISING_LATENT}", model, settings, denoising_loss,
        len(train), epochs=cfg.DENOISING_EPOCHS, desc=f"denoising_latent{cfg.DENOISING_LATENT} ({'-PSNR' if cfg.DENOISING_LOSS == 'psnr' else 'MSE'})",
        cosine_schedule=True, checkpoint_every=cfg.CHECKPOINT_EVERY)
    generator = torch.Generator().manual_seed(1234)  # the same noisy test images on every run
    results: dict[str, dict[str, list[float]]] = {}
    examples = {}
    shown = torch.arange(8) * (len(test) // 8)  # eight held-out images spread over the set
    for kind, values in levels.items():
        results[kind] = {"noisy": [], "autoencoder": [], "pca": []}
        for level in values:
            noisy = add_noise(test, kind, level, generator)
            with torch.no_grad():
                ae_clean = model(noisy)
            pca_clean = pca_reconstruct(train, noisy, cfg.DENOISING_LATENT)[0]
            for label, output in (("noisy", noisy), ("autoencoder", ae_clean), ("pca", pca_clean)):
                results[kind][label].append(float(psnr(test, output).mean()))
            if level == values[len(values) // 2]:
                examples[kind] = (level, noisy[shown], ae_clean[shown], pca_clean[shown])

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), sharey=True)
    for ax, (kind, values) in zip(axes, levels.items(), strict=True):
        for label, style in (("noisy", "k:o"), ("autoencoder", "-o"), ("pca", "--s")):
            ax.plot(values, results[kind][label], style, label={"noisy": "noisy input", "pca": "PCA projection",
                                                                 "autoencoder": "denoising autoencoder"}[label])
        ax.set(xlabel="noise std" if kind == "gaussian" else "fraction of pixels hit", title=kind.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR vs clean image (dB, higher is better)")
    axes[0].legend()
    fig.suptitle(f"Denoising held-out {data.name}")
    run.add_artifact(save_figure(fig, run.path("denoising_psnr.png"), dpi=120),
                     "PSNR of noisy, autoencoder-denoised and PCA-denoised images")

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.0))
    for ax, (kind, (level, noisy, ae_clean, pca_clean)) in zip(axes, examples.items(), strict=True):
        rows = torch.cat([test[shown], noisy, ae_clean, pca_clean]).numpy()
        ax.imshow(image_grid(rows, columns=8, pad_value=0.0), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks([(i + 0.5) * (test.shape[2] + 1) for i in range(4)], ["clean", "noisy", "autoencoder", "PCA"])
        ax.set(xticks=[], title=f"{kind.replace('_', ' ')}, level {level:g}")
    run.add_artifact(save_figure(fig, run.path("denoising_examples.png"), dpi=120),
                     "denoising examples at the middle noise level")

    metrics: dict = {"psnr_db": results}
    for kind, values in levels.items():
        middle, psnr_db = len(values) // 2, results[kind]
        metrics[f"{kind}_gain_db_at_{values[middle]:g}"] = psnr_db["autoencoder"][middle] - psnr_db["noisy"][middle]
        metrics[f"{kind}_ae_minus_pca_db_at_{values[middle]:g}"] = psnr_db["autoencoder"][middle] - psnr_db["pca"][middle]
    return metrics, interrupted


# ----------------------------------------------------------------------------- 3. anomaly detection
def anomaly_experiment(run, cfg, data, train, test) -> tuple[dict, bool]:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score, roc_curve

    anomaly = cfg.ANOMALY_CLASS
    normal_train = train[torch.from_numpy(data.train_labels != anomaly)]
    # Held-out normal digits, plus every image of the withheld class: none of them was trained on.
    normal_test = test[torch.from_numpy(data.test_labels != anomaly)]
    anomalies = torch.cat([train[torch.from_numpy(data.train_labels == anomaly)],
                           test[torch.from_numpy(data.test_labels == anomaly)]])
    evaluation = torch.cat([normal_test, anomalies])
    is_anomaly = np.r_[np.zeros(len(normal_test)), np.ones(len(anomalies))]

    model, interrupted = fit_autoencoder(
        run, cfg, f"anomaly{anomaly}_latent{cfg.ANOMALY_LATENT}", normal_train, cfg.ANOMALY_LATENT,
        anomaly_class=anomaly)
    with torch.no_grad():
        scores = {"autoencoder": per_image_mse(evaluation, model(evaluation)).numpy()}
    scores["PCA"] = per_image_mse(evaluation, pca_reconstruct(normal_train, evaluation, cfg.ANOMALY_LATENT)[0]).numpy()
    forest = IsolationForest(n_estimators=cfg.ISOLATION_TREES, random_state=0).fit(normal_train.flatten(1).numpy())
    scores["IsolationForest"] = -forest.score_samples(evaluation.flatten(1).numpy())  # higher = more anomalous
    aucs = {name: float(roc_auc_score(is_anomaly, values)) for name, values in scores.items()}

    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    for name, values in scores.items():
        false_positive, true_positive, _ = roc_curve(is_anomaly, values)
        ax.plot(false_positive, true_positive, label=f"{name} (AUC {aucs[name]:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    ax.set(xlabel="false positive rate (normal digits flagged)", ylabel=f"true positive rate (digit {anomaly} flagged)",
           title=f"Anomaly detection: trained without the {anomaly}s")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    run.add_artifact(save_figure(fig, run.path("anomaly_roc.png"), dpi=120),
                     "ROC of the anomaly scores: autoencoder vs PCA vs IsolationForest")

    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6))
    for ax, (name, values) in zip(axes, scores.items(), strict=True):
        bins = np.histogram_bin_edges(values, bins=30)
        ax.hist(values[is_anomaly == 0], bins=bins, alpha=0.6, density=True, label="normal (other digits)")
        ax.hist(values[is_anomaly == 1], bins=bins, alpha=0.6, density=True, label=f"anomaly (digit {anomaly})")
        ax.set(title=f"{name}, AUC {aucs[name]:.3f}",
               xlabel="reconstruction error" if name != "IsolationForest" else "isolation score")
    axes[0].legend()
    run.add_artifact(save_figure(fig, run.path("anomaly_score_histograms.png"), dpi=120),
                     "anomaly score histograms, normal vs withheld class")
    return {"anomaly_class": anomaly, "auc": aucs, "normal_test_count": len(normal_test),
            "anomaly_count": len(anomalies)}, interrupted


@exit_on_lab_error
def main(argv=None):
    run = start_run("gan_basics", globals(), argv, framework="torch", checkpoints=True)
    cfg = run.cfg
    experiments = parse_choice_list(cfg.EXPERIMENTS, _VALID_EXPERIMENTS, "experiment")
    if cfg.DATASET not in DATASETS:
        raise LabError(f"unknown DATASET {cfg.DATASET!r}; valid: {', '.join(DATASETS)}")
    if "anomaly" in experiments and not (isinstance(cfg.ANOMALY_CLASS, int) and 0 <= cfg.ANOMALY_CLASS <= 9):
        raise LabError(f"ANOMALY_CLASS is {cfg.ANOMALY_CLASS}; it must be a digit class from 0 to 9, e.g. --set ANOMALY_CLASS=9")
    if not cfg.LATENT_SIZES or any(int(size) < 1 for size in cfg.LATENT_SIZES):
        raise LabError(f"LATENT_SIZES must hold positive code sizes, got {cfg.LATENT_SIZES}")
    data = load_dataset(cfg.DATASET, seed=0)
    train, test = to_unit_range(data.train_images), to_unit_range(data.test_images)
    if "anomaly" in experiments and data.train_labels is None:
        raise LabError(f"the anomaly experiment needs labelled images and {cfg.DATASET!r} has none; "
                       "use --set DATASET=digits, or --set EXPERIMENTS=reduction,denoising")
    too_big = [s for s in (*cfg.LATENT_SIZES, cfg.DENOISING_LATENT, cfg.ANOMALY_LATENT) if s > min(len(train), train[0].numel())]
    if too_big:
        raise LabError(f"latent sizes {too_big} exceed what PCA can fit on {len(train)} images of {train[0].numel()} pixels")

    metrics, interrupted = {"dataset": cfg.DATASET}, False
    runners = {"reduction": reduction_experiment, "denoising": denoising_experiment, "anomaly": anomaly_experiment}
    for name in experiments:
        metrics[name], interrupted = runners[name](run, cfg, data, train, test)
        if interrupted:
            break
    add_claims(run, metrics)
    run.finish(metrics, status="interrupted" if interrupted else "complete")


def add_claims(run, metrics: dict) -> None:
    """The primer's three claims for autoencoders, with this run's figures (the gallery's summary)."""
    if "reduction" in metrics:
        ae, pca = metrics["reduction"]["ae_mse"]["2"], metrics["reduction"]["pca_mse"]["2"]
        run.add_claim("an autoencoder reduces dimensions better than linear PCA (held-out MSE, 2-number code)",
                      f"MSE {ae:.3f} vs PCA {pca:.3f}", ae < pca, "0.029 vs 0.052")
    if "denoising" in metrics:
        result = metrics["denoising"]
        key = next(k for k in result if k.startswith("gaussian_gain_db_at_"))
        gain, over_pca = result[key], result[key.replace("gain_db", "ae_minus_pca_db")]
        run.add_claim("a denoising autoencoder repairs small defects (PSNR gain over the noisy input, "
                      f"Gaussian std {key.rsplit('_', 1)[-1]})",
                      f"+{gain:.2f} dB ({over_pca:+.2f} dB vs PCA)", gain > 0 and over_pca > 0, "+5.32 dB (+3.2 vs PCA)")
    if "anomaly" in metrics:
        auc = metrics["anomaly"]["auc"]
        run.add_claim(f"reconstruction error flags anomalies (digit {metrics['anomaly']['anomaly_class']} never "
                      "seen in training; ROC AUC)",
                      f"AUC {auc['autoencoder']:.2f} (PCA {auc['PCA']:.2f}, IsolationForest {auc['IsolationForest']:.2f})",
                      auc["autoencoder"] >= 0.85 and auc["autoencoder"] > max(auc["PCA"], auc["IsolationForest"]),
                      "AUC 0.94 (PCA 0.84, IsolationForest 0.74)")


if __name__ == "__main__":
    main()
