"""No weights or checkpoint file can run code: every loader, every format (lab/safe_load.py).

Each payload file pickles an object whose `__reduce__` calls a function that creates a marker
file; a loader that ran it would leave the marker behind. Every loader must refuse such a file
with one line naming it, and every script must exit with status 2 and `error: ...`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
import torch

from lab import LabError, start_run
from lab.checkpoint import load_checkpoint, resume, save_checkpoint
from tests.conftest import run_module
from tests.test_vqgan_clip_loop import write_tiny_models

FORMATS = ("pickle", "legacy", "zip")  # a bare pickle.dump, torch's non-zip format, torch's zip format


class ShellPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class SubprocessPayload(ShellPayload):
    def __reduce__(self):
        return subprocess.call, (["touch", self.marker],)


class ExecPayload(ShellPayload):
    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


PAYLOADS = {"os.system": ShellPayload, "subprocess.call": SubprocessPayload, "exec": ExecPayload}


def write_payload(path, marker, fmt="zip", payload="os.system", wrap=lambda evil: {"state_dict": evil}):
    """A file that runs `payload` (creating `marker`) when a full unpickler reads it."""
    content = wrap(PAYLOADS[payload](marker))
    if fmt == "pickle":
        with open(path, "wb") as handle:
            pickle.dump(content, handle)
    else:
        torch.save(content, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


def one_line_error(capsys, main, argv, *fragments):
    """main(argv) exits with status 2 and a single `error: ...` line holding every fragment."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert stop.value.code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a payload in a weights file ran"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny_models"))


# ----------------------------------------------------------------------------- the loaders


def test_the_payloads_do_run_under_a_full_unpickler(tmp_path):
    """The test files are real: torch.load(weights_only=False) runs each payload."""
    for fmt in ("legacy", "zip"):
        for payload in PAYLOADS:
            ran = tmp_path / f"{fmt}-{payload}-ran"
            write_payload(tmp_path / "evil.pt", ran, fmt, payload)
            torch.load(tmp_path / "evil.pt", weights_only=False)
            assert ran.exists(), (fmt, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_torch_loader_refuses_a_payload_in_one_line(tmp_path, marker, fmt, payload):
    from lab.safe_load import UnsafeFileError, load_torch
    from vqgan_clip.clip_model import read_clip_state_dict
    from vqgan_clip.vqgan import read_vqgan_state_dict

    evil = write_payload(tmp_path / "evil.ckpt", marker, fmt, payload)
    loaders = {"load_torch": lambda p: load_torch(p, "checkpoint"),
               "load_torch with stand-ins": lambda p: load_torch(p, "checkpoint", stand_ins=True),
               "lab.checkpoint.load_checkpoint": load_checkpoint,
               "VQGAN weights": read_vqgan_state_dict, "CLIP weights": read_clip_state_dict}
    for name, load in loaders.items():
        with pytest.raises(LabError) as refused:
            load(evil)
        message = str(refused.value)
        assert isinstance(refused.value, UnsafeFileError), (name, message)
        assert str(evil) in message and "\n" not in message, (name, message)
        assert payload.split(".")[-1] in message, (name, message)


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_refuses_a_payload_as_the_last_checkpoint(tmp_path, monkeypatch, marker, fmt):
    run = start_run("demo", demo_script(tmp_path, monkeypatch), [])
    path = run.checkpoint_path("model.pt")
    write_payload(path, marker, fmt, wrap=lambda evil: {"step": 1, "model": evil})
    with pytest.raises(LabError, match=f"refusing checkpoint {path}: it asks to import or run"):
        resume(run, "model.pt", steps=4)


def test_resume_falls_back_past_a_payload_to_the_previous_checkpoint(tmp_path, monkeypatch, marker, capsys):
    run = start_run("demo", demo_script(tmp_path, monkeypatch), [])
    path = run.checkpoint_path("model.pt")
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "step": 2})
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "step": 3})
    write_payload(path, marker, "zip", wrap=lambda evil: {"step": 4, "model": evil})
    assert resume(run, "model.pt", steps=4).step == 2
    assert "refusing checkpoint" in capsys.readouterr().out


def demo_script(tmp_path, monkeypatch):
    """A script's globals as Python makes them (start_run reads its constants block)."""
    monkeypatch.setenv("LAB_OUTPUT_ROOT", str(tmp_path / "outputs"))
    source = textwrap.dedent('''
        """A demo script."""

        # -----------------------------------------------------------------------------
        # Constants.
        STEPS = 4              # optimisation steps {> 0}
        SEED = 0               # the seed
        # -----------------------------------------------------------------------------
    ''')
    path = tmp_path / "demo_train.py"
    path.write_text(source)
    namespace = {"__name__": "__main__", "__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace


def test_npz_checkpoint_with_a_pickled_object_is_refused(tmp_path, marker):
    from beauty_predictor.saving import load_checkpoint_file

    evil = tmp_path / "predictor.npz"
    np.savez(evil, w0000=np.zeros(3), meta=np.array([ShellPayload(marker)], dtype=object))
    with pytest.raises(LabError, match=f"refusing checkpoint {evil}: it holds pickled Python objects"):
        load_checkpoint_file(evil)
    with pytest.raises(ValueError):  # what a plain np.load says; allow_pickle=True would run it
        np.load(evil)["meta"]


def test_torchscript_archive_is_read_without_running_its_code(tmp_path, marker, capsys):
    """torch.jit.load runs an archive's TorchScript __setstate__, which can create and write files
    (torch.from_file with shared=True); the converter never calls it."""
    from vqgan_clip.convert_checkpoint import main as convert

    class Scripted(torch.nn.Module):
        def __init__(self, path: str):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(3, 2))
            self.mask = torch.zeros(2)
            self.path = path

        def forward(self, x):
            return x @ self.weight.t() + self.mask.sum()

        @torch.jit.export
        def __getstate__(self):
            return (self.weight, self.mask, self.path, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, torch.Tensor, str, bool]):
            opened = torch.from_file(state[2], True, 8)  # creates the file
            self.weight = state[0]
            self.mask = state[1] + opened[:2] * 0  # used, so TorchScript keeps the call
            self.path = state[2]
            self.training = state[3]

    archive = tmp_path / "ViT-evil.pt"
    torch.jit.script(Scripted(str(tmp_path / "written-by-jit-load"))).save(str(archive))
    torch.jit.load(str(archive))  # the archive is real: torch.jit.load does write the file
    assert (tmp_path / "written-by-jit-load").exists()
    torch.jit.script(Scripted(str(marker))).save(str(archive))
    one_line_error(capsys, convert, ["openai-clip", str(archive)], str(archive), "saves its own state")


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_lightning_checkpoint_classes_become_inert_stand_ins(tmp_path, tiny_models, monkeypatch, fmt):
    """Lightning pickles its own classes beside the weights: a dict subclass of hyper-parameters
    (filled by SETITEMS), a callback record, numpy scalars; none is imported, the weights load."""
    import sys
    import types

    from lab.safe_load import StandIn, load_torch
    from vqgan_clip.vqgan import load_vqgan

    module = types.ModuleType("pytorch_lightning.utilities.parsing")
    ran = []
    attribute_dict = type("AttributeDict", (dict,), {"__module__": module.__name__,
                                                     "__setitem__": lambda self, k, v: ran.append(k)})
    module.AttributeDict = attribute_dict
    parents = ["pytorch_lightning", "pytorch_lightning.utilities"]
    for name in parents:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    hyper = attribute_dict()
    dict.__setitem__(hyper, "learning_rate", 4.5e-6)
    state = torch.load(tiny_models / "vqgan.pt", weights_only=True)
    checkpoint = {"state_dict": state, "hyper_parameters": hyper, "monitor": np.float64(0.25),
                  "callbacks": {attribute_dict: [np.int64(3)]}}
    torch.save(checkpoint, tmp_path / "last.ckpt", _use_new_zipfile_serialization=fmt == "zip")
    for name in [*parents, module.__name__]:
        monkeypatch.delitem(sys.modules, name)
    loaded = load_torch(tmp_path / "last.ckpt", "checkpoint", stand_ins=True)
    assert isinstance(loaded["hyper_parameters"], StandIn)
    assert loaded["hyper_parameters"].items == {"learning_rate": 4.5e-6}
    model = load_vqgan(tiny_models / "vqgan.yaml", tmp_path / "last.ckpt")
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert ran == []


# ----------------------------------------------------------------------------- the scripts


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_checkpoint_refuses_a_payload_as_vqgan_or_clip(tmp_path, marker, capsys, fmt):
    from vqgan_clip.convert_checkpoint import main as convert

    evil = write_payload(tmp_path / "evil.pt", marker, fmt)
    one_line_error(capsys, convert, ["vqgan", str(evil)], f"refusing VQGAN checkpoint {evil}")
    one_line_error(capsys, convert, ["openai-clip", str(evil)], f"refusing CLIP weights {evil}")
    assert not (tmp_path / "evil.state_dict.pt").exists()


def test_convert_checkpoint_of_a_harmless_non_torchscript_pickle_is_one_line(tmp_path, capsys):
    from vqgan_clip.convert_checkpoint import main as convert

    plain = tmp_path / "ViT-B-32.pt"
    plain.write_bytes(pickle.dumps({"visual.proj": [1.0, 2.0]}))
    one_line_error(capsys, convert, ["openai-clip", str(plain)], f"cannot read CLIP weights {plain}")


def test_the_reported_command_exits_2_without_running_the_payload(tmp_path, marker):
    evil = write_payload(tmp_path / "evil.pt", marker, "pickle")
    result = run_module("vqgan_clip.convert_checkpoint", "vqgan", str(evil), timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: refusing VQGAN checkpoint {evil}") and "Traceback" not in result.stderr


@pytest.mark.parametrize("weights", ["vqgan.pt", "clip.pt"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_generate_refuses_a_payload_in_the_model_folder(tmp_path, lab_outputs, tiny_models, marker, capsys,
                                                        fmt, weights):
    from vqgan_clip.generate import main as generate

    folder = tmp_path / "model"
    shutil.copytree(tiny_models, folder)
    write_payload(folder / weights, marker, fmt)
    one_line_error(capsys, generate, ["--set", f"MODEL={folder}", "--set", "MAX_ITERATIONS=1"],
                   f"{folder / weights}", "refusing")


@pytest.mark.parametrize("fmt", FORMATS)
def test_download_refuses_a_payload_already_in_the_checkpoints_folder(tmp_path, tiny_models, marker, capsys, fmt):
    from vqgan_clip.download import main as download

    shutil.copy(tiny_models / "vqgan.yaml", tmp_path / "vqgan_imagenet_f16_1024.yaml")
    evil = write_payload(tmp_path / "vqgan_imagenet_f16_1024.ckpt", marker, fmt)
    one_line_error(capsys, download, ["vqgan_imagenet_f16_1024", "--folder", str(tmp_path)],
                   f"refusing VQGAN checkpoint {evil}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_pen_cap_vae_test_refuses_a_payload_as_its_vae(tmp_path, lab_outputs, marker, capsys, fmt):
    from pen_cap_vae import test as date_script

    evil = write_payload(tmp_path / "vae.pt", marker, fmt, wrap=lambda evil: {"settings": {}, "model": evil})
    one_line_error(capsys, date_script.main, ["--dry-run", "--set", f"VAE_CHECKPOINT={evil}"],
                   f"refusing checkpoint {evil}")


# ----------------------------------------------------------------------------- another script's checkpoint


def gan_checkpoint(path):
    """A checkpoint as gan_basics' GAN training writes its best generator."""
    from gan_basics.model import GANSettings, build_players

    settings = GANSettings(image_shape=(1, 28, 28), latent_dim=8, g_width=8, d_width=8)
    generator, _ = build_players(settings)
    save_checkpoint(path, {"generator": generator.state_dict(), "settings": dataclasses.asdict(settings),
                           "step": 1, "constants": {}, "data": None, "rng": None})
    return path


def test_a_gan_checkpoint_given_as_the_vae_says_whose_it_is(tmp_path, lab_outputs, capsys):
    from pen_cap_vae import test as date_script

    gan = gan_checkpoint(tmp_path / "gan_best.pt")
    one_line_error(capsys, date_script.main, ["--dry-run", "--set", f"VAE_CHECKPOINT={gan}"],
                   f"{gan} is not a checkpoint of pen_cap_vae.train", "unknown settings: d_dropout, d_width")


def test_a_vae_checkpoint_given_as_the_gan_says_whose_it_is(tmp_path):
    from gan_basics.gan_training import load_best_generator
    from pen_cap_vae.model import VAESettings

    vae = tmp_path / "vae.pt"
    settings = VAESettings()
    save_checkpoint(vae, {"model": settings.build().state_dict(), "settings": dataclasses.asdict(settings),
                          "step": 1})
    with pytest.raises(LabError, match=f"{vae} is not a checkpoint of gan_basics' GAN training"):
        load_best_generator(vae, torch.device("cpu"))
    vae.unlink()
    save_checkpoint(vae, {"generator": {}, "settings": dataclasses.asdict(settings), "step": 1})
    with pytest.raises(LabError, match=r"is not a checkpoint of gan_basics' GAN training \(unknown settings: "):
        load_best_generator(vae, torch.device("cpu"))


def test_settings_from_checkpoint_names_unknown_and_missing_fields(tmp_path):
    from gan_basics.model import GANSettings
    from lab.safe_load import settings_from_checkpoint

    values = {"image_shape": [1, 28, 28], "latent_dim": 8, "g_width": 8, "d_width": 8}
    rebuilt = settings_from_checkpoint(GANSettings, values, "gan.pt", "the GAN", image_shape=tuple)
    assert rebuilt == GANSettings((1, 28, 28), 8, 8, 8)
    other = {name: value for name, value in values.items() if name != "d_width"} | {"layers": 3}
    with pytest.raises(LabError, match=r"gan.pt is not a checkpoint of the GAN \(unknown settings: layers; "
                                       r"missing settings: d_width\)"):
        settings_from_checkpoint(GANSettings, other, "gan.pt", "the GAN")
    with pytest.raises(LabError, match="stores no settings"):
        settings_from_checkpoint(GANSettings, [1, 2], "gan.pt", "the GAN")
