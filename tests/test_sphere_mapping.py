"""sphere_mapping: the network, the metrics on known point sets, training, figures, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lab import LabError
from sphere_mapping.metrics import (
    UNIFORM_SPHERE_UNIFORMITY,
    coverage,
    fibonacci_sphere,
    largest_hole_deg,
    uniformity,
)
from sphere_mapping.model import SquareToSphere, Trainer, TrainSettings, square_grid


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The net is tiny: one thread is fastest, and on a loaded 2-core machine far more than that
    (two OpenMP threads spin-wait for each other). The scripts do the same (TORCH_THREADS = 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_outputs_are_unit_vectors_in_both_modes():
    torch.manual_seed(0)
    model = SquareToSphere()
    points = torch.rand(500, 2) - 0.5
    for mode in (model.train, model.eval):
        mode()
        norms = model(points).norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_dropout_is_on_in_training_and_off_in_evaluation():
    torch.manual_seed(0)
    model = SquareToSphere()
    points = torch.rand(200, 2) - 0.5
    model.train()
    assert not torch.allclose(model(points), model(points)), "training passes should differ (dropout)"
    model.eval()
    assert torch.equal(model(points), model(points)), "evaluation must be deterministic (no dropout)"
    trainer = Trainer(TrainSettings(steps=1))
    first, second = trainer.evaluate(points), trainer.evaluate(points)
    assert torch.equal(first, second) and trainer.model.training  # evaluate() restores training mode


def test_article_architecture():
    model = SquareToSphere()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(4, 2), (4,), (12, 4), (12,), (6, 12), (6,), (3, 6), (3,)]
    assert model.dropout == 0.2


def test_fibonacci_lattice_is_covered_with_small_holes():
    lattice = fibonacci_sphere(2000)
    assert coverage(lattice) == 1.0
    assert largest_hole_deg(lattice) < 5.0


def test_one_hemisphere_covers_half_with_a_90_degree_hole():
    dense = fibonacci_sphere(40_000)
    northern = dense[dense[:, 2] >= 0]
    assert 0.5 <= coverage(northern) <= 0.56  # cells within 5 degrees south of the equator count
    assert largest_hole_deg(northern) == pytest.approx(90.0, abs=1.0)


def test_uniformity_of_a_uniform_sample_and_of_clusters():
    sample = np.random.default_rng(0).normal(size=(20_000, 3))
    assert UNIFORM_SPHERE_UNIFORMITY == pytest.approx(-2.0798, abs=1e-3)
    assert uniformity(sample) == pytest.approx(-2.08, abs=0.02)
    clustered = np.tile([[0.0, 0.0, 1.0]], (100, 1)) + np.random.default_rng(0).normal(0, 0.01, (100, 3))
    assert uniformity(clustered) > -0.01  # a collapsed map is far from uniform
    assert largest_hole_deg(clustered) > 170.0


def test_a_short_training_run_lowers_the_loss():
    trainer = Trainer(TrainSettings(steps=300), generator_seed=0)
    for _ in range(300):
        trainer.train_step()
    losses = trainer.losses.numpy()
    assert np.median(losses[-50:]) < 0.01 * np.median(losses[:5])
    parameters = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    assert parameters.abs().max() <= 2.0  # the article's clamp


def test_square_grid_spans_the_square():
    grid = square_grid(5)
    assert grid.shape == (25, 2) and grid.min() == -0.5 and grid.max() == 0.5
    assert torch.equal(grid[1], torch.tensor([-0.25, -0.5]))  # x varies fastest, as the article's meshgrid


def test_train_dry_run_writes_figures_and_metrics(lab_outputs, tmp_path, capsys):
    from PIL import Image

    from sphere_mapping import train

    picture = tmp_path / "gray.png"
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) % 256).astype(np.uint8), mode="L").save(picture)
    train.main(["--dry-run", "--fresh", "--set", f"PICTURE={picture}"])
    assert "converted to RGB" in capsys.readouterr().out
    folder = lab_outputs / "sphere_mapping" / "train"
    record = json.loads((folder / "run.json").read_text())
    for name in ("coverage", "uniformity", "largest_hole_deg"):
        assert isinstance(record["metrics"][name], float)
    assert record["metrics"]["max_unit_norm_error"] < 1e-5
    for artifact in record["artifacts"]:
        assert (folder / artifact["path"]).stat().st_size > 0
    names = {a["path"] for a in record["artifacts"]}
    assert {"loss.png", "sphere.png", "picture_sphere.png", "forming.gif", "sphere.html"} <= names
    page = (folder / "sphere.html").read_text()
    assert 'src="plotly.min.js"' in page and "cdn.plot.ly" not in page  # works offline
    assert (folder / "plotly.min.js").stat().st_size > 1_000_000
    with Image.open(folder / "forming.gif") as gif:
        assert gif.n_frames >= 3


def test_rgba_picture_is_converted(tmp_path):
    from PIL import Image

    from sphere_mapping.figures import load_picture

    path = tmp_path / "rgba.png"
    Image.new("RGBA", (30, 20), (255, 0, 0, 128)).save(path)
    picture, note = load_picture(str(path), 10)
    assert picture.shape == (10, 10, 3) and "converted to RGB" in note
    assert np.allclose(picture[..., 0], 1.0) and np.allclose(picture[..., 1:], 0.0)


def test_missing_or_broken_picture_is_a_clear_error(tmp_path):
    from sphere_mapping.figures import load_picture

    with pytest.raises(LabError, match="neither an existing file"):
        load_picture(str(tmp_path / "nowhere.jpg"), 10)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(LabError, match="not an image"):
        load_picture(str(broken), 10)


def test_bad_picture_exits_with_one_line(lab_outputs, tmp_path, capsys):
    from sphere_mapping import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(["--dry-run", "--set", f"PICTURE={tmp_path / 'missing.png'}"])
    assert exit_info.value.code == 2
    assert "error: PICTURE" in capsys.readouterr().err


def test_unknown_variant_lists_the_valid_ones(lab_outputs, capsys):
    from sphere_mapping import experiments, train
    from sphere_mapping.variants import settings_for

    with pytest.raises(LabError, match="valid variants: article, uniformity, uniformity_cover, wide_cover"):
        settings_for("sphere_please")
    for main, name in ((experiments.main, "VARIANTS=['article', 'nope']"), (train.main, "VARIANT=nope")):
        with pytest.raises(SystemExit) as exit_info:
            main(["--dry-run", "--set", name])
        assert exit_info.value.code == 2
        assert "unknown variant 'nope'; valid variants: article" in capsys.readouterr().err


def test_experiments_dry_run_writes_the_table(lab_outputs):
    from sphere_mapping import experiments

    summary = experiments.main(["--dry-run", "--set", "VARIANTS=['article', 'uniformity']"])
    assert [row["variant"] for row in summary] == ["article", "uniformity"]
    folder = lab_outputs / "sphere_mapping" / "experiments"
    table = (folder / "results.md").read_text()
    assert "| article |" in table and "| uniformity |" in table
    assert (folder / "metrics_by_variant.png").stat().st_size > 10_000
    record = json.loads((folder / "run.json").read_text())
    assert 0.0 <= record["metrics"]["per_variant"]["article"]["coverage_median"] <= 1.0
