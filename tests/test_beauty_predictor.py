"""beauty_predictor: masking, locality of the rebuild, tiling at the borders, the losses, bad input, the pipeline.

TensorFlow is imported once in this process; the scripts' main() run in-process (dry-run profile)
so the default suite pays for a single TensorFlow start.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from beauty_predictor.photos import load_photos, random_crops, split_by_photo
from lab import LabError
from tests.conftest import run_module

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
from beauty_predictor import model as bm  # noqa: E402


def random_predictor(seed: int = 0):
    """A predictor whose every layer, the last included, has random weights (so outputs depend on inputs)."""
    keras.utils.set_random_seed(seed)
    predictor = bm.build_predictor(8)
    correction = predictor.get_layer("correction")
    kernel, bias = correction.get_weights()
    correction.set_weights([np.random.default_rng(seed).normal(0, 0.2, kernel.shape).astype(np.float32), bias])
    return predictor


def test_predictor_never_sees_the_centre():
    predictor = random_predictor()
    rng = np.random.default_rng(1)
    crops = rng.random((2, 128, 128, 3), dtype=np.float32)
    changed = crops.copy()
    changed[:, 48:80, 48:80] = rng.random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(predictor(crops).numpy(), predictor(changed).numpy())
    outside = crops.copy()
    outside[:, 40:47, 40:90] = 1.0 - outside[:, 40:47, 40:90]  # the surroundings do matter
    assert np.abs(predictor(outside).numpy() - predictor(crops).numpy()).max() > 1e-4


def test_each_rebuilt_cell_depends_only_on_its_surroundings():
    predictor = random_predictor(2)
    image = np.random.default_rng(3).random((1, 256, 256, 3), dtype=np.float32)
    changed = image.copy()
    changed[0, 200, 200] = 1.0 - changed[0, 200, 200]  # the pixel lies in cell (6, 6)
    diff = np.abs(bm.rebuild(predictor, image).numpy() - bm.rebuild(predictor, changed).numpy())[0]
    per_cell = diff.reshape(8, 32, 8, 32, 3).max(axis=(1, 3, 4))
    for row in range(8):
        for col in range(8):
            # Cell (r, c) sees rows 32r-48 .. 32r+80 minus its own centre.
            sees = (32 * row - 48 <= 200 < 32 * row + 80) and (32 * col - 48 <= 200 < 32 * col + 80)
            own = (row, col) == (6, 6)
            if not sees or own:
                assert per_cell[row, col] == 0, (row, col)
    assert per_cell[5, 5] > 0 and per_cell[7, 7] > 0  # neighbours whose surroundings hold the pixel


def window_model(top: int, left: int):
    """A stand-in predictor returning the 32x32 window of its input at (top, left)."""
    inputs = keras.Input((128, 128, 3))
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t[:, top:top + 32, left:left + 32])(inputs))


def test_rebuild_tiles_cells_in_place_and_reflects_at_borders():
    image = np.random.default_rng(4).random((2, 96, 160, 3), dtype=np.float32)
    # A predictor that returns the (unmasked) centre rebuilds the image exactly: the tiling is right.
    np.testing.assert_allclose(bm.rebuild(window_model(48, 48), image).numpy(), image, atol=1e-6)
    # One returning its top-left corner shows what the border cells see: the reflect-padded image.
    padded = np.pad(image, ((0, 0), (48, 48), (48, 48), (0, 0)), mode="reflect")
    rebuilt = bm.rebuild(window_model(0, 0), image).numpy()
    for row in range(3):
        for col in range(5):
            expected = padded[:, 32 * row:32 * row + 32, 32 * col:32 * col + 32]
            np.testing.assert_allclose(rebuilt[:, 32 * row:32 * row + 32, 32 * col:32 * col + 32], expected, atol=1e-6)
    # The surroundings tensor has one 128x128 window per cell.
    assert bm.surroundings(tf.constant(image)).shape == (2 * 3 * 5, 128, 128, 3)


def test_rebuild_is_differentiable_and_matches_the_per_cell_loop():
    predictor = random_predictor(5)
    image = np.random.default_rng(6).random((1, 64, 96, 3), dtype=np.float32)
    batched = bm.rebuild(predictor, image).numpy()[0]
    np.testing.assert_allclose(batched, bm.rebuild_per_cell(predictor, image[0]), atol=1e-5)
    y = tf.Variable(image)
    with tf.GradientTape() as tape:
        loss = bm.mae(y, bm.rebuild(predictor, y))
    gradient = tape.gradient(loss, y).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0


def test_rebuild_refuses_sizes_that_do_not_tile():
    with pytest.raises(LabError, match="multiples of 32"):
        bm.rebuild(random_predictor(), np.zeros((1, 100, 128, 3), np.float32))


def test_loss_variants_on_small_tensors():
    x = tf.constant([[0.0, 0.5], [1.0, 0.25]])
    y = tf.constant([[0.1, 0.5], [0.8, 0.25]])
    z = tf.constant([[0.1, 0.9], [0.8, 0.05]])
    loss, fidelity, predictability = bm.article_loss(x, y, z, 0.5, 0.5)
    assert float(fidelity) == pytest.approx((0.1 + 0.2) / 4)
    assert float(predictability) == pytest.approx((0.4 + 0.2) / 4)
    assert float(loss) == pytest.approx(0.5 * 0.075 + 0.5 * 0.15)
    weighted, _, _ = bm.article_loss(x, y, z, 0.2, 0.8)
    assert float(weighted) == pytest.approx(0.2 * 0.075 + 0.8 * 0.15)
    z_bad = tf.constant([[0.5, 0.1], [0.2, 0.65]])
    ratio, bad, good = bm.contrast_loss(y, z_bad, z)
    assert float(bad) == pytest.approx((0.4 + 0.4 + 0.6 + 0.4) / 4)
    assert float(ratio) == pytest.approx(float(good) / float(bad), rel=1e-5)
    # Lowering the loss means a larger MAE(Y,Z_bad)/MAE(Y,Z_good), the article's objective.
    worse_bad = tf.constant([[0.9, 0.0], [0.0, 1.0]])
    assert float(bm.contrast_loss(y, worse_bad, z)[0]) < float(ratio)


def test_untrained_improvers_are_the_identity():
    x = np.random.default_rng(7).random((1, 64, 64, 3), dtype=np.float32)
    for improver in (bm.build_improver(8, 2), bm.build_deep_improver(8)):
        np.testing.assert_allclose(improver(x).numpy(), x, atol=1e-6)


# ----------------------------------------------------------------------------- photos and bad input


def save(path, mode, size, colour):
    Image.new(mode, size, colour).save(path)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(LabError, match="no usable photo.*found 0 entries"):
        load_photos(tmp_path)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(LabError, match="is not a folder"):
        load_photos(tmp_path / "nowhere")


def test_non_image_files_are_listed(tmp_path):
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(LabError) as error:
        load_photos(tmp_path)
    assert "notes.txt" in str(error.value) and "broken.jpg" in str(error.value)


def test_small_photos_are_skipped_with_a_notice_and_modes_become_rgb(tmp_path, capsys):
    save(tmp_path / "tiny.png", "RGB", (100, 300), (10, 20, 30))
    save(tmp_path / "gray.png", "L", (160, 140), 128)
    save(tmp_path / "alpha.png", "RGBA", (130, 130), (255, 0, 0, 0))  # fully transparent: white
    photos = load_photos(tmp_path)
    assert "tiny.png (100x300)" in capsys.readouterr().out
    by_name = {p.name: p.pixels for p in photos}
    assert set(by_name) == {"gray", "alpha"}
    assert by_name["gray"].shape == (140, 160, 3) and np.allclose(by_name["gray"], 128 / 255)
    assert np.allclose(by_name["alpha"], 1.0)


def test_only_small_photos_is_an_error(tmp_path):
    save(tmp_path / "tiny.png", "RGB", (64, 64), (0, 0, 0))
    with pytest.raises(LabError, match="smaller than 128 px"):
        load_photos(tmp_path)


def test_split_is_by_photo_and_crops_stay_inside(tmp_path):
    for i in range(6):
        save(tmp_path / f"p{i}.png", "RGB", (200 + 10 * i, 150), (40 * i, 0, 0))
    photos = load_photos(tmp_path)
    train, held = split_by_photo(photos, ["p2"])
    assert [p.name for p in held] == ["p2"] and "p2" not in [p.name for p in train]
    train, held = split_by_photo(photos, ["absent"])  # your own photos: every 5th is held out
    assert [p.name for p in held] == ["p4"]
    crops = random_crops(train, 10, 128, np.random.default_rng(0))
    assert crops.shape == (10, 128, 128, 3)
    with pytest.raises(LabError, match="at least 2 photos"):
        split_by_photo(photos[:1], [])


def test_improver_without_a_predictor_says_what_to_run(lab_outputs, capsys):
    from beauty_predictor import train_improver

    with pytest.raises(SystemExit) as exit_info:
        train_improver.main(["--dry-run"])
    assert exit_info.value.code == 2
    assert "run python -m beauty_predictor.train_predictor first" in capsys.readouterr().err


def test_bad_variant_is_an_error(lab_outputs, capsys):
    from beauty_predictor import train_improver

    with pytest.raises(SystemExit):
        train_improver.main(["--dry-run", "--set", "VARIANT=fancy"])
    assert "VARIANT 'fancy' is not one of" in capsys.readouterr().err


def test_dry_run_pipeline_writes_every_figure(lab_outputs, monkeypatch, tmp_path):
    """Every step of pipeline.SCRIPTS, in-process with --dry-run, on a small copy of the bundled photos."""
    import importlib

    from beauty_predictor.photos import export_bundled_photos
    from beauty_predictor.pipeline import SCRIPTS

    photos = tmp_path / "photos"
    export_bundled_photos(photos)
    for path in photos.iterdir():  # four photos are plenty for a dry run (chelsea and coffee held out)
        if path.stem not in ("astronaut", "chelsea", "coffee", "coins"):
            path.unlink()
    for module, *extra in SCRIPTS:
        args = ["--dry-run", *extra]
        if module != "export_photos":
            args += ["--set", f"PHOTOS_DIR={photos}"] if module != "bench" else []
        else:
            args += ["--set", f"TARGET_DIR={tmp_path / 'exported'}"]
        importlib.import_module(f"beauty_predictor.{module}").main(args)
    root = lab_outputs / "beauty_predictor"
    for figure in ("train_predictor/examples.png", "train_predictor/loss.png", "improver_article/panels.png",
                   "improver_contrast/loss_terms.png", "improver_deep/panels.png", "sweep/tradeoff.png",
                   "recursive/strip.png", "recursive/repeated.png", "recursive/repeated.gif"):
        with Image.open(root / figure) as image:
            assert image.size[0] > 100, figure
    assert (root / "checkpoints/dry_run/center_predictor.keras").is_file()
    assert (root / "checkpoints/dry_run/center_predictor_bad.keras").is_file()
    metrics = json.loads((root / "improver_article/run.json").read_text())["metrics"]
    assert {"mae_x_y", "mae_x_zx", "mae_y_zy", "predictability_gain"} <= set(metrics)
    bench = json.loads((root / "bench/run.json").read_text())["metrics"]
    assert bench["speedup"] > 1 and bench["batched_vs_per_cell_max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_quick_pipeline_end_to_end(lab_outputs):
    result = run_module("lab.pipeline", "beauty_predictor", env_root=lab_outputs, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    root = lab_outputs / "beauty_predictor"
    predictor = json.loads((root / "train_predictor/run.json").read_text())["metrics"]
    assert predictor["held_out_mae"] < predictor["border_mean_mae"]
    bench = json.loads((root / "bench/run.json").read_text())["metrics"]
    assert bench["speedup"] >= 10
    for name in ("improver_article", "improver_contrast", "improver_deep", "sweep", "recursive"):
        assert json.loads((root / name / "run.json").read_text())["status"] == "complete"
