"""An independent judge for the generators: a Fréchet distance between sample sets and, for digits,
the label a trained classifier reads in each sample. Run: python -m gan_basics.evaluator [--quick]

The article (004) says GAN training does not know when to stop ("nevíme kdy přestat"). The judge
answers with a number. It is trained once, on the real training digits only, and never sees a
generator:

- digits: a small CNN classifier (held-out accuracy >= 95 % is tested). Its penultimate layer (64
  ReLU units) is the feature space of the Fréchet distance, the way FID uses Inception's pool
  layer (Heusel et al. 2017); its predicted label scores conditional samples.
- faces (25x25, 80 training faces): no classifier can be trained on faces alone, so the features
  are the coordinates on the first 16 principal components of the training faces ("eigenfaces",
  Turk & Pentland 1991): a fixed linear map that keeps 16 dimensions for 20 held-out faces.

The reference set is the held-out split. The floor is the distance from real to real: random
training subsets of the reference's size against the reference, averaged. A generator cannot be
expected to beat it, since the distance of finite samples is biased upwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gan_basics.data import DATASETS, load_dataset
from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import load_checkpoint, load_state_dict_strict, save_checkpoint
from lab.paths import outputs_root
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants of the judge. They are not the article's (it has no judge); the defaults train a
# digit classifier to ~98 % held-out accuracy in a few seconds on one CPU core.
DATASET = "digits"        # "digits" or "faces": which judge the script builds and reports on {nonempty}
CLASSIFIER_EPOCHS = 20    # passes over the 1437 training digits {> 0}
CLASSIFIER_LR = 2e-3      # Adam's step size {> 0}
CLASSIFIER_BATCH = 64     # images per optimisation step {> 0}
FEATURE_DIM = 64          # width of the penultimate layer: the Fréchet feature space for digits {> 0}
FACE_COMPONENTS = 16      # principal components of the faces' feature space {> 0}
FLOOR_DRAWS = 10          # random real subsets averaged into the real-vs-real floor {> 0}
SEED = 0                  # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "cpu"            # the judge is tiny; "auto" would pick CUDA when available
TORCH_THREADS = 1         # CPU threads; one is fastest for nets this small on a shared 2-core CPU {>= 0}
QUICK: dict = {}          # the judge is the same in every profile, so scores are comparable
# -----------------------------------------------------------------------------

JUDGE_CONSTANTS = ("CLASSIFIER_EPOCHS", "CLASSIFIER_LR", "CLASSIFIER_BATCH", "FEATURE_DIM", "SEED")


class DigitClassifier(nn.Module):
    """8x8 digit -> 10 logits; `features()` is the 64-d penultimate layer used for the distance."""

    def __init__(self, feature_dim: int = FEATURE_DIM):
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
    """The Fréchet (2-Wasserstein) distance between Gaussians fitted to two feature sets.

    d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))   (Dowson & Landau 1982; FID).
    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix S_a^(1/2) S_b S_a^(1/2), which has the same spectrum and avoids complex round-off.
    """
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
    count = len(flat)
    return float(np.sqrt(gram)[~np.eye(count, dtype=bool)].mean())


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
        flat = images.reshape(len(images), -1) - self.face_mean
        return flat @ self.face_components.T

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


def train_classifier(train_images, train_labels, constants: dict, show_progress: bool = True,
                     log: Callable[..., None] | None = None) -> DigitClassifier:
    """Train the digit classifier with cross-entropy and Adam; seeded by constants["SEED"].
    `log(epoch, loss=...)` receives each epoch's mean loss (a run's log_scalars)."""
    generator = torch.Generator().manual_seed(int(constants["SEED"]))
    torch.manual_seed(int(constants["SEED"]))
    model = DigitClassifier(int(constants["FEATURE_DIM"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(constants["CLASSIFIER_LR"]))
    images = torch.from_numpy(train_images)
    labels = torch.from_numpy(train_labels)
    batch = int(constants["CLASSIFIER_BATCH"])
    bar = tqdm(range(int(constants["CLASSIFIER_EPOCHS"])), desc="judge: training digit classifier",
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


def build_judge(dataset: str, constants: dict | None = None, show_progress: bool = True,
                log: Callable[..., None] | None = None) -> Judge:
    """The judge of `dataset`, trained once and cached in judge_path(dataset) (digits); `log` gets
    the training curve when it is trained here."""
    if dataset not in DATASETS:
        raise LabError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    constants = dict(constants or {name: globals()[name] for name in JUDGE_CONSTANTS})
    torch.set_num_threads(int(constants.get("TORCH_THREADS", TORCH_THREADS)))
    data = load_dataset(dataset)
    classifier = face_mean = face_components = None
    test_accuracy = None
    if dataset == "digits":
        path = judge_path(dataset)
        classifier = DigitClassifier(int(constants["FEATURE_DIM"]))
        cached = load_checkpoint(path) if path.is_file() else None
        if cached is not None and all(cached["constants"].get(k) == constants[k] for k in JUDGE_CONSTANTS):
            load_state_dict_strict(classifier, cached["model"], f"judge {path}")
            classifier.eval()
        else:
            classifier = train_classifier(data.train_images, data.train_labels, constants, show_progress, log)
            save_checkpoint(path, {"model": classifier.state_dict(), "constants": constants})
        with torch.no_grad():
            predicted = classifier(torch.from_numpy(data.test_images)).argmax(1).numpy()
        test_accuracy = float((predicted == data.test_labels).mean())
    else:
        flat = data.train_images.reshape(len(data.train_images), -1).astype(np.float64)
        face_mean = flat.mean(0)
        _, _, rows = np.linalg.svd(flat - face_mean, full_matrices=False)
        face_components = rows[: int(constants.get("FACE_COMPONENTS", FACE_COMPONENTS))]
    judge = Judge(dataset, classifier, face_mean, face_components, np.empty((0, 0)), 0.0, test_accuracy,
                  mean_pairwise_distance(data.train_images))
    judge.reference_features = judge.features(data.test_images)
    rng = np.random.default_rng(int(constants["SEED"]))
    size = len(data.test_images)
    draws = int(constants.get("FLOOR_DRAWS", FLOOR_DRAWS))
    judge.floor = float(np.mean([
        judge.frechet(data.train_images[rng.choice(len(data.train_images), size, replace=False)])
        for _ in range(draws)
    ]))
    return judge


@exit_on_lab_error
def main(argv=None):
    run = start_run("gan_basics", globals(), argv, framework="torch")
    cfg = run.cfg
    judge = build_judge(cfg.DATASET, run.constants, log=run.log_scalars)
    data = load_dataset(cfg.DATASET)
    metrics = {
        "reference_size": judge.reference_size,
        "frechet_floor_real_vs_real": judge.floor,
        "frechet_train_vs_heldout_all": judge.frechet(data.train_images),
        "real_mean_pairwise_distance": judge.train_diversity,
    }
    # How the distance grows when real held-out digits are blurred by noise: a sanity scale.
    rng = np.random.default_rng(run.seed)
    for sigma in (0.1, 0.3, 1.0):
        noisy = np.clip(data.test_images + rng.normal(0, sigma, data.test_images.shape), -1, 1).astype(np.float32)
        metrics[f"frechet_heldout_plus_noise_{sigma}"] = judge.frechet(noisy)
    if judge.test_accuracy is not None:
        metrics["heldout_accuracy"] = judge.test_accuracy
        run.add_artifact(_plot_confusion(judge, data, run.path("confusion.png")), "judge's confusion on held-out digits")
    print(f"judge for {cfg.DATASET}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    run.finish(metrics)


def _plot_confusion(judge: Judge, data, path: Path) -> Path:
    import matplotlib.pyplot as plt

    predicted = judge.predict(data.test_images)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (data.test_labels, predicted), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(confusion, cmap="Blues")
    for (row, col), count in np.ndenumerate(confusion):
        if count:
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_title(f"judge on held-out digits: {judge.test_accuracy:.1%}")
    return save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
