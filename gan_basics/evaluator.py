"""The judge of the generators, trained and reported alone. Run: python -m gan_basics.evaluator [--quick]

Trains (once, cached in outputs/gan_basics/checkpoints/judge/) the judge of judge.py and reports its
held-out accuracy, the real-vs-real Fréchet floor and how the distance grows for noisy real digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gan_basics.data import load_dataset
from gan_basics.judge import Judge, JudgeSettings, build_judge
from lab import exit_on_lab_error, start_run
from lab.constants import settings_from
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants of the judge. They are not the article's (it has no judge); the defaults train a
# digit classifier to ~98 % held-out accuracy in a few seconds on one CPU core.
DATASET = "digits"        # "digits" or "faces": which judge the script builds and reports on {nonempty}
CLASSIFIER_EPOCHS = 20    # passes over the 1438 training digits {> 0}
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


@exit_on_lab_error
def main(argv=None):
    run = start_run("gan_basics", globals(), argv, framework="torch")
    cfg = run.cfg
    judge = build_judge(cfg.DATASET, settings_from(JudgeSettings, cfg, seed=run.seed), log=run.log_scalars)
    data = load_dataset(cfg.DATASET)
    metrics = {"reference_size": judge.reference_size, "frechet_floor_real_vs_real": judge.floor,
               "frechet_train_vs_heldout_all": judge.frechet(data.train_images),
               "real_mean_pairwise_distance": judge.train_diversity}
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
    ax.set(xlabel="predicted digit", ylabel="true digit", xticks=range(10), yticks=range(10),
           title=f"judge on held-out digits: {judge.test_accuracy:.1%}")
    return save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
