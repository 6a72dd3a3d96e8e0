"""The constants-override rules every script shares (lab.constants, lab.run.start_run)."""

import json

import pytest

from lab import LabError, start_run
from lab.constants import parse_value, resolve_constants

SCRIPT = {
    "__name__": "demo.train",
    "STEPS": 1000,
    "LEARNING_RATE": 0.05,
    "NAME": "article",
    "USE_DROPOUT": True,
    "SIZES": (2, 4),
    "OPTIONAL_PATH": None,
    "SEED": 3,
    "_PRIVATE": 1,
    "QUICK": {"STEPS": 10},
    "DRY_RUN": {"STEPS": 2},
}


def test_defaults_profiles_and_overrides():
    assert resolve_constants(SCRIPT)["STEPS"] == 1000
    assert resolve_constants(SCRIPT, profile="quick")["STEPS"] == 10
    assert resolve_constants(SCRIPT, profile="dry_run")["STEPS"] == 2
    constants = resolve_constants(SCRIPT, ["STEPS=7", "NAME=deep", "SIZES=[8, 16]"], profile="quick")
    assert constants["STEPS"] == 7 and constants["NAME"] == "deep" and constants["SIZES"] == (8, 16)
    assert "_PRIVATE" not in constants and "QUICK" not in constants


def test_unknown_name_lists_valid_names():
    with pytest.raises(LabError) as error:
        resolve_constants(SCRIPT, ["STPES=3"])
    message = str(error.value)
    assert "STPES" in message and "STEPS" in message and "LEARNING_RATE" in message


def test_unknown_name_in_quick_dict_is_rejected():
    with pytest.raises(LabError, match="QUICK"):
        resolve_constants({**SCRIPT, "QUICK": {"STEP": 1}}, profile="quick")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [("STEPS", "1.5", "int"), ("STEPS", "abc", "int"), ("LEARNING_RATE", "fast", "float"),
     ("USE_DROPOUT", "maybe", "bool"), ("SIZES", "3", "tuple"), ("STEPS", "True", "int")],
)
def test_wrong_type_names_expected_type(name, text, expected):
    with pytest.raises(LabError, match=f"{name} expects a {expected}"):
        parse_value(name, text, SCRIPT[name])


def test_int_for_float_and_bool_spellings_and_none():
    assert parse_value("LEARNING_RATE", "1", 0.05) == 1.0
    assert isinstance(parse_value("LEARNING_RATE", "1", 0.05), float)
    assert parse_value("USE_DROPOUT", "false", True) is False
    assert parse_value("USE_DROPOUT", "1", True) is True
    assert parse_value("OPTIONAL_PATH", "photos/cat.png", None) == "photos/cat.png"
    assert parse_value("OPTIONAL_PATH", "3", None) == 3


def test_set_without_equals_is_an_error():
    with pytest.raises(LabError, match="NAME=VALUE"):
        resolve_constants(SCRIPT, ["STEPS"])


def test_start_run_writes_a_complete_record(lab_outputs):
    run = start_run("demo", SCRIPT, ["--quick", "--set", "LEARNING_RATE=1"])
    assert run.cfg.STEPS == 10 and run.cfg.LEARNING_RATE == 1.0 and run.seed == 3 and run.device == "cpu"
    assert run.out_dir == lab_outputs / "demo" / "train"
    image = run.path("plots", "a.txt")
    image.write_text("x")
    run.add_artifact(image, "a file")
    record = json.loads(run.finish({"loss": 0.5}).read_text())
    assert record["constants"]["STEPS"] == 10 and record["profile"] == "quick"
    assert record["metrics"] == {"loss": 0.5}
    assert record["artifacts"] == [{"path": "plots/a.txt", "caption": "a file"}]
    assert {"python", "numpy"} <= set(record["versions"])
    # The script's globals are read, never changed: a second call starts from the same defaults.
    assert SCRIPT["STEPS"] == 1000 and start_run("demo", SCRIPT, []).cfg.STEPS == 1000


def test_random_seed_is_drawn_and_printed(lab_outputs, capsys):
    run = start_run("demo", {**SCRIPT, "SEED": -1}, [])
    assert f"--set SEED={run.seed}" in capsys.readouterr().out
    # The printed seed repeats the run.
    assert start_run("demo", {**SCRIPT, "SEED": -1}, ["--set", f"SEED={run.seed}"]).seed == run.seed


def test_torch_threads_constant_is_applied_and_checked(lab_outputs):
    import torch

    before = torch.get_num_threads()
    try:
        start_run("demo", {**SCRIPT, "TORCH_THREADS": 0}, ["--set", "TORCH_THREADS=1"], framework="torch")
        assert torch.get_num_threads() == 1
        with pytest.raises(LabError, match="TORCH_THREADS must be 0"):
            start_run("demo", {**SCRIPT, "TORCH_THREADS": 0}, ["--set", "TORCH_THREADS=-2"], framework="torch")
    finally:
        torch.set_num_threads(before)


def test_layers_default_variant_profile_set_and_their_sources():
    from lab.constants import Variants, resolve_layers

    script = {**SCRIPT, "QUICK": {"STEPS": 10, "LEARNING_RATE": 0.5}}
    variants = Variants("NAME", {"article": {}, "deep": {"SIZES": (8, 8), "STEPS": 500, "LEARNING_RATE": 0.01}})
    resolved = resolve_layers(script, ["NAME=deep", "STEPS=1000"], "quick", variants)
    # --set beats the profile and the variant, even when it gives the block's own default (1000)
    assert resolved.values["STEPS"] == 1000 and resolved.sources["STEPS"] == "--set"
    assert resolved.values["LEARNING_RATE"] == 0.5 and resolved.sources["LEARNING_RATE"] == "profile --quick"
    assert resolved.values["SIZES"] == (8, 8) and resolved.sources["SIZES"] == "variant deep"
    assert resolved.values["SEED"] == 3 and resolved.sources["SEED"] == "default"
    assert resolve_layers(script, [], "full", variants).sources["SIZES"] == "default"  # NAME="article"
    with pytest.raises(LabError, match="unknown variant 'wide'; valid variants: article, deep"):
        resolve_layers(script, ["NAME=wide"], "full", variants)
    with pytest.raises(LabError, match="STPES.*variant 'typo'"):
        resolve_layers(script, ["NAME=typo"], "full", Variants("NAME", {"typo": {"STPES": 1}}))
    with pytest.raises(LabError, match="variant 'odd' gives STEPS='many' \\(a str\\), but STEPS is a int"):
        resolve_layers(script, ["NAME=odd"], "full", Variants("NAME", {"odd": {"STEPS": "many"}}))


def test_settings_from_reads_each_field_from_its_constant():
    from dataclasses import dataclass

    from lab.constants import settings_from

    @dataclass(frozen=True)
    class Settings:
        learning_rate: float
        steps: int
        image_shape: tuple = (1, 8, 8)

    settings = settings_from(Settings, {"LEARNING_RATE": 0.1, "STEPS": 3, "SEED": 0})
    assert settings == Settings(0.1, 3)
    assert settings_from(Settings, {"LEARNING_RATE": 0.1, "STEPS": 3}, image_shape=(3, 4, 4)).image_shape == (3, 4, 4)
