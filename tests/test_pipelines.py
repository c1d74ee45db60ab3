"""The scheduler scripts in pipelines/, run as a scheduler runs them: subprocesses whose exit
codes, stdout and stderr are the interface."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trafficsiam import synth

REPO = Path(__file__).resolve().parents[1]
ALERT = 3


def run(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    # One torch thread: these runs are tiny, and on a busy test machine more threads only
    # fight each other (training took twice as long with the default).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, f"pipelines/{script}", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labelled") / "train.parquet"
    synth.generate(3000, seed=5).to_parquet(path, index=False)
    return path


def test_nightly_alerts_on_new_types_then_skips_on_rerun(fitted, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "prod").symlink_to(fitted[0].path)
    landing = tmp_path / "landing"
    landing.mkdir()
    # 20,000 records carry enough of the novel scenarios for candidates with the tiny model.
    synth.generate(20_000, seed=1, novel=True).to_parquet(landing / "b1.parquet", index=False)
    args = (models / "prod", f"{landing}/*.parquet", "--out", tmp_path / "scored",
            "--alert-exit-code", ALERT, "--wait", 5)

    first = run("score_nightly.py", *args)
    assert first.returncode == ALERT, first.stderr
    assert "candidate new error type(s): new-1 (" in first.stdout
    assert "Traceback" not in first.stderr
    scored = tmp_path / "scored"
    assert {"b1.parquet", "summary.json", "clusters.csv", "new_types.csv"} <= {
        p.name for p in scored.iterdir()}
    # The model path recorded is the resolved folder, not the prod link.
    assert str(fitted[0].path.resolve()) in first.stdout

    last = first.stdout.strip().splitlines()[-1].split()
    assert last[0] == "trafficsiam-run"
    fields = dict(f.split("=", 1) for f in last[1:])
    assert fields["status"] == "alert" and fields["exit"] == str(ALERT)
    assert fields["candidates"].startswith("new-1:") and fields["new_this_run"] != "none"
    assert int(fields["records"]) == 20_000

    again = run("score_nightly.py", *args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("nothing new to score: 1 input(s)")
    assert again.stdout.strip().splitlines()[-1] == "trafficsiam-run exit=0 status=nothing_new"


def test_nightly_bad_model_is_one_line_exit_2(tmp_path):
    data = tmp_path / "b.parquet"
    synth.generate(100, seed=2).to_parquet(data, index=False)
    res = run("score_nightly.py", tmp_path / "no-such-model", data, "--out", tmp_path / "o")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-model" in lines[0]


def test_nightly_refuses_an_ambiguous_alert_code(tmp_path):
    res = run("score_nightly.py", tmp_path, tmp_path, "--out", tmp_path, "--alert-exit-code", 75)
    assert res.returncode == 2 and "--alert-exit-code" in res.stderr


def test_retrain_switches_prod_then_a_failed_gate_leaves_it(labelled, tmp_path):
    models = tmp_path / "models"
    tiny = ("--set", "train.epochs=2", "--set", "train.steps_per_epoch=10",
            "--set", "data.ignore=[id,timestamp]", "--models", models, "--quiet")

    ok = run("retrain.py", labelled, *tiny, "--min-purity", 0.5)
    assert ok.returncode == 0, ok.stderr
    stamped = [p for p in models.iterdir() if not p.name.startswith(".") and p.name != "prod"]
    assert len(stamped) == 1 and (stamped[0] / "manifest.json").is_file()
    assert os.readlink(models / "prod") == stamped[0].name
    assert (models / "prod").resolve() == stamped[0].resolve()

    failed = run("retrain.py", labelled, *tiny, "--min-purity", 1.01)
    assert failed.returncode == 1
    assert "gate failed" in failed.stderr and "Traceback" not in failed.stderr
    assert os.readlink(models / "prod") == stamped[0].name
