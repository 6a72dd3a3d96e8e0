"""gan_basics, first half: the DCGAN players, the judge, gan.py and cgan.py (article 004)."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from gan_basics import cgan, gan, gan_training
from gan_basics.data import load_dataset
from gan_basics.judge import build_judge, frechet_distance, judge_path, mean_pairwise_distance
from gan_basics.model import Discriminator, Generator, pulling_away_term
from lab.checkpoint import load_checkpoint
from lab.scalars import read_scalars


@pytest.fixture(scope="module")
def judge_file(tmp_path_factory):
    """Train the digit judge once for this module, in a temporary outputs folder."""
    root = tmp_path_factory.mktemp("judge_outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_OUTPUT_ROOT", str(root))
        judge = build_judge("digits", show_progress=False)
        path = judge_path("digits")
    return judge, path


@pytest.fixture
def outputs_with_judge(lab_outputs, judge_file):
    """A fresh outputs folder that already holds the trained judge (so no test retrains it)."""
    target = lab_outputs / "gan_basics" / "checkpoints" / "judge" / judge_file[1].name
    target.parent.mkdir(parents=True)
    shutil.copy(judge_file[1], target)
    return lab_outputs


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 25, 25)])
@pytest.mark.parametrize("classes", [0, 10])
def test_generator_and_discriminator_shapes_and_ranges(shape, classes):
    torch.manual_seed(0)
    generator = Generator(16, shape, width=8, num_classes=classes)
    discriminator = Discriminator(shape, width=8, num_classes=classes)
    labels = torch.arange(6) % 10 if classes else None
    images = generator(torch.randn(6, 16) * 10, labels)  # large z pushes tanh to its limits
    assert images.shape == (6, *shape)
    assert images.max() - images.min() > 0.5  # not a constant image
    logits = discriminator(images, labels)
    assert logits.shape == (6,)
    assert torch.isfinite(logits).all()
    assert discriminator.features(images, labels).shape == (6, discriminator.feature_dim)


def test_conditional_players_use_the_label():
    torch.manual_seed(0)
    generator = Generator(16, (1, 8, 8), width=8, num_classes=10).eval()
    z = torch.randn(1, 16).repeat(2, 1)
    images = generator(z, torch.tensor([3, 7]))
    assert not torch.allclose(images[0], images[1])


def test_projection_discriminator_judges_the_label_too():
    torch.manual_seed(0)
    discriminator = Discriminator((1, 8, 8), width=8, num_classes=10).eval()
    torch.nn.init.normal_(discriminator.embed.weight, 0.0, 1.0)
    image = torch.randn(1, 1, 8, 8).repeat(2, 1, 1, 1)
    logits = discriminator(image, torch.tensor([3, 7]))
    assert not torch.allclose(logits[0], logits[1])


def test_pulling_away_term_is_one_for_identical_and_zero_for_orthogonal_samples():
    same = torch.ones(5, 4)
    assert pulling_away_term(same).item() == pytest.approx(1.0, abs=1e-6)
    assert pulling_away_term(torch.eye(4)).item() == pytest.approx(0.0, abs=1e-6)


def test_judge_reads_real_heldout_digits(judge_file):
    judge, path = judge_file
    assert path.is_file()
    assert judge.test_accuracy >= 0.95
    data = load_dataset("digits")
    assert (judge.predict(data.test_images) == data.test_labels).mean() == pytest.approx(judge.test_accuracy)
    # The floor is a positive distance, well below that of noise-blurred digits (tested below).


def test_frechet_distance_is_zero_on_itself_and_grows_with_noise(judge_file):
    judge, _ = judge_file
    images = load_dataset("digits").test_images
    assert judge.frechet(images) == pytest.approx(0.0, abs=1e-6 * judge.floor + 1e-6)
    rng = np.random.default_rng(0)
    distances = [
        judge.frechet(np.clip(images + rng.normal(0, sigma, images.shape), -1, 1).astype(np.float32))
        for sigma in (0.1, 0.3, 0.6, 1.0)
    ]
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[-1] > 5 * judge.floor
    # The same on plain Gaussians: a shifted mean adds exactly |shift|^2.
    points = rng.normal(size=(2000, 3))
    assert frechet_distance(points, points + np.array([2.0, 0, 0])) == pytest.approx(4.0, rel=1e-6)


def test_diversity_of_identical_images_is_zero():
    images = np.ones((10, 1, 8, 8), dtype=np.float32)
    assert mean_pairwise_distance(images) == 0.0
    assert mean_pairwise_distance(load_dataset("digits").test_images) > 1.0


def _record(root, name):
    return json.loads((root / "gan_basics" / name / "run.json").read_text())


def test_quick_cgan_beats_chance_and_writes_its_outputs(outputs_with_judge):
    cgan.main(["--quick", "--set", "EPOCHS=5"])
    record = _record(outputs_with_judge, "cgan")
    metrics = record["metrics"]
    assert record["status"] == "complete"
    assert metrics["label_accuracy_best"] >= 0.30, metrics
    assert set(metrics["label_accuracy_per_digit"]) == {str(d) for d in range(10)}
    folder = outputs_with_judge / "gan_basics" / "cgan"
    samples = np.load(folder / "samples_best.npy")
    labels = np.load(folder / "samples_best_labels.npy")
    assert samples.shape == (len(labels), 1, 8, 8)
    assert sorted(p.name for p in (folder / "samples").glob("*.png"))[:2] == ["epoch_0001.png", "epoch_0002.png"]
    from PIL import Image

    with Image.open(folder / "samples.gif") as gif:
        assert gif.n_frames == 5
    for artifact in record["artifacts"]:
        assert (folder / artifact["path"]).is_file()
    (claim,) = record["claims"]
    assert claim["claim"].startswith("the cGAN draws the digit asked for")
    # The share comes with its sampling interval (Wilson, 95 %) over the samples the judge read.
    low, high = metrics["label_accuracy_interval"]
    assert metrics["label_samples"] == len(labels)
    assert low < metrics["label_accuracy_best"] < high and high - low < 0.12, metrics
    assert f"of {len(labels)} samples (95 % interval {low:.1%}-{high:.1%}" in claim["measured"]
    # The conditional GAN is gan.py with CONDITIONAL = True, not a copy of its settings.
    assert record["script"] == "gan" and record["constants"]["CONDITIONAL"] is True
    curves = read_scalars(folder / "scalars.csv")
    assert [step for step, _ in curves["accuracy"]] == [1, 2, 3, 4, 5]


def test_gan_dry_run_resumes_and_refuses_other_architecture(outputs_with_judge, capsys):
    gan.main(["--dry-run"])
    record = _record(outputs_with_judge, "gan_digits")
    assert record["metrics"]["epochs_trained"] == 2
    assert len(record["metrics"]) and math.isfinite(record["metrics"]["frechet_best"])
    assert len(record["claims"]) == 2 and all(isinstance(c["reproduced"], bool) for c in record["claims"])
    curves = read_scalars(outputs_with_judge / "gan_basics" / "gan_digits" / "scalars.csv")
    assert [step for step, _ in curves["frechet_over_floor"]] == [1, 2]
    # Rerunning with more epochs resumes at epoch 2 instead of starting over.
    gan.main(["--dry-run", "--set", "EPOCHS=3"])
    assert "resumed from" in capsys.readouterr().out
    assert _record(outputs_with_judge, "gan_digits")["metrics"]["epochs_trained"] == 3
    # Fewer epochs than are done is refused, never rewound.
    with pytest.raises(SystemExit):
        gan.main(["--dry-run", "--set", "EPOCHS=2"])
    assert "3 steps done, more than the 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        gan.main(["--dry-run", "--set", "G_WIDTH=16", "--set", "EPOCHS=4"])
    assert exit_info.value.code == 2
    assert "G_WIDTH: checkpoint has 32, this run has 16" in capsys.readouterr().err


def test_unknown_dataset_lists_the_valid_ones(lab_outputs, capfd):
    with pytest.raises(SystemExit) as exit_info:
        gan.main(["--dry-run", "--set", "DATASET=cats"])
    assert exit_info.value.code == 2
    assert "unknown dataset 'cats'; valid: digits, faces" in capfd.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cgan.main(["--dry-run", "--set", "DATASET=faces"])  # gan.py's main, in this process
    assert exit_info.value.code == 2
    assert "needs labels" in capfd.readouterr().err
    assert not os.listdir(lab_outputs)  # refused before any folder was made


def test_nan_losses_stop_with_a_message_and_keep_the_best(outputs_with_judge, capsys, monkeypatch):
    real_step = gan_training.gan_step
    calls = {"count": 0}
    steps_per_epoch = math.ceil((len(load_dataset("digits").train_images) - 1) / gan.BATCH_SIZE)

    def step_that_collapses_in_epoch_two(*args):
        calls["count"] += 1
        return real_step(*args) if calls["count"] <= steps_per_epoch else (math.nan, math.nan, 0.0)

    monkeypatch.setattr(gan_training, "gan_step", step_that_collapses_in_epoch_two)
    with pytest.raises(SystemExit) as exit_info:
        gan.main(["--dry-run"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "NaN" in message and "epoch 2" in message and "best generator (epoch 1)" in message
    best = outputs_with_judge / "gan_basics" / "checkpoints" / "dry_run" / "gan_digits_best.pt"
    assert best.is_file()
    assert _record(outputs_with_judge, "gan_digits")["status"] == "collapsed"


def test_an_interrupted_then_resumed_run_equals_an_uninterrupted_one(outputs_with_judge, monkeypatch):
    """Seeded, killed in epoch 3 of 3, rerun: the same weights and scores as one uninterrupted run."""
    gan.main(["--dry-run", "--set", "EPOCHS=3", "--set", "RUN_NAME=whole"])
    real_step = gan_training.gan_step
    steps_per_epoch = math.ceil((len(load_dataset("digits").train_images) - 1) / gan.BATCH_SIZE)
    calls = {"count": 0}

    def crash_in_epoch_three(*args):
        calls["count"] += 1
        if calls["count"] == 2 * steps_per_epoch + 5:
            raise RuntimeError("simulated crash")
        return real_step(*args)

    monkeypatch.setattr(gan_training, "gan_step", crash_in_epoch_three)
    with pytest.raises(RuntimeError, match="simulated crash"):
        gan.main(["--dry-run", "--set", "EPOCHS=3", "--set", "RUN_NAME=cut"])
    checkpoints = outputs_with_judge / "gan_basics" / "checkpoints"
    assert load_checkpoint(checkpoints / "dry_run-cut" / "gan_digits_last.pt")["step"] == 2
    monkeypatch.setattr(gan_training, "gan_step", real_step)
    gan.main(["--dry-run", "--set", "EPOCHS=3", "--set", "RUN_NAME=cut"])
    whole = load_checkpoint(checkpoints / "dry_run-whole" / "gan_digits_last.pt")
    resumed = load_checkpoint(checkpoints / "dry_run-cut" / "gan_digits_last.pt")
    assert resumed["step"] == whole["step"] == 3
    for part in ("generator", "generator_average", "discriminator"):
        for key, tensor in whole[part].items():
            torch.testing.assert_close(resumed[part][key], tensor, rtol=1e-6, atol=1e-7, msg=f"{part}.{key}")
    assert resumed["history"]["frechet"] == pytest.approx(whole["history"]["frechet"], rel=1e-6)
    assert _record(outputs_with_judge, "gan_digits-cut")["metrics"]["frechet_best"] == pytest.approx(
        _record(outputs_with_judge, "gan_digits-whole")["metrics"]["frechet_best"], rel=1e-6)
