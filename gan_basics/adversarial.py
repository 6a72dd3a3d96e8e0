"""Adversarial examples: a perturbation a person does not notice makes a digits classifier wrong.

Article 004's "optical illusions for AI" (a panda called a gibbon): FGSM (Goodfellow, Shlens & Szegedy
2015) and PGD (Madry et al. 2018) attack a digits MLP within an L-infinity budget epsilon (pixels in
[0, 1]), against random +-epsilon noise of the same size as the control.

Run: python -m gan_basics.adversarial [--quick] [--set ATTACKS=fgsm] [--set EPSILONS="(0, 0.1)"]
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from gan_basics.ae_model import ClassifierSettings, DigitsClassifier, parse_choice_list, to_unit_range, train_model
from gan_basics.data import load_dataset
from lab import LabError, exit_on_lab_error, start_run
from lab.constants import settings_from
from lab.plots import save_figure

# -----------------------------------------------------------------------------
# Constants. The primer gives no numbers for this demo; the defaults follow the papers cited above.
ATTACKS = "fgsm,pgd"       # comma-separated attacks to run: fgsm, pgd (or all); random noise always runs
EPSILONS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)  # L-infinity budgets, pixels in [0, 1]
EXAMPLE_EPSILON = 0.1      # the budget of the example panel (MNIST's customary 0.1 .. 0.3)
EXAMPLE_COUNT = 6          # rows of the example panel {> 0}
PGD_STEPS = 20             # PGD iterations (Madry et al. use 40 on MNIST; 8x8 digits need fewer) {> 0}
PGD_STEP_FACTOR = 2.5      # PGD step = factor * epsilon / steps (Madry et al.'s rule of thumb) {> 0}
NOISE_REPEATS = 5          # draws of random +-epsilon noise averaged for the control {> 0}
CLASSIFIER_HIDDEN = (256, 256)  # widths of the classifier's hidden ReLU layers
EPOCHS = 60                # passes over the 1438 training digits {> 0}
BATCH_SIZE = 64            # images per optimisation step {> 0}
CHECKPOINT_EVERY = 20      # epochs between checkpoints (and at the end, and on Ctrl+C) {> 0}
LEARNING_RATE = 1e-3       # Adam's step size {> 0}
SEED = 0                   # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
TORCH_THREADS = 1          # torch threads on the CPU (tiny models: 1 is fastest on shared cores); 0 = default
QUICK = {"EPOCHS": 40, "PGD_STEPS": 10, "NOISE_REPEATS": 3}
DRY_RUN = {"EPOCHS": 2, "PGD_STEPS": 2, "NOISE_REPEATS": 1, "EPSILONS": (0.0, 0.1)}
# -----------------------------------------------------------------------------

_VALID_ATTACKS = ("fgsm", "pgd")


def check_epsilon(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise LabError(f"{name} has epsilon {value}, outside [0, 1]; it is an L-infinity size in pixel units "
                       f"(pixels lie in [0, 1]), e.g. --set {name}=0.1")
    return value


def loss_gradient(model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The gradient of the cross-entropy loss with respect to the input pixels."""
    images = images.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(images), labels), images)[0]


def fgsm(model, images, labels, epsilon: float, steps: int = 1, step_factor: float = 1.0) -> torch.Tensor:
    """FGSM: x + epsilon * sign(grad_x loss), clipped to the valid pixel range (Goodfellow et al. 2015, eq. 3)."""
    return (images + epsilon * loss_gradient(model, images, labels).sign()).clamp(0.0, 1.0)


def pgd(model, images, labels, epsilon: float, steps: int = 20, step_factor: float = 2.5) -> torch.Tensor:
    """PGD with a random start (Madry et al. 2018, eq. 2): signed steps projected onto the epsilon box."""
    if epsilon == 0:
        return images.clone()
    step = step_factor * epsilon / steps
    adversarial = (images + torch.empty_like(images).uniform_(-epsilon, epsilon)).clamp(0.0, 1.0)
    for _ in range(steps):
        adversarial = adversarial + step * loss_gradient(model, adversarial, labels).sign()
        adversarial = torch.min(torch.max(adversarial, images - epsilon), images + epsilon).clamp(0.0, 1.0)
    return adversarial


def random_sign_noise(model, images, labels, epsilon: float, steps: int = 1, step_factor: float = 1.0):
    """The control: +-epsilon per pixel with random signs, the same L-infinity size as the attacks."""
    signs = torch.randint(0, 2, images.shape, dtype=images.dtype) * 2 - 1
    return (images + epsilon * signs).clamp(0.0, 1.0)


_METHODS = {"fgsm": fgsm, "pgd": pgd, "random noise": random_sign_noise}


@torch.no_grad()
def accuracy(model, images, labels) -> float:
    return float((model(images).argmax(1) == labels).float().mean())


def plot_accuracy_curves(path, epsilons, curves: dict[str, list[float]]):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = {"fgsm": ("tab:red", "o"), "pgd": ("tab:purple", "s"), "random noise": ("tab:gray", "^")}
    for method, values in curves.items():
        colour, marker = styles[method]
        ax.plot(epsilons, 100 * np.asarray(values), marker=marker, color=colour, label=method.upper()
                if method != "random noise" else "random +-epsilon noise (control)")
    ax.set(xlabel="epsilon (L-infinity size of the change, pixels in [0, 1])", ylabel="test accuracy (%)",
           ylim=(0, 102), title="Digits classifier under attack vs under noise of the same size")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path, dpi=120)


def plot_examples(path, originals, adversarials, model, epsilon: float, method: str):
    """Rows of: original | perturbation (amplified) | adversarial, titled with label and confidence."""
    with torch.no_grad():
        clean_probs, adv_probs = F.softmax(model(originals), 1), F.softmax(model(adversarials), 1)
    rows = len(originals)
    fig, axes = plt.subplots(rows, 3, figsize=(6.0, 2.0 * rows + 0.6), squeeze=False)
    for row in range(rows):
        original, adversarial = originals[row, 0].numpy(), adversarials[row, 0].numpy()
        panels = [(original, "gray_r", (0, 1), clean_probs[row]),
                  ((adversarial - original) / max(epsilon, 1e-8), "coolwarm", (-1, 1), None),
                  (adversarial, "gray_r", (0, 1), adv_probs[row])]
        for column, (image, cmap, (low, high), probs) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(image, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            if probs is not None:
                label = int(probs.argmax())
                changed = column == 2 and label != int(clean_probs[row].argmax())
                ax.set_title(f"'{label}' {100 * float(probs[label]):.0f}%", fontsize=10,
                             color="tab:red" if changed else "black")
            else:
                ax.set_title(f"change / {epsilon:g}", fontsize=9)
    fig.suptitle(f"{method.upper()} at epsilon = {epsilon:g}: original, change (amplified), adversarial", fontsize=10)
    return save_figure(fig, path, dpi=120)


@exit_on_lab_error
def main(argv=None):
    run = start_run("gan_basics", globals(), argv, framework="torch", checkpoints=True)
    cfg = run.cfg
    attacks = parse_choice_list(cfg.ATTACKS, _VALID_ATTACKS, "attack")
    epsilons = [check_epsilon("EPSILONS", value) for value in cfg.EPSILONS]
    example_epsilon = check_epsilon("EXAMPLE_EPSILON", cfg.EXAMPLE_EPSILON)
    if not epsilons:
        raise LabError("EPSILONS is empty; give at least one budget, e.g. --set EPSILONS='(0, 0.1)'")

    data = load_dataset("digits", seed=0)
    train_images, test_images = to_unit_range(data.train_images), to_unit_range(data.test_images)
    train_labels, test_labels = torch.from_numpy(data.train_labels), torch.from_numpy(data.test_labels)
    settings = settings_from(ClassifierSettings, cfg, dataset="digits", image_shape=data.image_shape,
                             num_classes=data.num_classes, hidden_sizes=cfg.CLASSIFIER_HIDDEN)
    model = DigitsClassifier.from_settings(settings)

    def classification_loss(indices):
        return F.cross_entropy(model(train_images[indices]), train_labels[indices])

    history, interrupted = train_model(
        run, "adversarial_classifier", model, settings, classification_loss, len(train_images), epochs=cfg.EPOCHS,
        desc="classifier (cross-entropy)", checkpoint_every=cfg.CHECKPOINT_EVERY)
    model.requires_grad_(False)
    clean_accuracy = accuracy(model, test_images, test_labels)
    print(f"clean test accuracy: {100 * clean_accuracy:.1f}%")

    methods = [*attacks, "random noise"]
    curves: dict[str, list[float]] = {method: [] for method in methods}
    with tqdm(total=len(methods) * len(epsilons), desc="accuracy under attack") as bar:
        for method in methods:
            for epsilon in epsilons:
                scores = [accuracy(model, _METHODS[method](model, test_images, test_labels, epsilon,
                                                          steps=cfg.PGD_STEPS, step_factor=cfg.PGD_STEP_FACTOR),
                                   test_labels) for _ in range(cfg.NOISE_REPEATS if method == "random noise" else 1)]
                curves[method].append(float(np.mean(scores)))
                bar.set_postfix(method=method, eps=epsilon, accuracy=f"{curves[method][-1]:.3f}")
                bar.update()

    run.add_artifact(plot_accuracy_curves(run.path("accuracy_vs_epsilon.png"), epsilons, curves),
                     "test accuracy vs epsilon: FGSM, PGD and random noise of the same L-infinity size")
    # The example panel shows the attack's successes first (one per true digit where possible): the
    # primer's "panda becomes a gibbon"; failures fill the remaining rows.
    example_method = attacks[0]
    with torch.no_grad():
        correct = (model(test_images).argmax(1) == test_labels).nonzero().flatten()
    candidates = _METHODS[example_method](model, test_images[correct], test_labels[correct], example_epsilon,
                                          steps=cfg.PGD_STEPS, step_factor=cfg.PGD_STEP_FACTOR)
    with torch.no_grad():
        fooled = (model(candidates).argmax(1) != test_labels[correct]).tolist()
    chosen, seen_labels = [], set()
    for position in sorted(range(len(correct)), key=lambda i: not fooled[i]):
        label = int(test_labels[correct[position]])
        if label not in seen_labels or len(seen_labels) >= data.num_classes:
            chosen.append(position)
            seen_labels.add(label)
        if len(chosen) == cfg.EXAMPLE_COUNT:
            break
    originals, adversarials = test_images[correct][chosen], candidates[chosen]
    run.add_artifact(plot_examples(run.path("adversarial_examples.png"), originals, adversarials, model,
                                   example_epsilon, example_method),
                     f"{example_method.upper()} examples at epsilon {example_epsilon:g}: original, amplified "
                     "change, adversarial, with predicted label and confidence")

    metrics = {"clean_accuracy": clean_accuracy, "final_train_loss": history[-1] if history else None,
               "epsilons": epsilons,
               "accuracy": {method.replace(" ", "_"): values for method, values in curves.items()}}
    if example_epsilon in epsilons:
        index = epsilons.index(example_epsilon)
        for method in methods:
            metrics[f"accuracy_drop_points_{method.replace(' ', '_')}_at_{example_epsilon:g}"] = round(
                100 * (clean_accuracy - curves[method][index]), 2)
        attack, noise = curves[attacks[0]][index], curves["random noise"][index]
        run.add_claim(f"a small, deliberate change fools the classifier ({attacks[0].upper()} at epsilon "
                      f"{example_epsilon:g}), while random noise of the same size does not",
                      f"accuracy {clean_accuracy:.1%} -> {attack:.1%} ({attacks[0].upper()}) vs {noise:.1%} (noise)",
                      clean_accuracy - attack >= 0.5 and clean_accuracy - noise <= 0.1,
                      "98.1 % -> 40.7 % (FGSM) vs 96.8 % (noise), epsilon 0.1")
    run.finish(metrics, status="interrupted" if interrupted else "complete")


if __name__ == "__main__":
    main()
