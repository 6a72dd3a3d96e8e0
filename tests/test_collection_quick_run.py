"""After the whole quick run (`./run.sh`): curves for every training script, claims for every
experiment, and the gallery opening with them. Slow: the five experiments' quick
profiles, about 6 minutes on 2 quiet cores (`./test.sh -m slow -k quick_run`)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from lab.paths import EXPERIMENTS
from tests.conftest import REPO_ROOT

# The scripts of the quick pipeline that train (an optimisation loop): each must leave
# scalars.csv and TensorBoard event files beside its run.json (run.log_scalars).
TRAINING_SCRIPTS = {
    "pen_cap_vae": {"train", "test"},
    "beauty_predictor": {"train_predictor", "train_improver"},
    "sphere_mapping": {"train", "experiments"},
    "vqgan_clip": {"generate", "evaluate"},
    "gan_basics": {"evaluator", "gan", "cgan", "autoencoder", "vae", "adversarial"},
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick") / "outputs"
    env = dict(os.environ, LAB_OUTPUT_ROOT=str(root))
    result = subprocess.run([sys.executable, "-m", "lab.pipeline"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=3600)
    return root, result


def _records(root, experiment):
    return [(path, json.loads(path.read_text())) for path in (root / experiment).rglob("run.json")
            if "checkpoints" not in path.parts]


@pytest.mark.slow
def test_quick_run_passes(quick_run):
    _, result = quick_run
    assert result.returncode == 0, result.stderr[-4000:]
    assert "reproduction summary" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_training_script_leaves_curves(quick_run, experiment):
    root, _ = quick_run
    records = _records(root, experiment)
    # A run is named by its script, or by its folder (cgan.py runs gan.py's main as "gan" into cgan/).
    names = [{record["script"], path.parent.name} for path, record in records]
    ran = set().union(*names)
    assert TRAINING_SCRIPTS[experiment] <= ran, f"{experiment}: no run.json for {TRAINING_SCRIPTS[experiment] - ran}"
    missing = []
    for (path, record), name in zip(records, names, strict=True):
        if not name & TRAINING_SCRIPTS[experiment]:
            continue
        csv_path = path.parent / "scalars.csv"
        rows = list(csv.DictReader(csv_path.open())) if csv_path.is_file() else []
        events = list(path.parent.glob("events.out.tfevents.*"))
        if len({row["step"] for row in rows}) < 2 or not events:
            missing.append(f"{path.parent.name} ({record['script']}: {len(rows)} csv rows, {len(events)} event files)")
    assert not missing, f"{experiment}: training runs without curves: {', '.join(missing)}"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_records_two_claims(quick_run, experiment):
    root, _ = quick_run
    claims = [claim for _, record in _records(root, experiment) for claim in record.get("claims") or []]
    assert len(claims) >= 2, f"{experiment}: {len(claims)} claims in its run.json files (run.add_claim)"
    for claim in claims:
        assert claim["claim"] and claim["measured"], claim
        assert claim["reproduced"] in (True, False), f"the quick run ran it, so it has a verdict: {claim}"
    page = (root / "index.html").read_text()
    assert page.count(f'<tr class="claim" data-experiment="{experiment}">') >= 2
