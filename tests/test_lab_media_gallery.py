"""Frames to video/GIF, the gallery page, and the environment the experiments rely on."""

import html
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab import start_run
from lab.gallery import build_gallery
from lab.media import count_video_frames, write_gif, write_video
from tests.conftest import REPO_ROOT, chromium_binary


def _frames(count, height=35, width=47):
    # Odd sizes on purpose: H.264 needs even sides, write_video pads.
    return [np.full((height, width, 3), i * 20, dtype=np.uint8) for i in range(count)]


def test_video_has_every_frame_and_gif_loops(tmp_path):
    assert write_video(_frames(12), tmp_path / "a.mp4", fps=12) == 12
    assert count_video_frames(tmp_path / "a.mp4") == 12
    assert write_gif(_frames(5), tmp_path / "a.gif", fps=5, max_side=20) == 5
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 5 and max(gif.size) == 20


def test_video_from_files_rejects_mixed_sizes(tmp_path):
    paths = []
    for i, frame in enumerate(_frames(3)):
        paths.append(tmp_path / f"{i:06d}.png")
        Image.fromarray(frame).save(paths[-1])
    assert write_video(paths, tmp_path / "b.mp4") == 3
    with pytest.raises(ValueError, match="expected"):
        write_video([*_frames(2), np.zeros((10, 10, 3), np.uint8)], tmp_path / "c.mp4")


def _populate(root):
    """A run with an image, a video, a plotly page and metrics, written through lab.start_run."""
    run = start_run("sphere_mapping", {"__name__": "sphere_mapping.train", "SEED": 0, "STEPS": 5}, [])
    image = run.path("square.png")
    Image.fromarray((np.indices((64, 64)).sum(0) * 2).astype(np.uint8)).convert("RGB").save(image)
    run.add_artifact(image, "the square")
    write_video(_frames(4), run.path("anim.mp4"))
    run.add_artifact(run.path("anim.mp4"), "animation")
    run.path("sphere.html").write_text("<html><body>plotly</body></html>")
    run.add_artifact(run.path("sphere.html"), "interactive sphere")
    run.finish({"coverage": 0.9712, "nested": {"hole_deg": 12.5}, "curve": list(range(50))})
    return build_gallery(root)


# Fake run.json files, as lab.Run.finish writes them: two or more claims for four experiments,
# every verdict represented; vqgan_clip has not run.
FAKE_CLAIMS = {
    "pen_cap_vae": [("the VAE reconstructs the three pictures", "31.0 dB", True, "30.0 dB"),
                    ("the date has a plateau and a culmination", "plateau 0.4, peak at 0.7", True, "yes")],
    "beauty_predictor": [("the predictor beats both baselines", "0.081 vs 0.083", True, "0.0777 vs 0.0783"),
                         ("the improver looks like smoothing", "not measured", None, "")],
    "sphere_mapping": [("the square wraps into a sphere with a missing corner", "coverage 0.97", True, "0.98"),
                       ("variants close the sphere", "hole 12 deg", False, "3 deg")],
    "gan_basics": [("the GAN's samples approach the data", "4.1x floor", True, "2.2x"),
                   ("cGAN draws the digit asked for", "83 %", False, "98 %"),
                   ("the autoencoder beats PCA", "+2 dB", True, "+3 dB")],
}


def _write_fake_runs(root):
    for experiment, claims in FAKE_CLAIMS.items():
        folder = root / experiment / "main"
        folder.mkdir(parents=True)
        record = {"experiment": experiment, "script": "main", "profile": "quick", "status": "complete",
                  "started_at": "2026-01-01T00:00:00", "wall_time_s": 1.0, "seed": 0, "device": "cpu",
                  "metrics": {}, "artifacts": [],
                  "claims": [{"claim": c, "measured": m, "reproduced": r, "full_profile": f} for c, m, r, f in claims]}
        (folder / "run.json").write_text(json.dumps(record))


def _claim_rows(page: str) -> list[tuple[str, list[str]]]:
    """(experiment, cell texts) of each row of the summary table."""
    rows = re.findall(r'<tr class="claim" data-experiment="([^"]+)">(.*?)</tr>', page, flags=re.S)
    return [(experiment, [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", body)])
            for experiment, body in rows]


def test_gallery_summary_gathers_every_claim_with_its_verdict(lab_outputs, monkeypatch):
    from lab import gallery

    _write_fake_runs(lab_outputs)
    # A claim pen_cap_vae declares in its pipeline.py but no run recorded: "not run".
    declared = {"pen_cap_vae": [("the EEG spectra follow a power law", "exponent 1.9")]}
    monkeypatch.setattr(gallery, "declared_claims", lambda experiment: declared.get(experiment, []))
    page = build_gallery(lab_outputs).read_text()
    assert page.index('id="summary"') < page.index('id="pen_cap_vae"'), "the summary opens the page"
    rows = _claim_rows(page)
    by_experiment = {name: [cells for e, cells in rows if e == name] for name in gallery.EXPERIMENTS}
    assert [len(by_experiment[name]) for name in gallery.EXPERIMENTS] == [3, 2, 2, 1, 3]
    for experiment, claims in FAKE_CLAIMS.items():
        for (claim, measured, reproduced, full), cells in zip(claims, by_experiment[experiment], strict=False):
            assert claim in cells and measured in cells and full in cells
            assert cells[-2] == {True: "reproduced", False: "not reproduced", None: "not run"}[reproduced]
    assert by_experiment["pen_cap_vae"][2][-2:] == ["not run", ""]
    assert "the EEG spectra follow a power law" in by_experiment["pen_cap_vae"][2]
    assert by_experiment["vqgan_clip"] == [["vqgan_clip", "experiment not run", "", "", "not run", ""]]
    # Each measured claim links to the run that measured it.
    for anchor in re.findall(r'<td><a href="#(run-[^"]+)">', page):
        assert f'id="{anchor}"' in page


def test_gallery_survives_malformed_claims(lab_outputs, monkeypatch):
    from lab import gallery

    monkeypatch.setattr(gallery, "declared_claims", lambda experiment: [])  # only what the run.json says
    folder = lab_outputs / "gan_basics" / "gan"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"script": "gan", "claims": ["oops", {"measured": "1"},
                                                                             {"claim": "ok", "reproduced": "yes"}]}))
    rows = [cells for e, cells in _claim_rows(build_gallery(lab_outputs).read_text()) if e == "gan_basics"]
    assert rows == [["gan_basics", "ok", "", "", "not run", "gan"]]  # a non-boolean verdict is not a pass


def test_gallery_shows_runs_and_every_reference_exists(lab_outputs):
    page_path = _populate(lab_outputs)
    page = page_path.read_text()
    assert "<img" in page and "<video" in page and "sphere.html" in page
    assert "coverage" in page and "0.9712" in page and "nested.hole_deg" in page and "[50 values]" in page
    assert "not run yet" in page  # the experiments that have not run
    references = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert references
    for reference in references:
        assert not reference.startswith(("/", "http")), f"absolute link {reference}"
        assert (lab_outputs / reference).is_file(), f"gallery points to missing {reference}"


def test_gallery_leads_with_machine_claims_and_pictures_and_folds_metrics(lab_outputs):
    from lab.run import machine_provenance

    _write_fake_runs(lab_outputs)  # records without a "machine" (as written before it was recorded)
    page = _populate(lab_outputs).read_text()
    # The machine box comes first: this host's line for the run written through lab, and the old records'.
    machine = page[page.index('id="machine"'):page.index('id="summary"')]
    assert html.escape(machine_provenance()["cpu"]) in machine and "machine not recorded" in machine
    section = page.split('<section id="sphere_mapping">')[1].split("</section>")[0]
    first_claim = section.index('class="experiment-claim"')
    first_picture = section.index("<img")
    folded = section.index('<details class="metrics">')
    assert first_claim < first_picture < folded, "claims, then pictures, then the raw metric tables"
    assert "the square wraps into a sphere with a missing corner" in section[:first_picture]
    metrics = section[folded:section.index("</details>", folded)]
    assert "<td>coverage</td><td>0.9712</td>" in metrics
    assert "<td>coverage</td>" not in section.replace(metrics, ""), "a metric table outside the fold"


def _chromium(tmp_path, *args):
    return subprocess.run(
        [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.skipif(chromium_binary() is None, reason="Chromium not installed (apt-get install chromium)")
def test_gallery_renders_in_headless_chromium(lab_outputs, tmp_path, monkeypatch):
    from lab import gallery

    # Only the fake runs' claims: the experiments' declared ones would push the red cells off the first screen.
    monkeypatch.setattr(gallery, "declared_claims", lambda experiment: [])
    _write_fake_runs(lab_outputs)
    page = _populate(lab_outputs)
    # The page as Chromium parsed it: the summary table, at least two rows per experiment that ran.
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert '<section id="summary">' in dom and '<table class="claims">' in dom
    rows = _claim_rows(dom)
    for experiment in FAKE_CLAIMS:
        assert sum(e == experiment for e, _ in rows) >= 2, f"{experiment}: fewer than two claim rows"
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), "Chromium wrote no screenshot"
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    pixels = rgb.mean(axis=2)
    # A blank page is one flat colour; the gallery has text, tables and a gradient image.
    assert pixels.std() > 10 and (pixels < 100).mean() > 0.002
    # The summary is on the first screen: its green "reproduced" and red "not reproduced" cells show.
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert ((g > r + 20) & (g > b + 20)).sum() > 500, "no green verdict cell on the first screen"
    assert ((r > g + 20) & (r > b + 20)).sum() > 500, "no red verdict cell on the first screen"


def test_run_sh_rejects_unknown_experiment():
    result = subprocess.run([str(REPO_ROOT / "run.sh"), "no_such_experiment"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode != 0
    assert "unknown experiment" in result.stderr and "pen_cap_vae" in result.stderr


def test_pipeline_skips_experiments_not_built(lab_outputs, monkeypatch, tmp_path, capsys):
    from lab import pipeline

    monkeypatch.setattr(pipeline, "REPO_ROOT", tmp_path)  # a checkout with no experiment folders
    assert pipeline.main(["sphere_mapping"]) == 0
    out = capsys.readouterr().out
    assert "sphere_mapping: not built yet" in out
    assert "reproduction summary" in out and "sphere_mapping     [not run]" in out
    assert json.loads((lab_outputs / "timings_quick.json").read_text())["sphere_mapping"] == "not built yet"
    assert (lab_outputs / "index.html").is_file()


def test_torch_and_tensorflow_import_together():
    code = textwrap.dedent("""
        import os
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import torch, torch._dynamo  # torch's side first: see tests/conftest.py
        import tensorflow as tf, keras
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.Adam(model.parameters())  # the step that crashed with TF loaded first
        model(torch.ones(3, 2)).sum().backward()
        optimizer.step()
        a = torch.ones(2, 2) @ torch.ones(2, 2)
        b = tf.matmul(tf.ones((2, 2)), tf.ones((2, 2)))
        assert float(a.sum()) == float(tf.reduce_sum(b)) == 8.0
        assert keras.layers.Dense(3)(tf.ones((2, 2))).shape == (2, 3)
        assert keras.backend.backend() == "tensorflow"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_lab_imports_no_framework():
    code = "import sys, lab, lab.gallery, lab.pipeline, lab.media, lab.robustness; print('torch' in sys.modules, 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(REPO_ROOT))
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_pipeline_runs_two_experiments_side_by_side_each_into_its_log(lab_outputs, monkeypatch, capsys):
    import threading

    from lab import pipeline

    both_running = threading.Barrier(2, timeout=30)  # fails unless the two experiments' scripts overlap

    def call(command, stdout=None, **kwargs):
        experiment, module = command[2].split(".")
        if module == "first":
            both_running.wait()
        stdout.write(f"output of {experiment}.{module}\n")
        return 1 if command[2] == "sphere_mapping.second" else 0

    monkeypatch.setattr(pipeline, "experiment_scripts", lambda experiment: [["first"], ["second"], ["third"]])
    monkeypatch.setattr(pipeline.subprocess, "call", call)
    assert pipeline.main(["pen_cap_vae", "sphere_mapping", "--workers", "2"]) == 1
    pen = (lab_outputs / "pen_cap_vae" / "pipeline.log").read_text()
    sphere = (lab_outputs / "sphere_mapping" / "pipeline.log").read_text()
    assert [line for line in pen.splitlines() if line.startswith("output")] == [
        "output of pen_cap_vae.first", "output of pen_cap_vae.second", "output of pen_cap_vae.third"]
    assert "sphere_mapping.second" in sphere and "sphere_mapping.third" not in sphere  # a failure skips the rest
    err = capsys.readouterr().err
    assert "output of sphere_mapping.second" in err and "!! sphere_mapping.second failed" in err  # the log's tail
    assert pipeline.main(["pen_cap_vae", "--workers", "0"]) == 2
