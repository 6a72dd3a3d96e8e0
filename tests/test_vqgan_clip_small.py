"""vqgan_clip (2/2): the shapes world, the small CLIP and VQGAN trainers, and the shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab import LabError
from lab.paths import REPO_ROOT
from tests.conftest import run_module
from vqgan_clip import shapes_world as world

SHIPPED = REPO_ROOT / "data" / "vqgan_clip_small"


def test_world_is_deterministic_and_captions_match_pictures():
    first, second = world.make_scenes("train", 0, 300), world.make_scenes("train", 0, 300)
    assert first == second
    assert np.array_equal(world.render_scenes(first[:50]), world.render_scenes(second[:50]))
    assert world.make_scenes("test", 0, 50) != first[:50]  # another split, other scenes
    images = world.render_scenes(first)
    checked = 0
    for scene, image in zip(first, images, strict=True):
        caption = scene["caption"]
        for shape in scene["shapes"]:
            assert f"{shape['colour']} {shape['shape']}" in caption
        if len(scene["shapes"]) == 1:
            # The picture itself says the same: the shape's and the background's colours are its two commonest.
            shares = world.palette_shares(image)
            top_two = set(sorted(shares, key=shares.get, reverse=True)[:2])
            assert top_two == {scene["shapes"][0]["colour"], scene["background"]}, caption
            assert shares[scene["background"]] > shares[scene["shapes"][0]["colour"]]
            checked += 1
    assert checked > 150


def test_positions_and_held_out_pairs():
    left = world.render_scene(world.single_shape_scene("red", "circle", "blue", position="left"))
    right = world.render_scene(world.single_shape_scene("red", "circle", "blue", position="right"))
    red = np.array(world.COLOURS["red"])
    red_left = (np.abs(left.astype(int) - red).sum(-1) < 30)
    red_right = (np.abs(right.astype(int) - red).sum(-1) < 30)
    assert red_left[:, :32].sum() > 10 * red_left[:, 32:].sum()
    assert red_right[:, 32:].sum() > 10 * red_right[:, :32].sum()
    train_pairs = {(s["colour"], s["shape"]) for scene in world.make_scenes("train", 0, 3000) for s in scene["shapes"]}
    test_pairs = {(s["colour"], s["shape"]) for scene in world.make_scenes("test", 0, 3000) for s in scene["shapes"]}
    assert not train_pairs & set(world.HELD_OUT_PAIRS)
    assert set(world.HELD_OUT_PAIRS) <= test_pairs


def test_world_bad_input_is_a_lab_error():
    with pytest.raises(LabError, match="unknown split"):
        world.make_scene("training", 0)
    with pytest.raises(LabError, match="unknown colour 'teal'"):
        world.single_shape_scene("teal", "circle", "blue")


def test_shape_twins_differ_in_one_shape_and_never_show_a_held_out_pair():
    from vqgan_clip import train_clip

    scenes = world.make_scenes("train", 0, 60)
    twins = train_clip.shape_twins(scenes, seed=0)
    originals = world.render_scenes(scenes)
    rng = np.random.default_rng(0)
    for index, scene in enumerate(scenes):
        swapped = [train_clip.swap_one_shape(scene, slot, 4, rng) for slot in range(len(scene["shapes"]))]
        for slot, copies in enumerate(swapped):
            for copy in copies:
                changed = [k for k, (a, b) in enumerate(zip(scene["shapes"], copy["shapes"], strict=True)) if a != b]
                assert changed == [slot] and copy["shapes"][slot]["shape"] != scene["shapes"][slot]["shape"]
                assert copy["background"] == scene["background"]
                assert all((s["colour"], s["shape"]) not in world.HELD_OUT_PAIRS for s in copy["shapes"])
        changed_pixels = (np.abs(twins[index].astype(int) - originals[index]).sum(-1) > 30).sum()
        assert changed_pixels >= 20  # the twin looks different (a small shape covers ~250 pixels)


def test_tiny_clip_retrain_beats_chance(lab_outputs):
    from vqgan_clip import train_clip

    # The ViT tower without hard negatives: the cheapest configuration, so the check stays within a minute.
    metrics = train_clip.main(["--quick", "--set", "STEPS=40", "--set", "BATCH_SIZE=64", "--set", "TRAIN_SCENES=800",
                               "--set", "EVAL_SCENES=100", "--set", "WARMUP_STEPS=10", "--set", "EVAL_UNTRAINED=false",
                               "--set", "VISION_TOWER=vit", "--set", "VISION_WIDTH=64", "--set", "SHAPE_NEGATIVES=0",
                               "--set", "SHAPE_TWINS=false"])
    # Chance: 1 % for top-1 among 100, 1/7 for the colour of a shape on a known background.
    assert metrics["text_to_image_top1_of_100"] > 0.04
    assert metrics["colour_accuracy"] > 0.35
    assert metrics["final_loss"] < 0.8 * np.log(64)  # the loss of a batch of 64 at chance is log(64)
    assert (lab_outputs / "vqgan_clip" / "train_clip" / "clip_loss.png").is_file()


def test_tiny_vqgan_retrain_beats_untrained(lab_outputs):
    from vqgan_clip import train_vqgan

    metrics = train_vqgan.main(["--quick", "--set", "STEPS=80", "--set", "BATCH_SIZE=8", "--set", "TRAIN_SCENES=400",
                                "--set", "EVAL_SCENES=16", "--set", "LEARNING_RATE=2e-3"])
    assert metrics["held_out_psnr_db"] > metrics["untrained_held_out_psnr_db"] + 1.0
    assert metrics["codebook_usage"] >= 0.5
    assert (lab_outputs / "vqgan_clip" / "train_vqgan" / "reconstructions.png").is_file()


def test_trainers_refuse_bad_settings(lab_outputs, capsys):
    from vqgan_clip import evaluate, train_clip, train_vqgan

    with pytest.raises(SystemExit) as exit_info:
        train_clip.main(["--dry-run", "--set", "BATCH_SIZE=512", "--set", "TRAIN_SCENES=100"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        train_clip.main(["--dry-run", "--set", "PATCH_SIZE=7"])
    assert exit_info.value.code == 2
    for overrides, message in ((["VISION_TOWER=cnn"], "is not one of 'vit', 'resnet'"),
                               (["CHECKPOINT_EVERY=0"], "CHECKPOINT_EVERY=0 is out of range"),
                               (["VISION_TOWER=resnet", "RESNET_LAYERS=(1, 1, 1)"], "four block counts")):
        argv = ["--dry-run"] + [item for override in overrides for item in ("--set", override)]
        with pytest.raises(SystemExit) as exit_info:
            train_clip.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train_vqgan.main(["--dry-run", "--set", "CH_MULT=[1, 2, 2]"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--dry-run", "--set", "MAX_ITERATIONS=0"])
    assert exit_info.value.code == 2
    with pytest.raises(LabError, match="PROMPT_COUNT"):
        evaluate.evaluation_prompts(0)


def test_evaluation_prompts_cover_the_world():
    from vqgan_clip import evaluate, evaluate_cell

    items = evaluate.evaluation_prompts(20)
    assert {i["colour"] for i in items} == set(world.COLOUR_NAMES)
    assert {i["shape"] for i in items} == set(world.SHAPES)
    assert all(i["colour"] != i["background"] for i in items)
    assert any(i["held_out_pair"] for i in items)
    contrasts = evaluate_cell.contrasting_captions(items[0])
    assert items[0]["prompt"] not in contrasts and len(contrasts) == len(set(contrasts)) == 6 + 4 + 6


@pytest.mark.skipif(not (SHIPPED / "vqgan.pt").is_file(), reason="the small models are not shipped yet")
def test_shipped_models_fit_budget_and_raise_prompt_similarity_within_30_iterations():
    import torch

    from vqgan_clip import evaluate, evaluate_cell, loop
    from vqgan_clip.models import load_models

    total_mb = sum(p.stat().st_size for p in SHIPPED.iterdir() if p.is_file()) / 1e6
    assert total_mb <= 20
    torch.set_num_threads(1)
    vqgan, clip, _ = load_models("small")
    item = evaluate.evaluation_prompts(1)[0]
    frames = {}
    settings = loop.LoopSettings(prompts=item["prompt"], width=64, height=64, max_iterations=30, step_size=0.1,
                                 cutn=8, cut_pow=1.0, cut_method="updated", init_weight=0.0, seed=0,
                                 display_frequency=100)
    result = loop.generate(settings, vqgan, clip, progress=False,
                           on_display=lambda i, image: frames.setdefault(i, image))
    similarity = evaluate_cell.clip_similarities(clip, [frames[0], result.image], [item["prompt"]], "cpu")
    assert similarity[1, 0] > similarity[0, 0] + 0.05


@pytest.mark.slow
def test_quick_pipeline_end_to_end(lab_outputs):
    completed = run_module("lab.pipeline", "vqgan_clip", env_root=lab_outputs, timeout=900)
    assert completed.returncode == 0, completed.stderr[-2000:]
    record = json.loads((lab_outputs / "vqgan_clip" / "evaluate" / "run.json").read_text())
    assert record["metrics"]["prompts"] == 20
    assert record["metrics"]["mean_similarity_rise"] > 0
    assert (lab_outputs / "vqgan_clip" / "evaluate" / "evaluation_grid.png").is_file()


@pytest.mark.parametrize("module_name, schedule, checkpoint", [("train_vqgan", "cosine_factor", "vqgan.pt"),
                                                               ("train_clip", "learning_rate", "clip.pt")])
def test_a_trainer_killed_mid_run_resumes_to_the_same_weights(lab_outputs, monkeypatch, module_name, schedule,
                                                               checkpoint):
    import importlib

    import torch

    module = importlib.import_module(f"vqgan_clip.{module_name}")
    args = ["--dry-run", "--set", "STEPS=6", "--set", "CHECKPOINT_EVERY=3"]
    if module_name == "train_clip":
        args += ["--set", "EVAL_UNTRAINED=false"]
    module.main(args + ["--set", "RUN_NAME=whole"])
    original = getattr(module, schedule)

    def dies_at_step_4(step, *rest, **kwargs):
        if step == 4:
            raise RuntimeError("killed")
        return original(step, *rest, **kwargs)

    monkeypatch.setattr(module, schedule, dies_at_step_4)
    with pytest.raises(RuntimeError, match="killed"):
        module.main(args + ["--set", "RUN_NAME=broken"])
    monkeypatch.setattr(module, schedule, original)
    module.main(args + ["--set", "RUN_NAME=broken"])  # resumes at step 3
    folder = lab_outputs / "vqgan_clip" / "checkpoints"
    whole = torch.load(folder / "dry_run-whole" / checkpoint, weights_only=True)
    resumed = torch.load(folder / "dry_run-broken" / checkpoint, weights_only=True)
    assert whole["step"] == resumed["step"] == 6
    for key, value in whole["model"].items():
        assert torch.allclose(value.float(), resumed["model"][key].float(), atol=1e-6), key
    assert np.allclose(whole["losses"], resumed["losses"], atol=1e-6)


def test_a_share_is_judged_against_chance_by_its_whole_interval():
    from vqgan_clip import evaluate

    chance = 1 / 17  # the prompt among its 16 one-word-changed captions
    low, high, above = evaluate.above_chance(14, 20, chance)  # the quick profile's 70 %
    assert above and 0.45 < low < 0.7 < high < 0.9
    assert evaluate.above_chance(16, 20, chance)[2]
    # Two hits in 20 is within reach of chance (interval reaches below 1/17): not a verdict for following prompts.
    assert not evaluate.above_chance(2, 20, chance)[2]
    assert not evaluate.above_chance(0, 20, chance)[2]
