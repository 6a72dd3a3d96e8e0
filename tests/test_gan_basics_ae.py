"""gan_basics, second half: autoencoders, VAE and adversarial examples, each against its baseline.

The quick profiles are run once per module (in-process, outputs in a temporary LAB_OUTPUT_ROOT).
The thresholds are looser than the full-profile goals because the quick models train
for a fraction of the epochs; each is still one that an untrained or broken model fails:
- AE error <= PCA error at latent size 2 (a linear model cannot beat PCA, so only a working
  non-linear autoencoder passes; quick runs measured a ratio of about 0.6);
- a positive PSNR gain over the noisy input at the middle noise level (the identity map scores 0;
  quick runs measured about +4.7 dB Gaussian, +5.3 dB salt-and-pepper);
- anomaly AUC > 0.7 (chance is 0.5; quick runs measured about 0.9);
- FGSM accuracy at epsilon 0.1 at least 30 points below random noise of the same size (quick runs
  measured about 40% vs 97%); a model the attack did not find gradients for would score alike.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan_basics import adversarial, ae_model, autoencoder, vae
from lab import LabError
from lab.checkpoint import load_checkpoint
from lab.safe_load import settings_from_checkpoint
from lab.scalars import read_scalars


@pytest.fixture(scope="module")
def quick_outputs(tmp_path_factory):
    """Run the three scripts' quick profiles once; return {script: run.json record}."""
    root = tmp_path_factory.mktemp("gan_basics_ae") / "outputs"
    root.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_OUTPUT_ROOT", str(root))
        records = {}
        for module in (autoencoder, vae, adversarial):
            module.main(["--quick"])
            name = module.__name__.rsplit(".", 1)[-1]
            records[name] = json.loads((root / "gan_basics" / name / "run.json").read_text())
    return root, records


def _assert_artifacts_valid(root, record, expected_count):
    folder = root / "gan_basics" / record["script"]
    assert len(record["artifacts"]) >= expected_count
    for artifact in record["artifacts"]:
        path = folder / artifact["path"]
        assert path.is_file() and path.stat().st_size > 1000, path
        with Image.open(path) as image:
            image.verify()


def test_autoencoder_beats_pca_denoises_and_detects_anomalies(quick_outputs):
    root, records = quick_outputs
    metrics = records["autoencoder"]["metrics"]
    reduction = metrics["reduction"]
    assert set(reduction["ae_mse"]) == {"2", "4", "8", "16"}
    assert reduction["ae_mse"]["2"] <= reduction["pca_mse"]["2"]
    # The error must fall as the code grows, for both methods.
    assert reduction["ae_mse"]["16"] < reduction["ae_mse"]["2"]
    assert reduction["pca_mse"]["16"] < reduction["pca_mse"]["2"]
    denoising = metrics["denoising"]
    assert denoising["gaussian_gain_db_at_0.25"] > 0
    assert denoising["salt_and_pepper_gain_db_at_0.15"] > 0
    aucs = metrics["anomaly"]["auc"]
    assert aucs["autoencoder"] > 0.7
    assert set(aucs) == {"autoencoder", "PCA", "IsolationForest"}
    assert all(value > 0.5 for value in aucs.values())
    _assert_artifacts_valid(root, records["autoencoder"], 6)


def test_vae_beats_independent_pixel_baseline_and_writes_morph(quick_outputs):
    root, records = quick_outputs
    metrics = records["vae"]["metrics"]
    assert math.isfinite(metrics["elbo_nats_per_image"])
    # The ELBO is a lower bound on log p(x): beating an exact independent-pixel likelihood means the
    # VAE captured how pixels co-vary (quick runs: about +9 nats per image).
    assert metrics["elbo_nats_per_image"] > metrics["independent_gaussian_log_likelihood"]
    assert metrics["kl_nats_per_image"] > 1.0  # the latent code is used, not collapsed onto the prior
    assert metrics["morph_labels"][0] != metrics["morph_labels"][1]
    _assert_artifacts_valid(root, records["vae"], 5)
    with Image.open(root / "gan_basics" / "vae" / "vae_morph.gif") as gif:
        assert gif.n_frames >= 10
        first = np.asarray(gif.convert("L"), dtype=float)
        gif.seek(gif.n_frames // 2)
        middle = np.asarray(gif.convert("L"), dtype=float)
    assert np.abs(first - middle).mean() > 1.0  # the morph moves


def test_fgsm_and_pgd_fool_the_classifier_but_noise_does_not(quick_outputs):
    root, records = quick_outputs
    metrics = records["adversarial"]["metrics"]
    index = metrics["epsilons"].index(0.1)
    accuracy = metrics["accuracy"]
    assert metrics["clean_accuracy"] > 0.9
    assert accuracy["fgsm"][index] < accuracy["random_noise"][index] - 0.30
    assert accuracy["pgd"][index] <= accuracy["fgsm"][index] + 0.02  # the iterative attack is at least as strong
    assert accuracy["random_noise"][index] > metrics["clean_accuracy"] - 0.10
    # Accuracy under attack falls as the budget grows.
    assert accuracy["fgsm"][-1] < accuracy["fgsm"][1]
    _assert_artifacts_valid(root, records["adversarial"], 2)


def test_rerun_resumes_from_checkpoint(lab_outputs):
    adversarial.main(["--dry-run"])
    checkpoint = lab_outputs / "gan_basics" / "checkpoints" / "dry_run" / "adversarial_classifier.pt"
    stamp = checkpoint.stat().st_mtime_ns
    first = json.loads((lab_outputs / "gan_basics" / "adversarial" / "run.json").read_text())["metrics"]
    adversarial.main(["--dry-run"])
    second = json.loads((lab_outputs / "gan_basics" / "adversarial" / "run.json").read_text())["metrics"]
    assert checkpoint.stat().st_mtime_ns == stamp  # complete: reused, not retrained
    assert second["clean_accuracy"] == first["clean_accuracy"]


def test_every_script_records_its_claims_and_curves(quick_outputs):
    root, records = quick_outputs
    expected = {"autoencoder": 3, "vae": 1, "adversarial": 1}
    for script, count in expected.items():
        claims = records[script]["claims"]
        assert len(claims) == count, claims
        assert all(claim["reproduced"] is True for claim in claims), claims  # the quick profile shows each
        curves = read_scalars(root / "gan_basics" / script / "scalars.csv")
        losses = [values for name, values in curves.items() if name.endswith("/loss")]
        assert losses and all(values[-1][1] < values[0][1] for values in losses), script  # every loss fell


def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_result(lab_outputs, monkeypatch):
    """Periodic checkpoints (CHECKPOINT_EVERY) with the random generators: crash in epoch 4 of 4,
    rerun, and the classifier equals one trained without the crash."""
    argv = ["--dry-run", "--set", "EPOCHS=4", "--set", "CHECKPOINT_EVERY=2"]
    adversarial.main([*argv, "--set", "RUN_NAME=whole"])
    real_batches, calls = ae_model.batches, {"count": 0}

    def crash_in_epoch_four(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 4:
            raise RuntimeError("simulated crash")
        return real_batches(*args, **kwargs)

    monkeypatch.setattr(ae_model, "batches", crash_in_epoch_four)
    with pytest.raises(RuntimeError, match="simulated crash"):
        adversarial.main([*argv, "--set", "RUN_NAME=cut"])
    checkpoints = lab_outputs / "gan_basics" / "checkpoints"
    assert load_checkpoint(checkpoints / "dry_run-cut" / "adversarial_classifier.pt")["step"] == 2
    monkeypatch.setattr(ae_model, "batches", real_batches)
    adversarial.main([*argv, "--set", "RUN_NAME=cut"])
    whole = load_checkpoint(checkpoints / "dry_run-whole" / "adversarial_classifier.pt")
    resumed = load_checkpoint(checkpoints / "dry_run-cut" / "adversarial_classifier.pt")
    assert resumed["step"] == whole["step"] == 4
    for key, tensor in whole["model"].items():
        torch.testing.assert_close(resumed["model"][key], tensor, rtol=1e-6, atol=1e-7, msg=key)


@pytest.mark.parametrize(
    ("module", "overrides", "message"),
    [
        (autoencoder, ["EXPERIMENTS=reduction,clustering"], "valid: reduction, denoising, anomaly"),
        (autoencoder, ["DATASET=mnist"], "valid: digits, faces"),
        (autoencoder, ["ANOMALY_CLASS=10"], "from 0 to 9"),
        (autoencoder, ["ANOMALY_CLASS=-1"], "from 0 to 9"),
        (autoencoder, ["DATASET=faces", "EXPERIMENTS=anomaly"], "needs labelled images"),
        (autoencoder, ["GAUSSIAN_SIGMAS=(0.1, 1.5)", "EXPERIMENTS=denoising"], "in [0, 1]"),
        (autoencoder, ["DENOISING_LOSS=l1", "EXPERIMENTS=denoising"], "valid: psnr, mse"),
        (autoencoder, ["DENOISING_SHIFT_PROBABILITY=1.5", "EXPERIMENTS=denoising"], "must be in [0, 1]"),
        (vae, ["DATASET=cifar"], "valid: digits, faces"),
        (vae, ["DECODER=bernoulli"], "valid: sigma, gaussian"),
        (vae, ["MORPH_PAIR=(0, 5000)"], "MORPH_PAIR"),
        (adversarial, ["ATTACKS=fgsm,cw"], "valid: fgsm, pgd"),
        (adversarial, ["EPSILONS=(0.1, 1.5)"], "outside [0, 1]"),
        (adversarial, ["EXAMPLE_EPSILON=-0.1"], "outside [0, 1]"),
    ],
)
def test_bad_input_is_a_clear_error(lab_outputs, capsys, module, overrides, message):
    argv = ["--dry-run"]
    for override in overrides:
        argv += ["--set", override]
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_full_profile_meets_its_goals(lab_outputs):
    """The full-profile goals (about 2-10 minutes on 2 cores, by load). The denoiser's Gaussian gain
    at std 0.25 measured 5.32 dB here (seed 0) and 5.39 / 5.31 / 5.35 dB for the denoiser alone over
    seeds 0-2 (see gan_basics/README.md): the goal of 5.0 dB lies 0.31 dB below the lowest of them,
    about 4x the 0.08 dB spread between seeds."""
    records = {}
    for module in (autoencoder, adversarial):
        module.main([])
        name = module.__name__.rsplit(".", 1)[-1]
        records[name] = json.loads((lab_outputs / "gan_basics" / name / "run.json").read_text())["metrics"]
    reduction = records["autoencoder"]["reduction"]
    assert reduction["ae_mse"]["2"] < reduction["pca_mse"]["2"]
    assert reduction["ae_mse"]["4"] < reduction["pca_mse"]["4"]
    assert records["autoencoder"]["denoising"]["salt_and_pepper_gain_db_at_0.15"] >= 5.0
    assert records["autoencoder"]["denoising"]["gaussian_gain_db_at_0.25"] >= 5.0
    aucs = records["autoencoder"]["anomaly"]["auc"]
    assert aucs["autoencoder"] >= 0.85
    assert aucs["autoencoder"] > max(aucs["PCA"], aucs["IsolationForest"])
    adversarial_metrics = records["adversarial"]
    assert adversarial_metrics["accuracy_drop_points_fgsm_at_0.1"] >= 50
    assert adversarial_metrics["accuracy_drop_points_random_noise_at_0.1"] <= 10


def test_checkpoints_hold_typed_settings_that_rebuild_the_model(lab_outputs, capsys):
    """Each model's checkpoint holds its settings dataclass: a reader rebuilds the model from it
    alone (lab.safe_load.settings_from_checkpoint), another model's checkpoint is refused in one
    line naming the settings that do not fit, and a run with another setting is refused, naming the field."""
    checkpoints = lab_outputs / "gan_basics" / "checkpoints" / "dry_run"
    adversarial.main(["--dry-run"])
    vae.main(["--dry-run", "--set", "DECODER=gaussian", "--set", "DECODER_SIGMA=0.2"])
    states = {}
    for name, settings_class, model_class in (
        ("adversarial_classifier", ae_model.ClassifierSettings, ae_model.DigitsClassifier),
        ("vae_digits_gaussian_latent8", ae_model.VAESettings, ae_model.VariationalAutoencoder),
    ):
        path = checkpoints / f"{name}.pt"
        states[name] = state = load_checkpoint(path)
        settings = settings_from_checkpoint(settings_class, state["settings"], path, "gan_basics",
                                            image_shape=tuple, hidden_sizes=tuple)
        assert isinstance(settings.image_shape, tuple) and isinstance(settings.hidden_sizes, tuple)
        model = model_class.from_settings(settings)
        model.load_state_dict(state["model"])  # strict: the settings alone give the right shapes
    assert settings.decoder == "gaussian" and settings.decoder_sigma == 0.2 and settings.learning_rate == vae.LEARNING_RATE
    assert model.fixed_sigma == 0.2  # the fixed Gaussian decoder, rebuilt from the settings alone
    # The classifier's checkpoint read as a VAE's: one clear error, not a TypeError from the dataclass.
    with pytest.raises(LabError, match=r"is not a checkpoint of gan_basics \(unknown settings: num_classes; "
                                       r"missing settings: decoder, decoder_sigma, latent_size\)"):
        settings_from_checkpoint(ae_model.VAESettings, states["adversarial_classifier"]["settings"],
                                 checkpoints / "adversarial_classifier.pt", "gan_basics")
    with pytest.raises(SystemExit) as exit_info:
        adversarial.main(["--dry-run", "--set", "LEARNING_RATE=0.01"])
    assert exit_info.value.code == 2
    assert "learning_rate: checkpoint has 0.001, this run has 0.01" in capsys.readouterr().err


def test_the_denoiser_reads_its_own_recipe():
    """DENOISING_* constants beat the shared ones for the denoiser; ANOMALY_CLASS does not leak in."""
    from lab.constants import collect_constants, settings_from

    cfg = collect_constants(vars(autoencoder))
    settings = settings_from(ae_model.DenoiserSettings, cfg, prefix="DENOISING_", image_shape=(1, 8, 8),
                             latent_size=cfg["DENOISING_LATENT"], anomaly_class=-1)
    assert settings.learning_rate == autoencoder.DENOISING_LEARNING_RATE != autoencoder.LEARNING_RATE
    assert settings.hidden_sizes == autoencoder.DENOISING_HIDDEN_SIZES and settings.batch_size == autoencoder.BATCH_SIZE
    assert settings.epochs == autoencoder.DENOISING_EPOCHS and settings.anomaly_class == -1
