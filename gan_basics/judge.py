"""The judge of the generators (used by gan.py and evaluator.py): a Fréchet distance between sample
sets and, for digits, the label a trained classifier reads in each sample.

Trained once on real training images, it never sees a generator. Digits: a small CNN whose 64-unit
penultimate layer is the feature space, as FID uses Inception's (Heusel et al. 2017). Faces: the first
16 principal components (eigenfaces, Turk & Pentland 1991). The reference is the held-out split; the
floor is the real-vs-real distance of training subsets of the reference's size, averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gan_basics.data import load_dataset
from lab import LabError
from lab.checkpoint import cache_lock, load_cache, load_state_dict_strict, save_checkpoint
from lab.paths import outputs_root


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is made (defaults: evaluator.py's constants); a cached judge made otherwise is retrained."""

    classifier_epochs: int = 20     # passes over the 1438 training digits
    classifier_lr: float = 2e-3     # Adam's step size
    classifier_batch: int = 64      # images per optimisation step
    feature_dim: int = 64           # width of the penultimate layer: the Fréchet feature space
    face_components: int = 16       # principal components of the faces' feature space
    floor_draws: int = 10           # random real subsets averaged into the real-vs-real floor
    seed: int = 0

    def trained_with(self) -> dict[str, Any]:
        """The settings that change the trained classifier (the floor's and faces' do not)."""
        return {k: v for k, v in asdict(self).items() if k not in ("face_components", "floor_draws")}


class DigitClassifier(nn.Module):
    """8x8 digit -> 10 logits; `features()` is the 64-d penultimate layer used for the distance."""

    def __init__(self, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8x8 -> 4x4
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 4x4 -> 2x2
            nn.Flatten(),
            nn.Linear(32 * 2 * 2, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to two feature sets
    (Dowson & Landau 1982; FID), via the symmetric S_a^(1/2) S_b S_a^(1/2) (same spectrum, no complex round-off)."""
    features_a = np.asarray(features_a, dtype=np.float64)
    features_b = np.asarray(features_b, dtype=np.float64)
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise LabError(f"Fréchet distance needs two (N, D) feature sets; got {features_a.shape} and {features_b.shape}")
    if len(features_a) < 2 or len(features_b) < 2:
        raise LabError("Fréchet distance needs at least 2 samples in each set")
    mean_a, mean_b = features_a.mean(0), features_b.mean(0)
    cov_a = np.atleast_2d(np.cov(features_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(features_b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sqrt(np.clip(middle, 0.0, None)).sum()
    distance = float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


def mean_pairwise_distance(images: np.ndarray, max_samples: int = 500, seed: int = 0) -> float:
    """Mean Euclidean distance between all pairs of (up to max_samples) images: a diversity score."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if len(flat) > max_samples:
        flat = flat[np.random.default_rng(seed).choice(len(flat), max_samples, replace=False)]
    squared = (flat**2).sum(1)
    gram = np.clip(squared[:, None] + squared[None, :] - 2.0 * flat @ flat.T, 0.0, None)
    return float(np.sqrt(gram)[~np.eye(len(flat), dtype=bool)].mean())


@dataclass
class Judge:
    """Scores sample sets of one data set against its held-out split."""

    dataset: str
    classifier: DigitClassifier | None   # digits only
    face_mean: np.ndarray | None         # faces only: mean face and principal components
    face_components: np.ndarray | None
    reference_features: np.ndarray
    floor: float
    test_accuracy: float | None
    train_diversity: float               # mean pairwise distance of real training images

    @property
    def reference_size(self) -> int:
        return len(self.reference_features)

    def features(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if self.classifier is not None:
            with torch.no_grad():
                return self.classifier.features(torch.from_numpy(images)).numpy()
        return (images.reshape(len(images), -1) - self.face_mean) @ self.face_components.T

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The classifier's digit for each image (digits only)."""
        if self.classifier is None:
            raise LabError(f"the {self.dataset} judge has no labels to predict; use DATASET=digits")
        with torch.no_grad():
            return self.classifier(torch.from_numpy(np.asarray(images, dtype=np.float32))).argmax(1).numpy()

    def frechet(self, images: np.ndarray) -> float:
        """Fréchet distance of these images to the held-out real set, in the judge's features."""
        return frechet_distance(self.features(images), self.reference_features)


def judge_path(dataset: str) -> Path:
    """Shared by every profile and script, so scores stay comparable: outputs/gan_basics/checkpoints/judge/."""
    return outputs_root() / "gan_basics" / "checkpoints" / "judge" / f"{dataset}_classifier.pt"


def train_classifier(train_images, train_labels, settings: JudgeSettings, show_progress: bool = True,
                     log: Callable[..., None] | None = None) -> DigitClassifier:
    """The digit classifier, trained with cross-entropy and Adam; `log(epoch, judge_loss=...)` gets its curve."""
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = DigitClassifier(settings.feature_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.classifier_lr)
    images, labels, batch = torch.from_numpy(train_images), torch.from_numpy(train_labels), settings.classifier_batch
    bar = tqdm(range(settings.classifier_epochs), desc="judge: training digit classifier",
               disable=not show_progress, leave=False)
    for epoch in bar:
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), batch):
            index = order[start : start + batch]
            # A one-pixel random shift keeps the judge from memorising stroke positions.
            shift = tuple(int(s) for s in torch.randint(-1, 2, (2,), generator=generator))
            batch_images = torch.roll(images[index], shifts=shift, dims=(2, 3))
            loss = nn.functional.cross_entropy(model(batch_images), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        bar.set_postfix(loss=f"{total / len(images):.4f}")
        if log is not None:
            log(epoch + 1, judge_loss=total / len(images))
    return model.eval()


def cached_classifier(path: Path, settings: JudgeSettings) -> DigitClassifier | None:
    """The judge cached at `path` (or its previous copy) when trained with `settings`; None when it must be
    trained: no cache, other settings, or unreadable files (a truncated cache is rebuilt, not left to the user)."""
    cached = load_cache(path, "the judge")
    if not isinstance(cached, dict) or cached.get("settings") != settings.trained_with():
        return None
    classifier = DigitClassifier(settings.feature_dim)
    try:
        load_state_dict_strict(classifier, cached.get("model") or {}, f"judge {path}")
    except LabError as error:
        print(f"note: {error} -- training the judge again")
        return None
    return classifier.eval()


def build_judge(dataset: str, settings: JudgeSettings | None = None, show_progress: bool = True,
                log: Callable[..., None] | None = None) -> Judge:
    """The judge of `dataset`, trained once and cached in judge_path(dataset); `log` gets its training curve."""
    settings = settings or JudgeSettings()
    data = load_dataset(dataset)  # refuses an unknown data set
    classifier = face_mean = face_components = test_accuracy = None
    if dataset == "digits":
        path = judge_path(dataset)
        with cache_lock(path.parent, f"the {dataset} judge"):  # two first runs: one trains it, the other waits
            classifier = cached_classifier(path, settings)
            if classifier is None:
                classifier = train_classifier(data.train_images, data.train_labels, settings, show_progress, log)
                save_checkpoint(path, {"model": classifier.state_dict(), "settings": settings.trained_with()})
        with torch.no_grad():
            predicted = classifier(torch.from_numpy(data.test_images)).argmax(1).numpy()
        test_accuracy = float((predicted == data.test_labels).mean())
    else:
        flat = data.train_images.reshape(len(data.train_images), -1).astype(np.float64)
        face_mean = flat.mean(0)
        _, _, rows = np.linalg.svd(flat - face_mean, full_matrices=False)
        face_components = rows[: settings.face_components]
    judge = Judge(dataset, classifier, face_mean, face_components, np.empty((0, 0)), 0.0, test_accuracy,
                  mean_pairwise_distance(data.train_images))
    judge.reference_features = judge.features(data.test_images)
    rng, size = np.random.default_rng(settings.seed), len(data.test_images)
    picks = (rng.choice(len(data.train_images), size, replace=False) for _ in range(settings.floor_draws))
    judge.floor = float(np.mean([judge.frechet(data.train_images[pick]) for pick in picks]))
    return judge
