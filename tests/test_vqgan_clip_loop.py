"""The VQGAN+CLIP loop (vqgan_clip/vqgan.py, clip_model.py, loop.py, generate.py) on tiny random models.

The tiny models are built through the same code paths as the real ones: a taming-layout VQGAN
from a model.yaml written here, and an open_clip model from a JSON config plus a state_dict file.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lab import LabError
from tests.conftest import run_module

TINY_DDCONFIG = {"double_z": False, "z_channels": 16, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
                 "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16], "dropout": 0.0}
TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def write_tiny_models(folder, seed=0):
    """The four files of MODEL=<folder>: vqgan.yaml (taming layout), vqgan.pt, clip_config.json, clip.pt."""
    from vqgan_clip.clip_model import load_clip
    from vqgan_clip.vqgan import VQModel

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": {"target": "taming.models.vqgan.VQModel",
                        "params": {"embed_dim": 8, "n_embed": 64, "ddconfig": TINY_DDCONFIG}}}
    (folder / "vqgan.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(seed)
    vqgan = VQModel.from_config(config)
    # Spread the codebook so that random tokens decode to varied images.
    vqgan.quantize.embedding.weight.data.normal_()
    torch.save(vqgan.state_dict(), folder / "vqgan.pt")
    (folder / "clip_config.json").write_text(json.dumps(TINY_CLIP))
    clip_model, *_ = load_clip(folder / "clip_config.json", None)
    torch.save(clip_model.state_dict(), folder / "clip.pt")
    return folder


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny_models"))


def loop_config(**overrides):
    from vqgan_clip.loop import LoopSettings

    values = {"prompts": "a red circle on a blue background", "width": 32, "height": 32, "max_iterations": 30,
              "step_size": 0.1, "cutn": 16, "cut_pow": 1.0, "cut_method": "updated", "init_weight": 0.0, "seed": 0,
              "display_frequency": 10}
    values.update(overrides)
    return LoopSettings(**values)


@pytest.fixture(scope="module")
def loaded(tiny_models):
    from vqgan_clip.models import load_models

    vqgan, clip, _files = load_models(str(tiny_models))
    return vqgan, clip


# -- prompts, sizes, gradients: fast unit tests ---------------------------------------------------


def test_prompt_parsing_weights_stops_and_urls():
    from vqgan_clip.loop import Prompt, parse_prompts

    parsed = parse_prompts("a red circle:1 | a square:-0.5 | sky:2:0.3 |  plain text  ")
    assert parsed == [Prompt("a red circle", 1.0), Prompt("a square", -0.5), Prompt("sky", 2.0, 0.3),
                      Prompt("plain text", 1.0, -math.inf)]
    assert parse_prompts("https://example.com/cat.png:0.5") == [Prompt("https://example.com/cat.png", 0.5)]
    assert parse_prompts("http://example.com/a.jpg") == [Prompt("http://example.com/a.jpg", 1.0)]
    assert parse_prompts("") == []


@pytest.mark.parametrize("bad", ["a red circle:heavy", "a:1:x", ":2"])
def test_prompt_with_unparsable_weight_is_a_clear_error(bad):
    from vqgan_clip.loop import parse_prompts

    with pytest.raises(LabError, match="weight|no text"):
        parse_prompts(bad)


def test_size_rounds_down_to_the_downsampling_factor(capsys):
    from vqgan_clip.loop import round_size

    assert round_size(480, 300, 16) == (480, 288)
    assert "rounded down to 480x288" in capsys.readouterr().out
    assert round_size(64, 64, 16) == (64, 64)
    with pytest.raises(LabError, match="smaller than one VQGAN token"):
        round_size(15, 64, 16)


def test_clamp_with_grad_lets_gradient_pull_values_back_into_range():
    from vqgan_clip.loop import clamp_with_grad

    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    clamp_with_grad(x, 0.0, 1.0).sum().backward()
    # Descent on the sum wants every value lower: allowed at 0.5 and 1.5 (towards range), not at -0.5.
    assert x.grad.tolist() == [0.0, 1.0, 1.0]


# -- loading: taming key names, strict matching ---------------------------------------------------


def test_taming_state_dict_with_loss_entries_loads_strictly(tmp_path, tiny_models):
    from vqgan_clip.vqgan import VQModel, load_vqgan

    config = yaml.safe_load((tiny_models / "vqgan.yaml").read_text())
    source = VQModel.from_config(config)
    keys = set(source.state_dict())
    for prefix in ("encoder.", "decoder.", "quantize.embedding.weight", "quant_conv.", "post_quant_conv."):
        assert any(key.startswith(prefix) for key in keys), prefix
    assert "encoder.down.1.attn.0.q.weight" in keys and "decoder.up.1.attn.0.proj_out.weight" in keys
    state = dict(source.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.zeros(3)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(3)
    torch.save({"state_dict": state, "global_step": 7, "epoch": 1}, tmp_path / "last.ckpt")
    loaded = load_vqgan(tiny_models / "vqgan.yaml", tmp_path / "last.ckpt")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    del state["decoder.conv_out.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(LabError, match=r"missing keys: decoder\.conv_out\.bias.*unexpected keys: decoder\.extra\.weight"):
        load_vqgan(tiny_models / "vqgan.yaml", tmp_path / "bad.ckpt")


def test_official_f16_architecture_has_the_published_size():
    from vqgan_clip.vqgan import VQModel

    ddconfig = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}
    with torch.device("meta"):
        model = VQModel(256, 16384, ddconfig)
    assert model.downsampling_factor == 16
    # 343 tensors; about 72 M parameters besides the 16384x256 codebook.
    assert len(model.state_dict()) == 343
    total = sum(p.numel() for p in model.parameters())
    assert 71e6 < total - 16384 * 256 < 73e6


def test_missing_files_name_what_to_get_and_never_download(tmp_path, monkeypatch):
    import vqgan_clip.models as models
    from vqgan_clip.vqgan import load_vqgan

    monkeypatch.setattr(models, "data_root", lambda: tmp_path)
    with pytest.raises(LabError, match=r"vqgan_imagenet_f16_16384\.yaml.*vqgan_clip.download vqgan_imagenet_f16_16384"):
        models.resolve_model_files("vqgan_imagenet_f16_16384", "ViT-B-32-quickgelu", str(tmp_path / "ViT.pt"))
    with pytest.raises(LabError, match="vqgan.yaml, vqgan.pt, clip_config.json, clip.pt"):
        models.resolve_model_files(str(tmp_path), "", "")
    with pytest.raises(LabError, match="not found.*CompVis"):
        load_vqgan(tmp_path / "model.yaml", tmp_path / "last.ckpt")


def test_clip_weights_that_do_not_match_list_the_keys(tmp_path, tiny_models):
    from vqgan_clip.clip_model import load_clip

    state = torch.load(tiny_models / "clip.pt", weights_only=True)
    state.pop("ln_final.bias")
    torch.save(state, tmp_path / "clip.pt")
    with pytest.raises(LabError, match=r"missing keys: ln_final\.bias"):
        load_clip(tiny_models / "clip_config.json", tmp_path / "clip.pt")
    # Normalisation constants given beside the model config are the ones returned.
    (tmp_path / "clip_config.json").write_text(json.dumps({**TINY_CLIP, "preprocess_cfg": {"mean": [0.5] * 3,
                                                                                          "std": [0.25] * 3}}))
    _model, _tokenizer, mean, std = load_clip(tmp_path / "clip_config.json", tiny_models / "clip.pt")
    assert mean == (0.5, 0.5, 0.5) and std == (0.25, 0.25, 0.25)
    with pytest.raises(LabError, match="not an open_clip model name"):
        load_clip("ViT-Q-99", None)
    with pytest.raises(LabError, match="CLIP weights .* not found"):
        load_clip(tiny_models / "clip_config.json", tmp_path / "none.pt")


# -- the loop ------------------------------------------------------------------------------------


def test_summed_prompt_loss_falls_over_30_iterations(loaded):
    from vqgan_clip.loop import generate

    vqgan, clip = loaded
    result = generate(loop_config(cutn=8), vqgan, clip, progress=False)
    assert result.iterations == 30 and len(result.total_losses) == 30
    first, last = np.mean(result.total_losses[:5]), np.mean(result.total_losses[-5:])
    assert last < first - 0.01, (first, last)
    assert result.image.shape == (32, 32, 3) and result.image.dtype == np.uint8


def test_same_seed_gives_the_identical_image_and_another_seed_does_not(loaded):
    from vqgan_clip.loop import generate

    vqgan, clip = loaded
    config = loop_config(max_iterations=4, cutn=4, prompts="a star:1 | a square:-0.5", seed=3)
    first = generate(config, vqgan, clip, progress=False)
    second = generate(config, vqgan, clip, progress=False)
    other = generate(loop_config(max_iterations=4, cutn=4, prompts="a star:1 | a square:-0.5", seed=4), vqgan, clip,
                     progress=False)
    assert np.array_equal(first.image, second.image)
    assert first.total_losses == second.total_losses
    assert not np.array_equal(first.image, other.image)
    # The negative prompt's loss is recorded with its sign.
    assert all(value < 0 for value in first.losses["a square"])


def test_initial_image_and_target_image_steer_the_loop(tmp_path, loaded):
    from vqgan_clip.loop import generate

    vqgan, clip = loaded
    picture = np.zeros((40, 40, 3), np.uint8)
    picture[:, :20] = (220, 30, 30)
    Image.fromarray(picture).save(tmp_path / "start.png")
    config = loop_config(max_iterations=3, cutn=4, initial_image=str(tmp_path / "start.png"),
                         target_images=f"{tmp_path / 'start.png'}:0.5", init_weight=1.0)
    result = generate(config, vqgan, clip, progress=False)
    assert set(result.losses) == {"a red circle on a blue background", "image start.png", "init"}
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(LabError, match="INITIAL_IMAGE .*broken.png cannot be read"):
        generate(loop_config(initial_image=str(tmp_path / "broken.png")), vqgan, clip, progress=False)
    with pytest.raises(LabError, match="target image .*missing.png not found"):
        generate(loop_config(target_images=str(tmp_path / "missing.png")), vqgan, clip, progress=False)


def test_generate_script_writes_steps_final_png_video_and_never_overwrites(lab_outputs, tiny_models):
    from lab.media import count_video_frames
    from vqgan_clip.generate import main

    args = ["--set", f"MODEL={tiny_models}", "--set", "WIDTH=33", "--set", "HEIGHT=32", "--set", "MAX_ITERATIONS=6",
            "--set", "DISPLAY_FREQUENCY=2", "--set", "CUTN=4", "--set", "SEED=11",
            "--set", "PROMPTS=A Red Circle!:1 | https://x.org/y.png:-0.2"]
    main(args)
    folder = lab_outputs / "vqgan_clip" / "a-red-circle"
    steps = sorted((folder / "steps").glob("*.png"))
    # Frames at iterations 0, 2, 4 and the final image after iteration 6.
    assert [p.name for p in steps] == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert count_video_frames(folder / "progress.mp4") == 4
    with Image.open(folder / "final.png") as final:
        assert final.size == (32, 32)
        assert final.text["seed"] == "11" and "A Red Circle!:1" in final.text["prompts"]
    record = json.loads((folder / "run.json").read_text())
    assert record["metrics"]["iterations"] == 6
    assert {a["path"] for a in record["artifacts"]} == {"final.png", "progress.mp4", "losses.png"}
    main(args[:-2] + ["--set", "PROMPTS=a red circle", "--set", "MAX_ITERATIONS=1"])
    assert (lab_outputs / "vqgan_clip" / "a-red-circle-2" / "final.png").is_file()
    assert (folder / "run.json").read_text() == json.dumps(record, indent=2) + "\n"


def test_generate_script_reports_bad_input_in_one_line(lab_outputs, tiny_models):
    result = run_module("vqgan_clip.generate", "--set", f"MODEL={tiny_models}", "--set", "PROMPTS=a cat:lots",
                        env_root=lab_outputs, timeout=120)
    assert result.returncode == 2
    assert "error: cannot read the weight 'lots'" in result.stderr
    assert "Traceback" not in result.stderr


def test_openai_style_torchscript_clip_converts_to_a_state_dict_that_loads(tmp_path, tiny_models):
    from vqgan_clip.clip_model import load_clip
    from vqgan_clip.convert_checkpoint import main as convert

    model, *_ = load_clip(tiny_models / "clip_config.json", tiny_models / "clip.pt")
    # OpenAI publishes CLIP as a TorchScript archive: make one of the tiny model the same way.
    torch.jit.trace_module(model, {"encode_image": (torch.zeros(1, 3, 32, 32),)}).save(str(tmp_path / "ViT-tiny.pt"))
    with pytest.raises(LabError, match="convert_checkpoint openai-clip"):
        load_clip(tiny_models / "clip_config.json", tmp_path / "ViT-tiny.pt")
    target = convert(["openai-clip", str(tmp_path / "ViT-tiny.pt")])
    assert target == tmp_path / "ViT-tiny.state_dict.pt"
    converted, *_ = load_clip(tiny_models / "clip_config.json", target)
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key


class LightningCallbackRecord:
    """Stands for the Lightning objects that official checkpoints pickle beside the weights."""


def test_lightning_checkpoint_with_classes_of_missing_modules_loads_without_running_them(tmp_path, tiny_models,
                                                                                         monkeypatch):
    """An official last.ckpt pickles Lightning objects; pytorch_lightning is not installed here."""
    import sys
    import types

    from vqgan_clip.convert_checkpoint import main as convert
    from vqgan_clip.vqgan import load_vqgan

    # A class that pickles as pytorch_lightning.callbacks.ModelCheckpoint, a module that exists only while saving.
    module = types.ModuleType("pytorch_lightning.callbacks")
    ran = []
    ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": module.__name__,
                                                   "__setstate__": lambda self, state: ran.append(state)})
    module.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, "pytorch_lightning", types.ModuleType("pytorch_lightning"))
    monkeypatch.setitem(sys.modules, "pytorch_lightning.callbacks", module)
    state = torch.load(tiny_models / "vqgan.pt", weights_only=True)
    lightning = dict(state)
    lightning["loss.discriminator.main.0.weight"] = torch.ones(4)
    lightning["loss.logvar"] = torch.zeros(())
    callback = ModelCheckpoint()
    callback.best_model_score = torch.tensor(0.25)
    checkpoint = {"state_dict": lightning, "epoch": 3, "global_step": 1200,
                  "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.25)}}, "callback": callback,
                  "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 4.5e-6}]}],
                  "numpy_scalar": np.float64(1.5)}
    torch.save(checkpoint, tmp_path / "last.ckpt")
    monkeypatch.delitem(sys.modules, "pytorch_lightning.callbacks")
    monkeypatch.delitem(sys.modules, "pytorch_lightning")
    with pytest.raises(Exception, match="pytorch_lightning"):  # what a plain full unpickling hits
        torch.load(tmp_path / "last.ckpt", weights_only=False)
    model = load_vqgan(tiny_models / "vqgan.yaml", tmp_path / "last.ckpt")
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    # convert_checkpoint needs neither pytorch_lightning nor --trust.
    target = convert(["vqgan", str(tmp_path / "last.ckpt")])
    plain = torch.load(target, weights_only=True)
    assert set(plain) == set(state)
    assert ran == []  # the pickled class's code never ran


def test_truncated_checkpoint_says_download_it_again(tmp_path, tiny_models):
    from vqgan_clip.vqgan import load_vqgan

    data = (tiny_models / "vqgan.pt").read_bytes()
    (tmp_path / "vqgan.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(LabError, match=r"cannot read .*vqgan.pt: the file is incomplete; download it again"):
        load_vqgan(tiny_models / "vqgan.yaml", tmp_path / "vqgan.pt")
    # torch's older (non-zip) format, as some checkpoints of 2020 are saved, cut short too.
    torch.save(torch.load(tiny_models / "vqgan.pt", weights_only=True), tmp_path / "legacy.pt",
               _use_new_zipfile_serialization=False)
    data = (tmp_path / "legacy.pt").read_bytes()
    (tmp_path / "legacy.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(LabError, match=r"cannot read .*legacy.pt: the file is incomplete; download it again"):
        load_vqgan(tiny_models / "vqgan.yaml", tmp_path / "legacy.pt")


def test_yaml_target_other_than_vqmodel_or_gumbelvq_names_both(tmp_path, tiny_models):
    from vqgan_clip.vqgan import load_vqgan

    config = yaml.safe_load((tiny_models / "vqgan.yaml").read_text())
    config["model"]["target"] = "taming.models.cond_transformer.Net2NetTransformer"
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(LabError, match="taming.models.vqgan.VQModel and taming.models.vqgan.GumbelVQ"):
        load_vqgan(tmp_path / "model.yaml", tiny_models / "vqgan.pt")


def test_max_iterations_minus_one_runs_until_stopped(loaded):
    from vqgan_clip.loop import generate

    vqgan, clip = loaded

    class StopAfterThree:  # stands for InterruptGuard: Ctrl+C sets `requested`
        calls = 0

        @property
        def requested(self):
            self.calls += 1
            return self.calls >= 3

    frames = []
    config = loop_config(max_iterations=-1, cutn=2, display_frequency=1)
    result = generate(config, vqgan, clip, guard=StopAfterThree(), on_display=lambda i, image: frames.append(i),
                      progress=False)
    assert result.interrupted and result.iterations == 3
    # Frames at iterations 0, 1, 2, then the final image: what Ctrl+C leaves for final.png and the video.
    assert frames == [0, 1, 2, 3]
