"""CLI of evaluate and compare: exit codes and the one-line messages."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from trafficsiam import synth
from trafficsiam.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_evaluate_prints_metrics(fitted, tmp_path):
    result, _ = fitted
    test = tmp_path / "t.parquet"
    synth.write(test, rows=600, seed=8, novel=True)
    res = run("evaluate", result.path, test, "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    assert f"evaluated model {result.manifest['model_id']} on 600 records" in res.output
    assert "novel_auroc" in res.output and "map_at_r" in res.output
    # the operating points, one line each, the run's own marked
    lines = res.output.splitlines()
    assert sum(line.endswith("<- this run") for line in lines) == 1
    assert any(line.strip().startswith("0.05 ") for line in lines)
    quiet = run("evaluate", result.path, test, "--out", tmp_path / "ev2", "--quiet")
    assert quiet.exit_code == 0 and quiet.output == ""
    assert (tmp_path / "ev2" / "metrics.json").is_file()


def test_evaluate_set_changes_the_score_settings_of_the_run(fitted, tmp_path):
    """--set score.* applies to the evaluation's scoring: another anomaly distance moves
    the ranking metrics and leaves the verdicts alone; other sections are refused."""
    import json

    result, _ = fitted
    test = tmp_path / "t.parquet"
    synth.write(test, rows=600, seed=8, novel=True)
    assert run("evaluate", result.path, test, "--out", tmp_path / "a", "-q").exit_code == 0
    res = run("evaluate", result.path, test, "--out", tmp_path / "b", "-q",
              "--set", "score.anomaly_saturation=0.25")
    assert res.exit_code == 0, res.output
    res = run("evaluate", result.path, test, "--out", tmp_path / "d", "-q",
              "--set", "score.false_alarm_rate=0.2")
    assert res.exit_code == 0, res.output
    a, b, d = (json.loads((tmp_path / x / "metrics.json").read_text())["metrics"]
               for x in "abd")
    assert a["novel_auroc"] != b["novel_auroc"]  # another ranking
    assert a["known_accuracy"] == pytest.approx(b["known_accuracy"], abs=0.05)
    assert d["good_false_alarm"] > a["good_false_alarm"]  # another rate
    bad = run("evaluate", result.path, test, "--out", tmp_path / "c", "--set", "train.epochs=2")
    assert bad.exit_code == 2 and "only score.* keys" in bad.output


def test_evaluate_missing_model_is_one_line_exit_2(tmp_path):
    test = tmp_path / "t.parquet"
    synth.write(test, rows=100, seed=8)
    res = run("evaluate", tmp_path / "nope", test, "--out", tmp_path / "ev")
    assert res.exit_code == 2
    assert res.output == (f"error: {tmp_path / 'nope'}: no such model folder; "
                          "pass the --out folder of a fit\n")


def test_evaluate_test_without_labels_is_one_line_exit_2(fitted, tmp_path):
    result, _ = fitted
    test = tmp_path / "t.parquet"
    synth.generate(rows=100, seed=8).drop(columns=["scenario"]).to_parquet(test)
    res = run("evaluate", result.path, test, "--out", tmp_path / "ev")
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert res.output.startswith(f"error: {test}: label column 'scenario' not found")


def test_compare_unknown_loss_is_one_line_exit_2(tmp_path):
    train = tmp_path / "d.parquet"
    synth.write(train, rows=100, seed=1)
    res = run("compare", train, "--test", train, "--losses", "lossless-triplet,foo",
              "--out", tmp_path / "c")
    assert res.exit_code == 2
    assert res.output.startswith("error: loss.name 'foo' is not a known loss; choose one of: ")
    assert res.output.count("\n") == 1 and not (tmp_path / "c").exists()


def test_compare_bad_seeds_and_baselines(tmp_path):
    train = tmp_path / "d.parquet"
    synth.write(train, rows=100, seed=1)
    res = run("compare", train, "--test", train, "--seeds", 0, "--out", tmp_path / "c")
    assert res.exit_code == 2 and "--seeds must be at least 1, got 0" in res.output
    res = run("compare", train, "--test", train, "--baselines", "knn,svm", "--out",
              tmp_path / "c")
    assert res.exit_code == 2 and "baseline 'svm' is not known" in res.output


def test_compare_runs_quietly_with_fit_options(tmp_path):
    train, test = tmp_path / "d.parquet", tmp_path / "t.parquet"
    synth.write(train, rows=1200, seed=1)
    synth.write(test, rows=800, seed=2, novel=True)
    res = run("compare", train, "--test", test, "--losses", "hinge", "--seeds", 1,
              "--baselines", "knn", "--ignore", "id", "--ignore", "timestamp",
              "--epochs", 1, "--set", "train.steps_per_epoch=5",
              "--set", "cluster.max_points=1000", "--out", tmp_path / "c", "--quiet")
    assert res.exit_code == 0, res.output
    # warnings only (a scenario without a cluster after one epoch): no progress, no table
    assert all(line.startswith("warning: ") for line in res.output.splitlines())
    assert (tmp_path / "c" / "comparison.csv").is_file()
