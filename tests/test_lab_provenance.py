"""Provenance in run.json, the environment's seed and thread overrides, and lab.robustness's table."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from lab import gallery, robustness
from lab.run import NUMERICS_ENVIRONMENT
from tests.conftest import REPO_ROOT, run_module

# A script as small as a script can be: the frameworks the experiments use, loaded, then one run.
TINY_SCRIPT = textwrap.dedent("""
    import sys
    import numba  # noqa: F401
    import torch  # noqa: F401
    from lab import exit_on_lab_error, start_run

    SEED = 3
    TORCH_THREADS = 1

    @exit_on_lab_error
    def main():
        run = start_run("probe", globals(), sys.argv[1:], framework="torch")
        run.finish({"torch_threads": torch.get_num_threads()})

    if __name__ == "__main__":
        main()
""")


def _run_tiny(tmp_path, **variables):
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "tiny.py"
    script.write_text(TINY_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key not in NUMERICS_ENVIRONMENT}
    env.update(variables, PYTHONPATH=str(REPO_ROOT), LAB_OUTPUT_ROOT=str(tmp_path / "outputs"))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    record_path = tmp_path / "outputs" / "probe" / "tiny" / "run.json"
    return result, (json.loads(record_path.read_text()) if record_path.is_file() else None)


def test_run_json_records_the_instruction_sets_in_use(tmp_path):
    result, record = _run_tiny(tmp_path / "plain")
    assert result.returncode == 0, result.stderr[-2000:]
    machine = record["machine"]
    assert machine["cpu"] and machine["usable_cpus"] >= 1
    host_capability = machine["torch"]["cpu_capability"]
    assert machine["numba"]["target_cpu"] == machine["numba"]["host_cpu"]
    assert "numba" in record["versions"] and "llvmlite" in record["versions"]

    result, record = _run_tiny(tmp_path / "generic", ATEN_CPU_CAPABILITY="default", NUMBA_CPU_NAME="generic")
    assert result.returncode == 0, result.stderr[-2000:]
    machine = record["machine"]
    assert machine["torch"]["cpu_capability"] == "DEFAULT"
    assert machine["numba"]["target_cpu"] == "generic"
    assert machine["environment"] == {"ATEN_CPU_CAPABILITY": "default", "NUMBA_CPU_NAME": "generic"}
    if "avx2" in machine["vector_extensions"]:  # on such a host torch dispatches to AVX2 or wider unasked
        assert host_capability != "DEFAULT"


def test_environment_shifts_seed_and_sets_threads(tmp_path):
    result, record = _run_tiny(tmp_path / "shifted", LAB_SEED_OFFSET="2", LAB_TORCH_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert record["seed"] == 5 and record["constants"]["SEED"] == 5
    assert record["constants"]["TORCH_THREADS"] == 2 and record["metrics"]["torch_threads"] == 2
    assert record["machine"]["torch"]["threads"] == 2

    result, record = _run_tiny(tmp_path / "bad", LAB_SEED_OFFSET="one")
    assert result.returncode == 2 and record is None
    assert result.stderr.strip().splitlines()[-1].startswith("error: environment variable LAB_SEED_OFFSET='one'")
    assert "Traceback" not in result.stderr


def _fake_pipeline(figures):
    """A stand-in for `python -m lab.pipeline` that writes one run.json with the environment's figures."""
    calls = []

    def call(command, cwd, env, stdout, stderr):
        name = env["LAB_OUTPUT_ROOT"].rsplit(os.sep, 1)[-1]
        calls.append(name)
        folder = os.path.join(env["LAB_OUTPUT_ROOT"], "sphere_mapping", "train")
        os.makedirs(folder)
        claims = [{"claim": claim, "measured": measured, "reproduced": ok, "full_profile": ""}
                  for claim, (measured, ok) in figures[name].items()]
        with open(os.path.join(folder, "run.json"), "w") as record:
            json.dump({"script": "train", "started_at": "2026-01-01T00:00:00", "claims": claims}, record)
        return 0

    return call, calls


def test_robustness_table_ranges_and_what_holds_everywhere(lab_outputs, monkeypatch, capsys):
    figures = {
        "reference": {"wraps": ("coverage 0.71, hole 50 deg", True), "closes": ("hole 12 deg", False)},
        "numba-generic": {"wraps": ("coverage 0.69, hole 61 deg", True), "closes": ("hole 3 deg", True)},
        "seed+1": {"wraps": ("coverage 0.75, hole 44 deg", True), "closes": ("a ribbon", False)},
    }
    call, calls = _fake_pipeline(figures)
    monkeypatch.setattr(robustness.subprocess, "call", call)
    monkeypatch.setattr(gallery, "declared_claims", lambda experiment: [])
    assert robustness.main(["sphere_mapping", "--envs", "reference", "numba-generic", "seed+1"]) == 0
    assert calls == ["reference", "numba-generic", "seed+1"]
    report = json.loads((lab_outputs / "robustness" / "robustness.json").read_text())
    rows = {row["claim"]: row for row in report["claims"]}
    assert rows["wraps"]["holds_everywhere"] is True
    assert rows["wraps"]["range"] == "coverage 0.71 [0.69-0.75], hole 50 [44-61] deg"
    assert rows["closes"]["holds_everywhere"] is False
    assert rows["closes"]["environments"]["numba-generic"] == {"measured": "hole 3 deg", "verdict": "reproduced"}
    assert rows["closes"]["range"] == "first number 7.5 [3-12]"
    markdown = (lab_outputs / "robustness" / "robustness.md").read_text()
    assert "| sphere_mapping | wraps | yes (3/3) | coverage 0.71 [0.69-0.75], hole 50 [44-61] deg |" in markdown
    assert "| sphere_mapping | closes | no (1/3) | first number 7.5 [3-12] | hole 12 deg (NOT reproduced) |" in markdown
    assert "1 of 2 claims hold in every environment" in capsys.readouterr().out
    # The gallery says it too, after the summary.
    page = gallery.build_gallery(lab_outputs).read_text()
    section = page[page.index('<section id="robustness">'):]
    assert page.index('id="summary"') < page.index('id="robustness"')
    assert '<a href="#robustness">' in page.split("</nav>")[0]
    assert "<td>wraps</td><td class=\"verdict reproduced\">yes (3/3)</td><td>coverage 0.71 [0.69-0.75]" in section
    assert "<td>closes</td><td class=\"verdict not-reproduced\">no (1/3)</td>" in section

    # Each environment's result was kept as it ended: a rerun measures nothing again...
    assert robustness.main(["sphere_mapping", "--envs", "reference", "numba-generic", "seed+1"]) == 0
    assert calls == ["reference", "numba-generic", "seed+1"]
    # ... and an environment that never finished (no claims.json) is measured on the next run.
    (lab_outputs / "robustness" / "seed+1" / "claims.json").unlink()
    shutil.rmtree(lab_outputs / "robustness" / "seed+1" / "sphere_mapping")
    assert robustness.main(["sphere_mapping", "--envs", "reference", "numba-generic", "seed+1"]) == 0
    assert calls == ["reference", "numba-generic", "seed+1", "seed+1"]


def test_robustness_report_counts_only_the_environments_that_ran_the_experiment(lab_outputs, monkeypatch, capsys):
    figures = {"reference": {"wraps": ("coverage 0.71", True)}, "numba-generic": {"wraps": ("coverage 0.69", True)}}
    call, calls = _fake_pipeline(figures)
    monkeypatch.setattr(robustness.subprocess, "call", call)
    monkeypatch.setattr(gallery, "declared_claims", lambda experiment: [])
    assert robustness.main(["sphere_mapping", "--envs", "reference"]) == 0
    # Measured with two experiments, then asked for one: reused, not run again.
    (lab_outputs / "robustness" / "numba-generic").mkdir(parents=True)
    (lab_outputs / "robustness" / "numba-generic" / "claims.json").write_text(json.dumps({
        "environment": "numba-generic", "variables": {"NUMBA_CPU_NAME": "generic"}, "returncode": 0,
        "experiments": ["sphere_mapping", "gan_basics"], "wall_time_s": 1.0,
        "claims": {"sphere_mapping": [{"claim": "wraps", "measured": "coverage 0.5", "verdict": "not reproduced",
                                       "source": "train"}], "gan_basics": []}}))
    assert robustness.main(["sphere_mapping", "--envs", "reference", "numba-generic"]) == 0
    assert calls == ["reference"]
    # A report of everything measured, without running anything: the claim is judged over both.
    assert robustness.main(["sphere_mapping", "--report"]) == 0
    rows = json.loads((lab_outputs / "robustness" / "robustness.json").read_text())["claims"]
    assert [(row["claim"], row["reproduced_in"], row["ran_in"], row["holds_everywhere"]) for row in rows] == [
        ("wraps", 1, 2, False)]
    assert calls == ["reference"]
    assert robustness.main(["no_such_experiment", "--report"]) == 2


def test_robustness_rejects_unknown_environment(capsys):
    with pytest.raises(SystemExit, match="unknown environment.*no-such"):
        robustness.main(["sphere_mapping", "--envs", "reference", "no-such"])


def test_robustness_outputs_stay_out_of_the_main_gallery(lab_outputs):
    folder = lab_outputs / "robustness" / "reference" / "sphere_mapping" / "train"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"script": "train", "claims": [{"claim": "x", "reproduced": True}]}))
    assert "robustness" not in gallery.collect_claims(lab_outputs)
    assert "robustness" not in gallery.build_gallery(lab_outputs).read_text().split("<nav>")[1].split("</nav>")[0]


@pytest.mark.slow
def test_robustness_reruns_sphere_mapping_in_two_environments(lab_outputs):
    result = run_module("lab.robustness", "sphere_mapping", "--envs", "reference", "numba-generic",
                        env_root=lab_outputs, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((lab_outputs / "robustness" / "robustness.json").read_text())
    assert [env["environment"] for env in report["environments"]] == ["reference", "numba-generic"]
    claims = [row for row in report["claims"] if row["experiment"] == "sphere_mapping"]
    assert len(claims) >= 4
    for row in claims:
        assert set(row["environments"]) == {"reference", "numba-generic"}
        assert all(cell["measured"] for cell in row["environments"].values()), row
        assert row["holds_everywhere"] == all(c["verdict"] == "reproduced" for c in row["environments"].values())
    # The environment reached the scripts: the generic run's records say numba compiled for "generic".
    record = json.loads((lab_outputs / "robustness" / "numba-generic" / "sphere_mapping" / "train" / "run.json").read_text())
    assert record["machine"]["numba"]["target_cpu"] == "generic"
    assert "robustness" in result.stdout and "holds everywhere" in result.stdout


def test_robustness_ranges_read_a_dash_between_numbers_as_a_range_not_a_sign():
    figures = ["27/32 seeds (interval 68-93%), gain -0.2%", "22/32 seeds (interval 51-82%), gain -0.4%"]
    assert robustness.numeric_range(figures) == ("24.5 [22-27]/32 seeds (interval 59.5 [51-68]-87.5 [82-93]%), "
                                                 "gain -0.3 [-0.4--0.2]%")


def test_robustness_keeps_one_claim_checked_by_two_runs_apart():
    def result(environment, first, second):
        rows = [{"claim": "draws digits", "measured": first, "verdict": "reproduced", "source": "gan"},
                {"claim": "draws digits", "measured": second, "verdict": "reproduced", "source": "gan_penalty"}]
        return {"environment": environment, "experiments": ["gan_basics"], "claims": {"gan_basics": rows}}

    table = robustness.build_table([result("reference", "2.57x", "1.91x"), result("seed+10", "2.25x", "1.97x")])
    assert [(row["claim"], row["range"]) for row in table] == [
        ("draws digits [gan]", "2.41 [2.25-2.57]x"), ("draws digits [gan_penalty]", "1.94 [1.91-1.97]x")]
