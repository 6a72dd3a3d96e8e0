"""loop.py against the reference loop's formulas (vqgan_clip/reference.py, restated from
nerdyrodent/VQGAN-CLIP generate.py), GumbelVQ, and the users' extensions (story, zoom, batch)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lab import LabError
from tests.test_vqgan_clip_loop import TINY_DDCONFIG, loop_config, write_tiny_models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vqgan_clip.models import load_models

    folder = write_tiny_models(tmp_path_factory.mktemp("tiny_reference"))
    vqgan, clip, _ = load_models(str(folder))
    return folder, vqgan, clip


# -- the reference's formulas ---------------------------------------------------------------------


@pytest.mark.parametrize("shape, size", [((1, 3, 64, 64), (32, 32)), ((2, 3, 100, 77), (32, 32)),
                                         ((1, 3, 48, 48), (48, 48)), ((1, 3, 30, 90), (30, 45)),
                                         ((1, 3, 20, 20), (32, 32))])
def test_resample_is_the_references_lanczos_then_bicubic(shape, size):
    from vqgan_clip import loop, reference

    image = torch.rand(shape, dtype=torch.float64)
    ours, theirs = loop.resample(image, size), reference.resample(image.float(), size).double()
    assert ours.shape == theirs.shape == (shape[0], 3, *size)
    assert torch.allclose(ours.float(), theirs.float(), atol=1e-6), (ours.float() - theirs.float()).abs().max()
    # It is not bilinear: a shrink by 3 differs from torch's antialiased bilinear resize.
    if size[0] < shape[2] // 2:
        bilinear = torch.nn.functional.interpolate(image, size, mode="bilinear", antialias=True)
        assert (ours - bilinear).abs().max() > 1e-3


def test_random_crops_cut_the_same_boxes_as_the_reference_and_resample_them_alike():
    from vqgan_clip import loop, reference

    image = torch.rand(1, 3, 80, 96)
    torch.manual_seed(5)
    ours = loop.random_crops(image, 32, 12, 1.0)
    torch.manual_seed(5)
    theirs = []
    for _ in range(12):  # the reference's MakeCutouts box drawing
        size = int(torch.rand([]) ** 1.0 * (80 - 32) + 32)
        x, y = torch.randint(0, 96 - size + 1, ()), torch.randint(0, 80 - size + 1, ())
        theirs.append(reference.resample(image[:, :, y:y + size, x:x + size], (32, 32)))
    assert torch.allclose(ours, torch.cat(theirs), atol=1e-6)


@pytest.mark.parametrize("weight, stop", [(1.0, -math.inf), (-1.0, -math.inf), (2.0, 0.5), (-1.0, 0.5),
                                          (-1.0, -0.5), (-0.5, -1.2), (1.0, 10.0), (0.7, 0.3)])
def test_prompt_loss_applies_the_sign_then_the_stop_as_the_reference(weight, stop):
    from vqgan_clip import loop, reference

    torch.manual_seed(0)
    embeddings = torch.randn(8, 16, dtype=torch.float64)
    target = torch.randn(1, 16, dtype=torch.float64)
    ours_input = embeddings.clone().requires_grad_(True)
    theirs_input = embeddings.clone().requires_grad_(True)
    ours = loop.prompt_loss(ours_input, target, weight, stop)
    theirs = reference.prompt_loss(theirs_input, target, weight, stop)
    ours.backward()
    theirs.backward()
    assert torch.allclose(ours, theirs, atol=1e-12)
    assert torch.allclose(ours_input.grad, theirs_input.grad, atol=1e-12)
    if weight < 0 and stop > 0:  # "text:-1:0.5": the signed distance is never above 0.5, so no gradient
        assert ours_input.grad.abs().max() == 0


def test_straight_through_quantisation_equals_the_references_one_hot_form():
    from vqgan_clip import loop, reference

    torch.manual_seed(1)
    codebook = torch.randn(50, 6, dtype=torch.float64)
    z = torch.randn(1, 6, 4, 5, dtype=torch.float64)
    ours_z, theirs_z = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours = loop.quantize_straight_through(ours_z, codebook)
    theirs = reference.vector_quantize(theirs_z.movedim(1, 3), codebook).movedim(3, 1)
    assert torch.allclose(ours, theirs, atol=1e-12)
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.equal(ours_z.grad, theirs_z.grad) and torch.equal(ours_z.grad, weights)


@pytest.mark.parametrize("size", [(300, 100), (100, 300), (40, 30), (1000, 1000)])
def test_image_prompts_keep_their_aspect_ratio_as_the_reference(size):
    from vqgan_clip import loop, reference

    picture = Image.new("RGB", size, (200, 10, 10))
    ours = loop.keep_aspect(picture, 64, 48)
    assert ours.size == reference.resize_image(picture, (64, 48)).size
    assert abs(ours.size[0] / ours.size[1] - size[0] / size[1]) < 0.1 * size[0] / size[1]
    assert ours.size[0] * ours.size[1] <= 64 * 48 * 1.05


@pytest.mark.parametrize("method", ["updated", "latest", "original", "ours"])
def test_every_cut_method_gives_differentiable_cutouts_of_clips_size(method):
    from vqgan_clip import loop

    image = torch.rand(1, 3, 48, 40, requires_grad=True)
    cutouts = loop.make_cutouts(image, 32, 6, 1.0, method)
    assert cutouts.shape == (6, 3, 32, 32) and torch.isfinite(cutouts).all()
    cutouts.square().sum().backward()
    assert image.grad.abs().sum() > 0
    with pytest.raises(LabError, match="updated, latest, original, ours"):
        loop.make_cutouts(image, 32, 6, 1.0, "kornia")


def test_augmentations_with_zero_strength_leave_the_cutouts_and_hue_turns_red_to_green():
    from vqgan_clip import loop

    batch = torch.rand(5, 3, 16, 16)
    assert torch.allclose(loop.random_perspective(batch, 1.0, 0.0), batch, atol=1e-5)
    assert torch.allclose(loop.random_affine(batch, 1.0, degrees=0, translate=0), batch, atol=1e-5)
    assert torch.allclose(loop.random_sharpness(batch, 1.0, 0.0), batch)
    assert torch.allclose(loop._hue_shift(batch, torch.zeros(5)), batch, atol=1e-5)
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 0.8
    green = loop._hue_shift(red, torch.tensor([1 / 3]))
    assert torch.allclose(green[:, 1], torch.full((1, 2, 2), 0.8), atol=1e-5) and green[:, [0, 2]].abs().max() < 1e-5


# -- prompts: bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [("a cat:nan", "not a finite number"), ("a cat:1:inf", "not a finite"),
                                          ("text:1:2:3", "more than three fields")])
def test_prompt_weights_must_be_finite_and_at_most_three_fields(bad, message):
    from vqgan_clip.loop import parse_prompts

    with pytest.raises(LabError, match=message):
        parse_prompts(bad)


def test_a_prompt_longer_than_clips_context_is_cut_with_a_notice(tiny, capsys):
    from vqgan_clip.loop import encode_text

    _, _, clip = tiny
    encode_text(clip, " ".join(["word"] * 40), "cpu")
    out = capsys.readouterr().out
    assert "has 40 tokens" in out and "only the first 14 tokens were kept" in out  # tiny CLIP: context 16
    encode_text(clip, "a red circle", "cpu")
    assert capsys.readouterr().out == ""


def test_settings_out_of_range_are_named(tiny):
    from vqgan_clip.loop import generate

    _, vqgan, clip = tiny
    for overrides, message in (({"max_iterations": -5}, "max_iterations=-5 must be -1"), ({"cutn": 0}, "cutn=0"),
                               ({"step_size": float("nan")}, "step_size=nan"), ({"cut_method": "x"}, "cut_method 'x'")):
        with pytest.raises(LabError, match=message):
            generate(loop_config(**overrides), vqgan, clip, progress=False)


# -- GumbelVQ ---------------------------------------------------------------------------------------


def test_gumbel_vq_checkpoint_loads_and_generates(tmp_path, tiny):
    from vqgan_clip.loop import generate
    from vqgan_clip.vqgan import GumbelVQ, build_vqgan, load_vqgan

    folder, _, clip = tiny
    config = {"model": {"target": "taming.models.vqgan.GumbelVQ",
                        "params": {"kl_weight": 1e-8, "embed_dim": 16, "n_embed": 64, "ddconfig": TINY_DDCONFIG,
                                   "temperature_scheduler_config": {"target": "taming.lr_scheduler.X"}}}}
    (tmp_path / "vqgan.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    source = build_vqgan(config)
    source.quantize.embed.weight.data.normal_()
    state = source.state_dict()
    # taming's GumbelVQ keys: a 1x1 conv to the code logits and the code table, no quantize.embedding.
    assert state["quantize.proj.weight"].shape == (64, 16, 1, 1) and state["quantize.embed.weight"].shape == (64, 16)
    assert not any(key.startswith("quantize.embedding") for key in state)
    torch.save({"state_dict": {**state, "loss.logvar": torch.zeros(())}}, tmp_path / "last.ckpt")
    model = load_vqgan(tmp_path / "vqgan.yaml", tmp_path / "last.ckpt")
    assert isinstance(model, GumbelVQ) and torch.equal(model.codebook, state["quantize.embed.weight"])
    picture = torch.rand(1, 3, 32, 32) * 2 - 1
    (first, _, indices), second = model.encode(picture), model.encode(picture)[0]
    assert torch.equal(first, second)  # argmax of the logits, no Gumbel noise
    assert torch.allclose(first, model.quantize.lookup(indices))  # every position is one of the codes
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "s.png")
    started = generate(loop_config(max_iterations=1, cutn=2, initial_image=str(tmp_path / "s.png")), model, clip,
                       progress=False)
    assert started.image.shape == (32, 32, 3)
    result = generate(loop_config(max_iterations=30, cutn=8), model, clip, progress=False)
    assert np.mean(result.total_losses[-5:]) < np.mean(result.total_losses[:5]) - 0.01


def test_legacy_vq_loss_puts_beta_on_the_codebook_term_as_taming_trains():
    from vqgan_clip.vqgan import VectorQuantizer

    quantizer = VectorQuantizer(8, 4, beta=0.25)
    _, terms, _ = quantizer(torch.randn(2, 4, 3, 3))
    assert torch.allclose(terms["total"], terms["commitment"] + 0.25 * terms["codebook"])
    _, terms, _ = VectorQuantizer(8, 4, beta=0.25, legacy=False)(torch.randn(2, 4, 3, 3))
    assert torch.allclose(terms["total"], terms["codebook"] + 0.25 * terms["commitment"])


# -- story mode, zoom, batch --------------------------------------------------------------------------


def test_story_mode_switches_prompts_every_prompt_frequency_iterations(tiny):
    from vqgan_clip.loop import generate

    _, vqgan, clip = tiny
    result = generate(loop_config(prompts="a red circle ^ a blue square:2", prompt_frequency=2, max_iterations=7,
                                  cutn=2), vqgan, clip, progress=False)
    active = {label: [i for i, v in enumerate(values) if not math.isnan(v)] for label, values in result.losses.items()}
    assert active == {"a red circle": [0, 1, 4, 5], "a blue square": [2, 3, 6]}
    with pytest.raises(LabError, match="PROMPT_FREQUENCY"):
        generate(loop_config(prompts="a ^ b"), vqgan, clip, progress=False)


def test_zoom_reencodes_the_zoomed_image(tiny):
    from vqgan_clip import loop

    _, vqgan, clip = tiny
    frames = {}
    plain = loop.generate(loop_config(max_iterations=4, cutn=2), vqgan, clip, progress=False)
    zoomed = loop.generate(loop_config(max_iterations=4, cutn=2, zoom_every=2, zoom_scale=2.0, zoom_shift_x=3,
                                       display_frequency=2), vqgan, clip, progress=False,
                           on_display=lambda i, image: frames.setdefault(i, image))
    assert sorted(frames) == [0, 2, 4] and not np.array_equal(plain.image, zoomed.image)
    picture = Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    assert loop.zoom_image(picture, 1.0, 0, 0).tobytes() == picture.tobytes()
    shifted = np.asarray(loop.zoom_image(picture, 1.0, 3, 0))
    assert np.array_equal(shifted[:, 3:], np.asarray(picture)[:, :-3])  # moved right, wrapped


def test_generate_script_zoom_video_batch_file_contact_sheet_and_claims(lab_outputs, tiny, tmp_path):
    from lab.media import count_video_frames
    from vqgan_clip import claims as vqgan_claims
    from vqgan_clip.generate import main

    folder, _, _ = tiny
    common = ["--set", f"MODEL={folder}", "--set", "WIDTH=32", "--set", "HEIGHT=32", "--set", "CUTN=2",
              "--set", "SEED=3"]
    main(common + ["--set", "MAX_ITERATIONS=6", "--set", "ZOOM_EVERY=2", "--set", "DISPLAY_FREQUENCY=2",
                   "--set", "PROMPTS=a red circle on a blue background"])
    run_dir = lab_outputs / "vqgan_clip" / "a-red-circle-on-a-blue-background"
    assert count_video_frames(run_dir / "progress.mp4") == 4
    record = json.loads((run_dir / "run.json").read_text())
    claims = {c["claim"]: c for c in record["claims"]}
    # One picture's colours are a figure, not a verdict (one trajectory flips with the CPU): one claim.
    assert list(claims) == [vqgan_claims.IMPROVES] and isinstance(claims[vqgan_claims.IMPROVES]["reproduced"], bool)
    assert "loss" in claims[vqgan_claims.IMPROVES]["measured"]
    assert set(record["metrics"]) >= {"pixel_check", "shape_colour_share", "background_colour_share"}
    (tmp_path / "prompts.txt").write_text("# my prompts\na red circle\n\na green star:1 | a ring:-0.5\n")
    main(common + ["--set", "MAX_ITERATIONS=2", "--set", f"PROMPTS_FILE={tmp_path / 'prompts.txt'}"])
    batch = lab_outputs / "vqgan_clip" / "batch-prompts"
    assert (batch / "01-a-red-circle" / "final.png").is_file() and (batch / "02-a-green-star" / "final.png").is_file()
    record = json.loads((batch / "run.json").read_text())
    assert "contact_sheet.png" in {a["path"] for a in record["artifacts"]}
    with Image.open(batch / "contact_sheet.png") as sheet:
        assert sheet.size[0] > sheet.size[1]


def test_a_failed_run_leaves_no_empty_output_folder(lab_outputs, tiny, capsys):
    from vqgan_clip.generate import main

    folder, _, _ = tiny
    for bad in (["--set", "PROMPTS=a cat:nan"], ["--set", "PROMPTS=a cat", "--set", "CUT_METHOD=kornia"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--set", f"MODEL={folder}", *bad])
        assert exit_info.value.code == 2
    assert "updated, latest, original, ours" in capsys.readouterr().err
    assert not (lab_outputs / "vqgan_clip" / "a-cat").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--set", f"MODEL={folder}", "--set", "MAX_ITERATIONS=-5"])
    assert exit_info.value.code == 2
