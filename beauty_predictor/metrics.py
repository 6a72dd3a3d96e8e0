"""What an improver did to the photos: smoothing, flatness, the black-square questions (NumPy/SciPy, pixels in [0, 1]).

Article 001 reports one result for its improver, "Похоже на сглаживание" (it looks like smoothing);
here it is measured. Smoothing reproduced when Y keeps <= 60 % of X's high-frequency energy (mean
squared Laplacian), a Gaussian blur of X (sigma > 0) is closer to Y than X is, AND, both low-passed
at COARSE_SIGMA px, Y correlates with X at >= 0.95 and keeps >= 85 % of its standard deviation: a
blur keeps the colours and coarse contrast, a network that washes the photo out to grey does not.
The readers' "black square" needs a distance to the nearest flat image: in MAE the nearest constant
colour is the per-channel median.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, laplace

HF_KEPT_MAX = 0.6  # the verdict's threshold: Y keeps at most 60 % of X's high-frequency energy
COARSE_SIGMA = 4.0  # px: the low-pass that leaves the colours and coarse contrast a blur should keep
COARSE_CORRELATION_MIN = 0.95  # low-passed Y correlates with low-passed X at least this much
COARSE_STD_KEPT_MIN = 0.85  # low-passed Y keeps at least this share of low-passed X's standard deviation
BLUR_SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)  # sigma grid, px


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each image and channel separately (reflect at the borders); sigma 0 is a copy."""
    if sigma <= 0:
        return np.array(images, dtype=np.float32, copy=True)
    return gaussian_filter(np.asarray(images, np.float32), (0, sigma, sigma, 0), mode="reflect")


def hf_energy(images: np.ndarray) -> np.ndarray:
    """Mean squared Laplacian of each image (one value per image): its high-frequency energy."""
    images = np.asarray(images, np.float32)
    out = np.empty(len(images))
    for i, image in enumerate(images):
        lap = np.stack([laplace(image[..., c], mode="reflect") for c in range(image.shape[-1])], axis=-1)
        out[i] = float(np.mean(lap ** 2))
    return out


def hf_energy_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """High-frequency energy of Y over that of X, summed over the batch (1.0 when Y = X)."""
    return float(hf_energy(y).sum() / max(hf_energy(x).sum(), 1e-12))


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


def best_gaussian(x: np.ndarray, y: np.ndarray, sigmas=BLUR_SIGMAS) -> dict[str, float]:
    """The sigma (0 included) whose blur of X is closest to Y in MAE: sigma, mae_blur_y, mae_x_y (sigma 0)
    and explained, 1 - mae_blur_y / mae_x_y (0 when no blur beats X, 1 when a blur is exactly Y)."""
    errors = {float(s): mae(blur(x, s), y) for s in sigmas}
    errors.setdefault(0.0, mae(x, y))
    sigma = min(errors, key=errors.get)
    identity = errors[0.0]
    return {"sigma": sigma, "mae_blur_y": errors[sigma], "mae_x_y": identity,
            "explained": 1.0 - errors[sigma] / identity if identity > 0 else 0.0}


def coarse_likeness(x: np.ndarray, y: np.ndarray, sigma: float = COARSE_SIGMA) -> dict[str, float]:
    """Whether Y keeps X's colours and coarse contrast, both low-passed at `sigma` px: per image, over all
    pixels and channels, the correlation of Y with X and Y's standard deviation over X's; batch means."""
    coarse_x, coarse_y = blur(x, sigma), blur(y, sigma)
    correlations, std_kept = [], []
    for a, b in zip(coarse_x.reshape(len(coarse_x), -1), coarse_y.reshape(len(coarse_y), -1), strict=True):
        a, b = a - a.mean(), b - b.mean()
        norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
        correlations.append(float((a * b).sum()) / norm if norm > 0 else 0.0)
        std_kept.append(float(b.std() / a.std()) if a.std() > 0 else 1.0)
    return {"coarse_correlation": float(np.mean(correlations)), "coarse_std_kept": float(np.mean(std_kept))}


def smoothing_report(x: np.ndarray, y: np.ndarray) -> dict:
    """The smoothing measures and verdict for improver outputs Y of photos X."""
    ratio, fit, coarse = hf_energy_ratio(x, y), best_gaussian(x, y), coarse_likeness(x, y)
    loses_detail = ratio <= HF_KEPT_MAX and fit["sigma"] > 0 and fit["mae_blur_y"] < fit["mae_x_y"]
    keeps_coarse = (coarse["coarse_correlation"] >= COARSE_CORRELATION_MIN
                    and coarse["coarse_std_kept"] >= COARSE_STD_KEPT_MIN)
    return {"hf_energy_kept": ratio, "best_blur_sigma": fit["sigma"], "mae_best_blur_y": fit["mae_blur_y"],
            "mae_x_y": fit["mae_x_y"], "blur_explains": fit["explained"], **coarse,
            "loses_detail": bool(loses_detail), "keeps_coarse": bool(keeps_coarse),
            "smoothing_reproduced": bool(loses_detail and keeps_coarse)}


def smoothing_sentence(report: dict) -> str:
    verdict = ("looks like smoothing: reproduced" if report["smoothing_reproduced"] else
               "loses detail but also the colours or coarse contrast: washed out, not smoothing"
               if report["loses_detail"] else "not smoothing")
    return (f"Y keeps {report['hf_energy_kept']:.0%} of X's high-frequency energy (<= {HF_KEPT_MAX:.0%} needed); "
            f"best Gaussian sigma {report['best_blur_sigma']:g} px, MAE(blur(X),Y) {report['mae_best_blur_y']:.4f} "
            f"vs MAE(X,Y) {report['mae_x_y']:.4f}; low-passed at {COARSE_SIGMA:g} px, Y correlates with X at "
            f"{report['coarse_correlation']:.3f} (>= {COARSE_CORRELATION_MIN} needed) and keeps "
            f"{report['coarse_std_kept']:.0%} of its standard deviation (>= {COARSE_STD_KEPT_MIN:.0%} needed): {verdict}")


def flat_distance(images: np.ndarray) -> float:
    """MAE to the nearest flat image (each channel's median), averaged over the batch: the "how square" measure."""
    images = np.asarray(images, np.float32)
    medians = np.median(images, axis=(1, 2), keepdims=True)
    return float(np.mean(np.abs(images - medians)))


def image_stats(y: np.ndarray, x: np.ndarray, z: np.ndarray, previous: np.ndarray | None) -> dict[str, float]:
    """Per-application record of the black-square question."""
    return {
        "brightness": float(y.mean()),
        "contrast": float(y.std(axis=(1, 2)).mean()),   # per-image, per-channel std, averaged
        "hf_energy": float(hf_energy(y).mean()),
        "mae_y_z": mae(y, z),                            # unpredictability: distance to its own rebuild
        "mae_y_x": mae(y, x),                            # distance to the original photos
        "flat_distance": flat_distance(y),               # distance to the nearest flat image
        "change": mae(y, previous) if previous is not None else float("nan"),  # moved since the last one
    }


END_STATES = ("a black square", "a flat colour field (not black)", "a fixed texture (not flat)", "still changing")


def describe_end(record: dict[str, list[float]], flat_tol: float, still_tol: float) -> dict:
    """What repeated application ends in, and from which n every application moves the images by less than
    `still_tol` (MAE): a black square (flat, dark), a flat colour field, a fixed texture, or still changing."""
    changes = record["change"]
    converged_at = next((n for n in range(1, len(changes)) if all(c < still_tol for c in changes[n:])), None)
    flat = record["flat_distance"][-1] < flat_tol
    black = flat and record["brightness"][-1] < 0.05
    end = END_STATES[0 if black else 1 if flat else 2 if converged_at is not None else 3]
    return {"end_state": end, "converged_at": converged_at, "is_flat": bool(flat), "is_black": bool(black)}
