"""pen_cap_vae: the article's keys and formulas, the EEG pipeline, bad input, and the pipeline end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lab.media import count_video_frames
from pen_cap_vae import draw_pictures, pictures, seeds, source_maker, train
from pen_cap_vae import test as date_script
from pen_cap_vae.eeg import EEGRecorder, log_spectrum, smooth_spectrum, spectral_exponent
from pen_cap_vae.model import (
    GaussianAutoencoder,
    Recoder,
    corrloss,
    date_schedule,
    recoder_loss,
    sigma_vae_loss,
    vae_step,
)
from pen_cap_vae.track import (
    NEAREST_MARGIN,
    CapLocator,
    DateTrack,
    bare_table_likeness,
    culmination_dips,
    culmination_parts,
    likeness,
    nearest,
    phase_bounds,
    phase_masks,
    summarise,
)
from tests.conftest import run_module


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The quick and dry-run profiles set torch to one thread in-process; give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the article's names


def test_vae_state_dict_has_the_articles_keys_and_shapes():
    state = GaussianAutoencoder().state_dict()
    expected = {
        "sigma": (1,),
        "encoder.cnn1.weight": (128, 3, 10, 10),
        "encoder.gn1.weight": (128,),
        "encoder.cnn.0.weight": (128, 64, 3, 3),
        "encoder.gn.3.weight": (128,),
        "encoder.cnn.19.bias": (128,),
        "encoder.cnn_out.weight": (8, 64, 1, 1),
        "encoder_var.cnn1.weight": (128, 3, 10, 10),
        "encoder_var.gn.19.bias": (128,),
        "decoder.cnn_in.weight": (128, 8, 1, 1),
        "decoder.gn_in.weight": (128,),
        "decoder.cnn.19.weight": (128, 64, 3, 3),
        "decoder.gn5.weight": (6,),
        "decoder.cnn5.weight": (64, 6, 10, 10),  # ConvTranspose2d(64, 6): (in, out, kh, kw)
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    # Two encoders of 86 tensors, a decoder of 88 and sigma: nothing more, nothing less.
    assert len(state) == 2 * 86 + 88 + 1
    assert "encoder.cnn.20.weight" not in state


def test_recoder_keys_shapes_and_hidden_list():
    recoder = Recoder()
    state = recoder.state_dict()
    assert tuple(state["cnn_in.weight"].shape) == (64, 8, 1, 1)
    assert tuple(state["cnn.19.weight"].shape) == (128, 64, 3, 3)
    assert tuple(state["cnn_out.weight"].shape) == (8, 64, 1, 1)
    assert len(state) == 2 + 40 + 2
    out, hidden = Recoder(layers=3, channels=8).eval()(torch.randn(1, 8, 4, 5), return_h=True)
    assert out.shape == (1, 8, 4, 5) and len(hidden) == 3
    # Every hidden layer is L2-normalised over the channels at every position.
    assert torch.allclose(hidden[-1].norm(dim=1), torch.ones(1, 4, 5), atol=1e-5)


# ----------------------------------------------------------------------------- formulas by hand


def test_sigma_vae_loss_matches_hand_computation():
    pictures = torch.tensor([[[[0.0, 1.0]]]])  # one 1x1x2 picture: H*W*C = 2
    reconstruction = torch.tensor([[[[0.5, 0.5]]]])
    mean, std, variance = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.5), torch.tensor([0.5])
    # likelihood (0.25 + 0.25) / (2 * 0.5) = 0.5; KL 0.5 * (0.25 + 0.25 - 1) - log 0.5 = 0.443147;
    # 0.5 * log(0.5) * 2 = -0.693147; total 0.25.
    loss = sigma_vae_loss(pictures, reconstruction, mean, std, variance)
    assert float(loss) == pytest.approx(0.25, abs=1e-6)
    # A batch of two identical pictures: both sums are averaged over the batch, so the same loss.
    doubled = sigma_vae_loss(pictures.repeat(2, 1, 1, 1), reconstruction.repeat(2, 1, 1, 1), mean.repeat(2, 1, 1, 1),
                             std.repeat(2, 1, 1, 1), variance)
    assert float(doubled) == pytest.approx(0.25, abs=1e-6)


def test_log_sigma_term_uses_the_real_picture_size():
    # With zero error and a standard-normal code only 0.5 * log(variance) * H * W * C remains.
    for height, width in ((2, 3), (4, 5)):
        zeros = torch.zeros(1, 3, height, width)
        loss = sigma_vae_loss(zeros, zeros, torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), torch.tensor([math.e]))
        assert float(loss) == pytest.approx(0.5 * 3 * height * width, rel=1e-6)


def test_corrloss_matches_hand_computation():
    y = torch.tensor([1.0, 2.0, 3.0])
    x = torch.tensor([1.0, 2.0, 4.0])
    z, r = corrloss(y, x)
    # Deviations of x: -4/3, -1/3, 5/3 (sum of squares 42/9); of y: -1, 0, 1 (2); cross sum 3.
    assert float(z) == pytest.approx(1.0 - 3.0 / math.sqrt(42.0 / 9.0 * 2.0), abs=1e-6)
    assert float(r) == pytest.approx((math.log(42.0 / 9.0) - math.log(2.0)) ** 2 + (7.0 / 3.0 - 2.0) ** 2, abs=1e-6)


def test_recoder_loss_value_and_detached_factors():
    torch.manual_seed(0)
    y = torch.randn(1, 2, 3, 3, requires_grad=True)
    x1, target, s = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3), 0.4
    loss, loss1, loss2, r = recoder_loss(y, x1, target, s)
    l1, l2, rv = float(loss1.detach()), float(loss2.detach()), float(r.detach())
    assert float(loss.detach()) == pytest.approx(l1 * (l1 - s) + l2 * l2 * (1 - 0.8 * s) + 0.25 * rv, rel=1e-5)
    loss.backward()
    # The detached factors act as constant weights: d loss = (l1 - s) d l1 + l2 (1 - 0.8 s) d l2 + 0.25 d r.
    y2 = y.detach().clone().requires_grad_(True)
    a, _ = corrloss(y2, x1)
    b, rr = corrloss(y2, target)
    ((l1 - s) * a + l2 * (1 - 0.8 * s) * b + 0.25 * rr).backward()
    assert torch.allclose(y.grad, y2.grad, atol=1e-5)


@pytest.mark.parametrize(("iteration", "expected"), [
    (529, 0.080546),    # t = 0.1: s1 = 1/2 (start of the plateau), no pulse yet
    (2649, 0.162046),   # t = 0.5: the plateau, 0.16 plus the pulses' far tails
    (4769, 1.488784),   # t = 0.9: s2 = 1/2 and the first pulse at its peak
    (4769 + 5300, 1.488784),  # the schedule repeats every cycle
])
def test_schedule_values_at_known_t(iteration, expected):
    assert date_schedule(iteration, 5300)["s"] == pytest.approx(expected, abs=2e-6)


def test_schedule_pulses_peak_at_the_articles_times():
    values = np.array([date_schedule(i, 5300)["s_"] for i in range(4500, 5300)])
    t = (np.arange(4500, 5300) + 1) / 5300
    peaks = [t[i] for i in range(1, len(values) - 1) if values[i] > values[i - 1] and values[i] >= values[i + 1]]
    assert peaks == pytest.approx([0.90, 0.93, 0.96], abs=1e-3)  # neighbours pull each peak slightly


# ----------------------------------------------------------------------------- EEG


def test_spectrum_peak_lands_at_the_signals_frequency_bin():
    samples, frequency_bin = 1000, 300
    n = np.arange(samples)
    # A band of cosines around DCT bin 300 (DCT-II basis functions), plus a little noise.
    signal = sum(np.exp(-((d / 6.0) ** 2)) * np.cos(np.pi * (frequency_bin + d) * (2 * n + 1) / (2 * samples))
                 for d in range(-15, 16))
    signal = signal + 1e-3 * np.random.default_rng(0).standard_normal(samples)
    spectrum = log_spectrum(signal[None, :])
    assert spectrum.argmax() == frequency_bin
    smoothed = smooth_spectrum(spectrum, width=100, positions=900)
    assert smoothed.shape == (1, 900)
    assert abs(smoothed.argmax() + 50 - frequency_bin) <= 2  # position j is centred on bin j + width/2


def test_spectral_exponent_of_white_and_brown_noise():
    rng = np.random.default_rng(0)
    white = rng.standard_normal((8, 1000))
    assert abs(np.median(spectral_exponent(white))) < 0.2
    assert 1.6 < np.median(spectral_exponent(np.cumsum(white, axis=1))) < 2.2  # 1/f^2 for a random walk


def test_eeg_normalisation_matches_the_article_by_hand():
    recorder = EEGRecorder(np.array([[0, 0, 0, 0]]))
    assert recorder.record(np.array([2.0]))[0] == pytest.approx(2.0)
    # mu = 0.02, var = 0.9 + 0.1 * (2 - 0.02)^2 = 1.29204.
    assert recorder.record(np.array([2.0]))[0] == pytest.approx(1.98 / math.sqrt(1.29204), rel=1e-6)
    assert recorder.take_window().shape == (1, 2)


def test_eeg_reads_each_probe_at_its_position():
    hidden = [torch.randn(1, 4, 3, 5) for _ in range(3)]
    probes = np.array([[0, 1, 2, 3], [2, 3, 0, 4], [1, 0, 1, 1]])
    values = EEGRecorder(probes).read(hidden)
    assert values.tolist() == pytest.approx([float(hidden[p][0, q, m, n]) for p, q, m, n in probes])


# ----------------------------------------------------------------------------- bad input


def _fails_with(capsys, main, argv, *fragments):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_or_too_few_pictures_name_the_folder_and_the_draw_command(lab_outputs, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    _fails_with(capsys, train.main, ["--dry-run", "--set", f"PICTURES_DIR={missing}"],
                str(missing), "python -m pen_cap_vae.draw_pictures")
    lonely = tmp_path / "one"
    lonely.mkdir()
    pictures.draw_picture(0, 30, 50, 1).save(lonely / "only.jpg")
    _fails_with(capsys, train.main, ["--dry-run", "--set", f"PICTURES_DIR={lonely}"], "at least 2", str(lonely))


def test_date_without_trained_vae_says_to_train_first(lab_outputs, capsys):
    _fails_with(capsys, date_script.main, ["--dry-run"], "run python -m pen_cap_vae.train --dry-run first")


def test_vae_of_another_architecture_is_refused_with_the_keys_named(lab_outputs, tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save(GaussianAutoencoder(layers=2, channels=16).state_dict(), foreign)  # a bare state_dict
    _fails_with(capsys, date_script.main, ["--dry-run", "--set", f"VAE_CHECKPOINT={foreign}"],
                "does not match this architecture", "missing keys: decoder.cnn.10.bias",
                "decoder.cnn5.weight (8, 6, 10, 10) vs (64, 6, 10, 10)")


def test_inconsistent_date_constants_are_refused(lab_outputs, capsys):
    _fails_with(capsys, date_script.main, ["--dry-run", "--set", "SWITCH_ITERATION=40"], "SWITCH_ITERATION")
    _fails_with(capsys, date_script.main, ["--dry-run", "--set", "SMOOTH_POSITIONS=18"], "EEG_WINDOW")


def test_source_maker_without_frames_says_to_run_the_date(lab_outputs, capsys):
    _fails_with(capsys, source_maker.main, ["--dry-run"], "run python -m pen_cap_vae.test --dry-run first")


@pytest.fixture
def small_pictures(tmp_path):
    folder = tmp_path / "pictures"
    draw_pictures.main(["--set", f"PICTURES_DIR={folder}", "--set", "HEIGHT=60", "--set", "WIDTH=100"])
    return folder


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(lab_outputs, small_pictures, capsys, monkeypatch):
    common = ["--dry-run", "--set", f"PICTURES_DIR={small_pictures}", "--set", "CHECKPOINT_EVERY=1"]
    train.main(common + ["--set", "STEPS=2"])
    monkeypatch.setattr(train, "vae_step", lambda *args: float("nan"))
    _fails_with(capsys, train.main, common + ["--set", "STEPS=4"], "nan", "last good checkpoint (step 2)")
    checkpoint = torch.load(lab_outputs / "pen_cap_vae/checkpoints/dry_run/vae.pt", weights_only=True)
    assert checkpoint["step"] == 2 and all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_bad_schedule_or_clipping_constants_are_refused(lab_outputs, capsys):
    _fails_with(capsys, train.main, ["--dry-run", "--set", "FINAL_LR_FRACTION=0"], "FINAL_LR_FRACTION", "> 0, <= 1")
    _fails_with(capsys, train.main, ["--dry-run", "--set", "CLIP_PERCENTILE=120"], "CLIP_PERCENTILE", "<= 100")
    _fails_with(capsys, train.main, ["--dry-run", "--set", "STEPS=0"], "STEPS", "> 0")
    _fails_with(capsys, date_script.main, ["--dry-run", "--set", "CYCLE_LENGTH=-5"], "CYCLE_LENGTH", ">= 2")


def test_autoclip_cuts_a_gradient_spike_to_the_percentile_of_past_norms():
    torch.manual_seed(0)
    model = GaussianAutoencoder(layers=1, channels=8, code_channels=2, patch=5)
    pictures = torch.rand(2, 3, 10, 20)
    before = [p.detach().clone() for p in model.parameters()]
    norms = [1e-3] * 20  # a history of small gradients: the first real one is a "spike" against it
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    vae_step(model, optimizer, pictures, norms, clip_percentile=90.0)
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert norms[-1] > 1.0  # the raw norm is recorded ...
    assert float(step.norm()) == pytest.approx(1e-3, rel=1e-3)  # ... but the step taken is the clipped one


class _InterruptAfter:
    """Stands in for InterruptGuard: `requested` turns true after a number of checks (a Ctrl+C)."""

    def __init__(self, checks: int):
        self.checks = checks

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def requested(self):
        self.checks -= 1
        return self.checks < 0


# ----------------------------------------------------------------------------- the date track


def _drawn(height=90, width=160, **kwargs):
    return np.stack([np.asarray(pictures.draw_picture(i, height, width, **kwargs), dtype=np.float32) / 255.0
                     for i in range(3)])


@pytest.mark.parametrize(("height", "width"), [(90, 160), (360, 640)])
def test_cap_position_is_read_back_from_the_drawn_pictures(height, width):
    locator = CapLocator(_drawn(height, width))
    assert locator.available
    # Within one pixel of the 160-wide matching scale, on every picture.
    assert locator.picture_positions == pytest.approx(list(pictures.CAP_OPEN_END), abs=1.0 / 160)


def test_cap_position_follows_synthetic_shifts_of_the_cap():
    locator = CapLocator(_drawn())
    for cap_open in (0.58, 0.62, 0.66, 0.70, 0.78):
        shifted = np.asarray(pictures.draw_picture(0, 90, 160, cap_open=cap_open), dtype=np.float32) / 255.0
        position, score = locator.locate(shifted)
        assert position == pytest.approx(cap_open, abs=1.0 / 160) and score > 0.9


def test_a_blend_reads_as_its_stronger_picture():
    pictures = _drawn()
    locator = CapLocator(pictures)
    for weight, expected in ((0.8, 0), (0.65, 0), (0.35, 2), (0.2, 2)):
        blend = weight * pictures[0] + (1.0 - weight) * pictures[2]
        assert locator.locate(blend)[0] == pytest.approx(locator.picture_positions[expected], abs=1.0 / 160)
        similar = likeness(blend, pictures)
        assert int(np.argmax(similar)) == expected and similar.max() > 0.95


def test_pictures_without_the_drawn_cap_give_a_likeness_only_track():
    rng = np.random.default_rng(0)
    photos = rng.random((3, 60, 100, 3)).astype(np.float32)  # nothing like the drawn cap
    track = DateTrack(photos)
    assert not track.locator.available and "likeness only" in track.locator.reason
    track.add(photos[1])
    assert math.isnan(track.cap[0]) and np.argmax(track.likeness[0]) == np.argmax(track.distinctive[0]) == 1


@pytest.mark.parametrize(("cycle", "switch"), [(5300, 1060), (600, 120), (600, 240), (40, 8)])
def test_phase_boundaries_follow_cycle_length_and_switch(cycle, switch):
    bounds = phase_bounds(cycle, switch)
    assert bounds["start"] == (0, min(round(0.1 * cycle), switch))
    assert bounds["approach"][1] == switch and bounds["plateau"][0] == switch
    assert bounds["plateau"][1] == bounds["culmination"][0] == round(0.88 * cycle)
    assert bounds["culmination"][1] == cycle
    # The approach starts where s1 steps up (t = 0.1) and the pulses fall in the culmination.
    s1 = [date_schedule(i, cycle)["s1"] for i in range(cycle)]
    assert s1[bounds["approach"][0] - 2] < 0.5 <= s1[bounds["approach"][0]]
    masks = phase_masks(2 * cycle, cycle, switch)
    assert sum(m.sum() for m in masks.values()) == 2 * cycle  # every iteration in exactly one phase


def test_summary_finds_the_phases_the_rhythm_and_the_dips():
    """A synthetic date: like picture 1 until the switch, then like picture 3 with the cap
    oscillating every 25 iterations, and three dips at the pulses."""
    cycle, switch, pictures = 600, 120, _drawn()
    track = DateTrack(pictures)
    for i in range(cycle):
        t = (i + 1) / cycle
        similar = [0.95, 0.85, 0.8] if i < switch else [0.8, 0.85, 0.95]
        dip = sum(0.1 / (1.0 + ((t - c) * 100.0) ** 2) for c in (0.90, 0.93, 0.96))
        similar[2] -= dip
        track.likeness.append(similar)
        track.distinctive.append(similar)
        track.cap.append(0.74 if i < switch else 0.545 + 0.01 * math.sin(2 * math.pi * i / 25))
        track.cap_score.append(1.0)
    summary = summarise(track, cycle, switch, 160)
    nearest = {name: phase["nearest_picture"] for name, phase in summary["phases"].items()}
    assert nearest == {"start": 1, "approach": 1, "plateau": 3, "culmination": 3}
    assert summary["plateau_rhythm"]["period_iterations"] == pytest.approx(25.0, rel=0.05)
    assert summary["phases"]["plateau"]["cap_movement_px"] == pytest.approx(1.6 * 4 / 25, rel=0.05)  # 4 A / period
    assert [d["iteration"] for d in summary["culmination_dips"]] == [539, 557, 575]
    assert all(d["visible"] and d["dip"] > 0.08 for d in summary["culmination_dips"])
    # One long break instead of three pulses: deep, but no recovery between them, so not three pulses.
    broken = np.asarray(track.likeness)
    broken[round(0.88 * cycle):, 2] = 0.3
    dips, _ = culmination_dips(broken, cycle, switch)
    assert all(d["dip"] > 0.5 and not d["visible"] for d in dips) and len(dips) == 3


def test_culmination_parts_cover_the_culmination_and_put_the_pulses_where_s_peaks():
    cycle, switch = 600, 120
    parts = culmination_parts(2 * cycle, cycle, switch)
    culmination = phase_masks(2 * cycle, cycle, switch)["culmination"]
    together = sum(mask.astype(int) for mask in parts.values())
    assert (together == culmination).all()  # every culmination frame in exactly one part, nothing else
    s = np.array([date_schedule(i, cycle)["s"] for i in range(cycle)])
    at, between = parts["at_pulses"][:cycle], parts["between_pulses"][:cycle]
    assert s[at].mean() > s[between].mean() + 0.3 and {539, 557, 575} <= set(np.flatnonzero(at))  # the peaks
    assert parts["before_pulses"][:cycle].sum() == 6 and parts["after_pulses"][:cycle].sum() == 19


def _culmination_track(outside: int | None, rng: np.random.Generator, cycle: int = 600, switch: int = 120) -> DateTrack:
    """A synthetic date: picture 1 until the switch, picture 3 on the plateau, noise at the
    culmination's pulses (no picture nearer than another), and picture `outside` (1-based) before,
    between and after them (None: noise there too)."""
    track = DateTrack(_drawn())
    at_pulses = culmination_parts(cycle, cycle, switch)["at_pulses"]
    culmination = phase_masks(cycle, cycle, switch)["culmination"]
    for i in range(cycle):
        shown = 1 if i < switch else 3 if not culmination[i] else None if at_pulses[i] else outside
        similar = list(0.1 + 0.05 * rng.standard_normal(3))
        if shown is not None:
            similar = [0.6, 0.6, 0.6]
            similar[shown - 1] = 0.9
        track.likeness.append(similar)
        track.distinctive.append(similar)
        track.cap.append(np.nan)
        track.cap_score.append(np.nan)
    return track


def test_the_culmination_outside_the_pulses_reads_as_the_picture_its_frames_show():
    rng = np.random.default_rng(0)
    summary = summarise(_culmination_track(3, rng), 600, 120, 160)
    parts = summary["culmination_parts"]
    assert parts["between_pulses"]["nearest_picture"] == parts["after_pulses"]["nearest_picture"] == 3
    assert parts["between_pulses"]["frames_nearest"] == [0, 0, parts["between_pulses"]["frames"]]
    assert parts["at_pulses"]["nearest_picture"] is None  # noise: no picture leads by NEAREST_MARGIN
    assert summary["phases"]["culmination"]["nearest_picture"] == 3
    assert summary["phases"]["plateau"]["nearest_picture"] == 3 and summary["phases"]["approach"]["nearest_picture"] == 1
    # Noise between and after the pulses too: the culmination shows no picture, whatever the mean's argmax.
    summary = summarise(_culmination_track(None, rng), 600, 120, 160)
    assert summary["culmination_parts"]["between_pulses"]["nearest_picture"] is None
    assert summary["phases"]["culmination"]["nearest_lead"] < NEAREST_MARGIN


def test_the_bare_table_is_less_like_every_picture_than_the_pictures_are_and_only_for_the_drawn_ones():
    drawn = _drawn()
    table = bare_table_likeness(drawn)
    assert table is not None and all(0.5 < v < 0.85 for v in table["likeness"])
    # Where the pictures differ the bare table leans to picture 1 (no cap on the pen's tip), as
    # pictureless frames do: the reason the README reads a lean of that size as no picture.
    assert table["distinctive_likeness"][0] == max(table["distinctive_likeness"]) < 0.3
    assert bare_table_likeness(np.random.default_rng(0).random(drawn.shape).astype(np.float32)) is None


def test_nearest_reports_a_tie_as_none_and_counts_frames():
    tie = nearest(np.array([[0.2, 0.1, 0.195], [0.1, 0.1, 0.11]]), np.full((2, 3), 0.5))
    assert tie["nearest_picture"] is None and tie["frames_nearest"] == [1, 0, 1]
    clear = nearest(np.array([[0.1, 0.1, 0.5], [0.3, 0.1, 0.2]]), np.full((2, 3), 0.5))
    assert clear["nearest_picture"] == 3 and clear["nearest_lead"] == pytest.approx(0.15)
    assert clear["frames_nearest"] == [1, 0, 1]  # the mean and the frames' vote can differ; both are reported


# ----------------------------------------------------------------------------- resume


def _model_tensors(path):
    return torch.load(path, weights_only=True)["model"]


def test_interrupted_and_resumed_training_gives_the_uninterrupted_numbers(lab_outputs, small_pictures, monkeypatch):
    common = ["--dry-run", "--set", f"PICTURES_DIR={small_pictures}", "--set", "STEPS=6", "--set", "CHECKPOINT_EVERY=4"]
    train.main([*common, "--set", "RUN_NAME=whole"])
    monkeypatch.setattr(train, "InterruptGuard", lambda: _InterruptAfter(2))  # Ctrl+C during step 3
    train.main([*common, "--set", "RUN_NAME=cut"])
    cut = lab_outputs / "pen_cap_vae/checkpoints/dry_run-cut/vae.pt"
    assert torch.load(cut, weights_only=True)["step"] == 3  # saved at the Ctrl+C, between two checkpoints
    monkeypatch.setattr(train, "InterruptGuard", lambda: _InterruptAfter(10**9))
    train.main([*common, "--set", "RUN_NAME=cut"])
    whole = _model_tensors(lab_outputs / "pen_cap_vae/checkpoints/dry_run-whole/vae.pt")
    resumed = _model_tensors(cut)
    assert all(torch.allclose(whole[k], resumed[k], rtol=0, atol=1e-6) for k in whole)
    assert json.loads((lab_outputs / "pen_cap_vae/train-cut/run.json").read_text())["metrics"]["steps"] == 6


def test_other_pictures_stop_a_resume(lab_outputs, small_pictures, tmp_path, capsys):
    train.main(["--dry-run", "--set", f"PICTURES_DIR={small_pictures}"])
    other = tmp_path / "other"
    other.mkdir()
    for i, path in enumerate(sorted(small_pictures.iterdir())):
        pictures.draw_picture(2 - i, 60, 100).save(other / path.name)  # same names, other pictures
    _fails_with(capsys, train.main, ["--dry-run", "--set", f"PICTURES_DIR={other}", "--set", "STEPS=5"],
                "other data", "--fresh")


def test_pictures_of_different_sizes_are_named(lab_outputs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    pictures.draw_picture(0, 60, 100).save(folder / "a.jpg")
    pictures.draw_picture(2, 30, 50).save(folder / "b.jpg")
    _fails_with(capsys, train.main, ["--dry-run", "--set", f"PICTURES_DIR={folder}"],
                "different sizes", "a.jpg 100x60", "b.jpg 50x30")


def test_a_resumed_date_keeps_frames_eeg_windows_and_track(lab_outputs, small_pictures, monkeypatch):
    pictures = ["--dry-run", "--set", f"PICTURES_DIR={small_pictures}"]
    train.main(pictures)
    vae = ["--set", f"VAE_CHECKPOINT={lab_outputs / 'pen_cap_vae/checkpoints/dry_run/vae.pt'}"]
    date_script.main([*pictures, *vae, "--set", "RUN_NAME=whole"])
    monkeypatch.setattr(date_script, "InterruptGuard", lambda: _InterruptAfter(25))  # Ctrl+C at iteration 26
    date_script.main([*pictures, *vae, "--set", "RUN_NAME=cut"])
    cut = lab_outputs / "pen_cap_vae/test-cut"
    assert json.loads((cut / "run.json").read_text())["status"] == "interrupted"
    assert len(list((cut / "frames").glob("*.jpg"))) == 26
    monkeypatch.setattr(date_script, "InterruptGuard", lambda: _InterruptAfter(10**9))
    date_script.main([*pictures, *vae, "--set", "RUN_NAME=cut"])
    whole = json.loads((lab_outputs / "pen_cap_vae/test-whole/run.json").read_text())["metrics"]
    resumed = json.loads((cut / "run.json").read_text())["metrics"]
    assert resumed["frames"] == whole["frames"] == 40
    assert len(resumed["eeg_alpha_per_window"]) == 2
    assert resumed["eeg_alpha_per_window"] == pytest.approx(whole["eeg_alpha_per_window"], abs=1e-3)
    assert resumed["phases"] == whole["phases"]  # the track is the uninterrupted one, phase by phase
    track = {name: torch.load(lab_outputs / f"pen_cap_vae/checkpoints/dry_run-{name}/recoder.pt",
                              weights_only=True)["track"] for name in ("whole", "cut")}
    assert track["cut"]["likeness"].shape == (40, 3)
    assert torch.allclose(track["cut"]["likeness"], track["whole"]["likeness"], atol=1e-5)
    for name in ("encephalograms", "encephalograms_log_spectrae"):
        assert len(list((cut / name).rglob("*_2.jpg"))) == 20  # the window the interruption cut in two


def test_a_seed_cell_is_the_scripts_with_that_seed_and_resumes_after_ctrl_c(lab_outputs, small_pictures, monkeypatch):
    pictures = ["--dry-run", "--set", f"PICTURES_DIR={small_pictures}"]
    train.main(pictures)
    date_script.main(pictures)
    # Ctrl+C in the more seed's date (after 25 of its 40 iterations): saved, and seeds.py stops too.
    monkeypatch.setattr(date_script, "InterruptGuard", lambda: _InterruptAfter(25))
    with pytest.raises(SystemExit) as stopped:
        seeds.main(pictures[:1])
    assert stopped.value.code == 130
    monkeypatch.setattr(date_script, "InterruptGuard", lambda: _InterruptAfter(10**9))
    seeds.main(pictures[:1])  # resumes the cell's date at iteration 25
    judged = json.loads((lab_outputs / "pen_cap_vae/seeds/run.json").read_text())["metrics"]["seeds"][1]
    # The same seed through the scripts, uninterrupted: the same VAE and the same date, frame for frame.
    named = [*pictures, "--set", "SEED=1", "--set", "RUN_NAME=s1"]
    train.main(named)
    date_script.main(named)
    assert judged["seed"] == 1
    assert judged["psnr_db"] == list(json.loads((lab_outputs / "pen_cap_vae/train-s1/run.json").read_text())
                                     ["metrics"]["psnr_db"].values())
    script_track = torch.load(lab_outputs / "pen_cap_vae/checkpoints/dry_run-s1/recoder.pt", weights_only=True)["track"]
    cell_track = torch.load(next((lab_outputs / "pen_cap_vae/checkpoints/dry_run/seeds").glob("seed_1-*/recoder.pt")),
                            weights_only=True)["track"]
    assert script_track["distinctive"].shape == (40, 3)
    assert torch.equal(cell_track["distinctive"], script_track["distinctive"])


def test_seeds_needs_a_finished_trained_pair(lab_outputs, small_pictures, capsys):
    pictures = ["--dry-run", "--set", f"PICTURES_DIR={small_pictures}"]
    _fails_with(capsys, seeds.main, ["--dry-run"], "no vae.pt", "python -m pen_cap_vae.train --dry-run first")
    train.main(pictures)
    _fails_with(capsys, seeds.main, ["--dry-run"], "no recoder.pt", "python -m pen_cap_vae.test --dry-run first")
    date_script.main(pictures)
    # A finished date's checkpoint without its track (a foreign or damaged file): one line, before any training.
    path = lab_outputs / "pen_cap_vae/checkpoints/dry_run/recoder.pt"
    state = torch.load(path, weights_only=True)
    torch.save({"step": state["step"], "constants": state["constants"]}, path)
    _fails_with(capsys, seeds.main, ["--dry-run"], f"{path} holds no date track", "--fresh")
    assert not (lab_outputs / "pen_cap_vae/checkpoints/dry_run/seeds").exists()


# ----------------------------------------------------------------------------- end to end


def test_dry_run_pipeline_end_to_end_with_interrupt_and_resume(lab_outputs, small_pictures, monkeypatch):
    pictures = ["--set", f"PICTURES_DIR={small_pictures}"]
    train.main(["--dry-run", *pictures])
    record = json.loads((lab_outputs / "pen_cap_vae/train/run.json").read_text())
    assert set(record["metrics"]["psnr_db"]) == {p.name for p in small_pictures.iterdir()}
    assert (lab_outputs / "pen_cap_vae/train/reconstructions.png").is_file()
    train.main(["--dry-run", *pictures, "--set", "STEPS=5"])  # resumes at step 3
    assert json.loads((lab_outputs / "pen_cap_vae/train/run.json").read_text())["metrics"]["steps"] == 5

    # Ctrl+C after 25 of the 40 iterations: saved, then the rerun finishes the date.
    monkeypatch.setattr(date_script, "InterruptGuard", lambda: _InterruptAfter(25))
    date_script.main(["--dry-run", *pictures])
    out = lab_outputs / "pen_cap_vae/test"
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(date_script, "InterruptGuard", lambda: _InterruptAfter(10**9))
    date_script.main(["--dry-run", *pictures])
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["metrics"]["iterations"] == 40
    assert sorted(p.name for p in (out / "frames").iterdir()) == [f"{i:06d}.jpg" for i in range(40)]
    # The article's names: encephalograms/<probe>/pic_<p>_<q>_<m>_<n>_<window>.jpg, 20 probes, 2 windows.
    for folder in ("encephalograms", "encephalograms_log_spectrae"):
        names = sorted(p.relative_to(out / folder).as_posix() for p in (out / folder).rglob("*.jpg"))
        assert len(names) == 40 and names[0].startswith("1/pic_")
        assert all(n.split("/")[1].count("_") == 5 and n.endswith(("_1.jpg", "_2.jpg")) for n in names)
    assert len(record["metrics"]["eeg_alpha_per_window"]) == 2
    assert set(record["metrics"]["phases"]) == {"start", "approach", "plateau", "culmination"}
    assert record["claims"] == [] and (out / "date.png").is_file()  # one date is one seed: seeds.py judges
    for artifact in record["artifacts"]:
        assert (out / artifact["path"]).is_file(), artifact

    seeds.main(["--dry-run"])  # the trained pair (seed 0) and one more (seed 1)
    judged = json.loads((lab_outputs / "pen_cap_vae/seeds/run.json").read_text())
    assert [r["seed"] for r in judged["metrics"]["seeds"]] == [0, 1]
    assert all(set(r) == set(judged["metrics"]["seeds"][0]) and "picture_arrays" not in r  # figures, not pixels
               for r in judged["metrics"]["seeds"])
    assert [c["claim"] for c in judged["claims"]] == [seeds.CLAIM_VAE, seeds.CLAIM_DATE, seeds.CLAIM_PULSES]
    assert judged["metrics"]["seeds"][0]["psnr_db"] == list(record_psnr := json.loads(
        (lab_outputs / "pen_cap_vae/train/run.json").read_text())["metrics"]["psnr_db"].values()), record_psnr
    for artifact in judged["artifacts"]:
        assert (lab_outputs / "pen_cap_vae/seeds" / artifact["path"]).is_file(), artifact

    source_maker.main(["--dry-run"])
    video = lab_outputs / "pen_cap_vae/source_maker/animation.mp4"
    assert count_video_frames(video) == 40
    assert (lab_outputs / "pen_cap_vae/source_maker/preview.gif").is_file()


@pytest.mark.slow
def test_quick_pipeline_end_to_end(lab_outputs):
    result = run_module("lab.pipeline", "pen_cap_vae", env_root=lab_outputs, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    train_record = json.loads((lab_outputs / "pen_cap_vae/train/run.json").read_text())
    assert train_record["metrics"]["min_psnr_db"] >= 28.0
    date_record = json.loads((lab_outputs / "pen_cap_vae/test/run.json").read_text())
    assert date_record["metrics"]["frames"] == 600
    judged = json.loads((lab_outputs / "pen_cap_vae/seeds/run.json").read_text())
    assert [r["seed"] for r in judged["metrics"]["seeds"]] == list(range(seeds.SEEDS))
    assert {c["claim"] for c in judged["claims"]} == set(seeds.FULL_PROFILE)
    assert set(date_record["metrics"]["culmination_parts"]) == {"before_pulses", "at_pulses", "between_pulses", "after_pulses"}
    assert count_video_frames(lab_outputs / "pen_cap_vae/source_maker/animation.mp4") == 600
    assert (lab_outputs / "index.html").is_file()
