"""backtest: the leave-scenarios-out split of a user's own data, its refusals, and one small
end-to-end run (model and three baselines on the same split)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trafficsiam import synth
from trafficsiam.cli import main
from trafficsiam.config import build_config
from trafficsiam.errors import ConfigError, InputError, OutputError
from trafficsiam.measure import baselines
from trafficsiam.measure.backtest import backtest, make_split, without_time_column, write_split

UNSEEN = "error_type_3,error_type_4"


@pytest.fixture(scope="module")
def novel_data(tmp_path_factory):
    """3,000 sample records with the novel scenarios (good, error_type_1..4)."""
    path = tmp_path_factory.mktemp("bt") / "data.parquet"
    frame = synth.write(path, rows=3000, seed=11, novel=True)
    return path, frame


def _split_files(out):
    return (pd.read_parquet(out / "split" / "train.parquet"),
            pd.read_parquet(out / "split" / "test.parquet"))


def test_random_split_keeps_known_scenarios_on_both_sides(novel_data, tmp_path):
    path, frame = novel_data
    made = write_split(path, tmp_path, unseen=UNSEEN, test_share=0.3)
    train, test = _split_files(tmp_path)
    assert len(train) + len(test) == len(frame) == 3000
    assert list(train.columns) == list(frame.columns)  # every column kept
    assert set(train["id"]).isdisjoint(test["id"])
    counts = frame["scenario"].value_counts()
    for name in ("error_type_3", "error_type_4"):  # unseen: all in test, none trained on
        assert (train["scenario"] == name).sum() == 0
        assert (test["scenario"] == name).sum() == counts[name]
        assert made.info["scenarios"][name] == {"train": 0, "test": int(counts[name]),
                                                "unseen": True}
    for name in ("good", "error_type_1", "error_type_2"):
        n_test = int((test["scenario"] == name).sum())
        n_train = int((train["scenario"] == name).sum())
        assert n_train + n_test == counts[name]
        assert n_test == int(np.floor(0.3 * counts[name] + 0.5))  # stratified: 30 % each
        assert made.info["scenarios"][name] == {"train": n_train, "test": n_test,
                                                "unseen": False}
    assert made.info["rows"] == {"train": len(train), "test": len(test)}
    assert made.info["known"] == ["error_type_1", "error_type_2", "good"]
    # seeded: the same seed draws the same split, another seed another one
    again = write_split(path, tmp_path / "again", unseen=UNSEEN)
    other = write_split(path, tmp_path / "other", build_config({"train": {"seed": 9}}),
                        unseen=UNSEEN)
    assert (again.is_test == made.is_test).all()
    assert not (other.is_test == made.is_test).all()


def test_rare_known_scenario_keeps_a_record_on_each_side():
    labels = np.array(["good"] * 20 + ["rare"] * 3 + ["new"] * 2)
    made = make_split(labels, ["new"], "random", 0.1, seed=0)
    assert made.info["scenarios"]["rare"] == {"train": 2, "test": 1, "unseen": False}
    assert made.is_test[23:].all() and made.is_test[20:23].sum() == 1
    with pytest.raises(InputError, match="known scenario 'rare' has 3 records"):
        make_split(labels, ["new"], "random", 0.5, seed=0)


def test_time_split_puts_the_latest_records_in_test(novel_data, tmp_path):
    path, frame = novel_data
    # rows shuffled, so that row order is not time order; times as ISO text in a CSV
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled["timestamp"] = shuffled["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    csv = tmp_path / "data.csv"
    shuffled.to_csv(csv, index=False)
    made = write_split(csv, tmp_path / "t", unseen="error_type_3", split="time",
                       time_column="timestamp")
    train, test = _split_files(tmp_path / "t")
    train_t = pd.to_datetime(train["timestamp"], utc=True, format="ISO8601")
    test_t = pd.to_datetime(test["timestamp"], utc=True, format="ISO8601")
    for name in ("good", "error_type_1", "error_type_2", "error_type_4"):
        a, b = train_t[train["scenario"] == name], test_t[test["scenario"] == name]
        assert len(a) and len(b) and b.min() >= a.max(), name  # the latest to test
        assert len(b) == int(np.floor(0.3 * (len(a) + len(b)) + 0.5))
    assert (test["scenario"] == "error_type_3").sum() == (frame["scenario"] == "error_type_3").sum()
    assert made.info["kind"] == "time" and made.info["time_column"] == "timestamp"
    # the same split from the datetime column of the parquet file (another row order)
    write_split(path, tmp_path / "p", unseen="error_type_3", split="time",
                time_column="timestamp")
    _, test_p = _split_files(tmp_path / "p")
    assert set(test_p["id"]) == set(test["id"])


def test_time_split_without_a_column_follows_row_order():
    labels = np.array(["good", "bad", "good", "good", "bad", "good", "bad", "new", "good"])
    made = make_split(labels, ["new"], "time", 0.34, seed=0)
    # good: rows 0 2 3 5 8 -> the last 2 (8 and 5); bad: rows 1 4 6 -> the last (6)
    assert np.flatnonzero(made.is_test).tolist() == [5, 6, 7, 8]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"unseen": "error_type_9"}, InputError,
     "--unseen 'error_type_9' is not a scenario in column 'scenario'"),
    ({"unseen": "good"}, ConfigError, "--unseen 'good' is the good-traffic label"),
    ({"unseen": " , "}, ConfigError, "--unseen names no scenario"),
    ({"unseen": "error_type_1,error_type_2,error_type_3,error_type_4"}, ConfigError,
     "leaves no known failure scenario"),
    ({"unseen": "error_type_3", "test_share": 1.0}, ConfigError, "--test-share must be between"),
    ({"unseen": "error_type_3", "time_column": "timestamp"}, ConfigError,
     "--time-column timestamp orders records for --split time"),
    ({"unseen": "error_type_3", "split": "time", "time_column": "when"}, InputError,
     "--time-column 'when' not found"),
])
def test_write_split_refuses_bad_arguments_before_writing(novel_data, tmp_path, kwargs, error,
                                                          message):
    path, _ = novel_data
    with pytest.raises(error, match=message):
        write_split(path, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("unseen, message", [
    ("error_type_3,nope", "error: backtest: --unseen 'nope' is not a scenario in column "
                          "'scenario' (scenarios: error_type_1, error_type_2, error_type_3, "
                          "error_type_4, good)"),
    ("good", "error: backtest: --unseen 'good' is the good-traffic label"),
])
def test_cli_refuses_bad_unseen_in_one_line(novel_data, tmp_path, unseen, message):
    path, _ = novel_data
    result = CliRunner().invoke(main, ["backtest", str(path), "--unseen", unseen,
                                       "--out", str(tmp_path / "bt")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not (tmp_path / "bt").exists()


def test_cli_names_another_label_columns_values(novel_data, tmp_path):
    path, frame = novel_data
    renamed = frame.rename(columns={"scenario": "failure"})
    renamed["failure"] = renamed["failure"].replace({"good": "normal"})
    data = tmp_path / "renamed.parquet"
    renamed.to_parquet(data, index=False)
    result = CliRunner().invoke(main, [
        "backtest", str(data), "--label-column", "failure", "--good-label", "normal",
        "--unseen", "good", "--out", str(tmp_path / "bt")])
    assert result.exit_code == 2
    assert "--unseen 'good' is not a scenario in column 'failure'" in result.output
    assert "normal" in result.output


@pytest.mark.slow
def test_backtest_end_to_end_writes_the_tables(novel_data, tmp_path, monkeypatch):
    path, _ = novel_data
    out = tmp_path / "bt"
    fitted = []
    run_baseline = baselines.run
    monkeypatch.setattr(baselines, "run", lambda name, *a: fitted.append(name)
                        or run_baseline(name, *a))
    result = CliRunner().invoke(main, [
        "backtest", str(path), "--unseen", UNSEEN, "--out", str(out),
        "--ignore", "id", "--ignore", "timestamp", "--epochs", "2",
        "--set", "train.steps_per_epoch=10", "--set", "cluster.max_points=1500",
    ])
    assert result.exit_code == 0, result.output
    # each baseline fitted once: its curve at the model's rate comes from compare's scores
    assert fitted == ["isolation-forest", "knn", "random-forest"]
    assert f"report: {out / 'comparison.html'}" in result.output
    for name in ("lossless-triplet", "isolation-forest", "knn", "random-forest"):
        assert name in result.output

    methods = ["lossless-triplet", "isolation-forest", "knn", "random-forest"]
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison["method"]) == methods
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["method"]) == methods and set(runs["seed"]) == {0}
    assert (out / "comparison.html").is_file()
    assert (out / "runs" / "lossless-triplet-seed0" / "metrics.json").is_file()

    table = pd.read_csv(out / "backtest.csv")
    assert list(table["method"]) == methods
    model = table.iloc[0]
    assert model["kind"] == "loss"
    # the baselines' own metrics are compare's run's
    for col in ("good_false_alarm", "novel_called_good", "novel_auroc"):
        assert np.allclose(table[col], runs[col], equal_nan=True), col
    assert (table["model_false_alarm"] == model["good_false_alarm"]).all()
    at_fpr = table["novel_called_good_at_model_false_alarm"]
    assert at_fpr.between(0, 1).all()
    assert model["novel_called_good_at_model_false_alarm"] == model["novel_called_good"]
    best = at_fpr.iloc[1:].min()
    assert bool(model["on_or_above_best_baseline"]) == (model["novel_called_good"] <= best)
    assert table["on_or_above_best_baseline"].iloc[1:].isna().all()

    info = json.loads((out / "backtest.json").read_text())
    split = info["split"]
    assert split["kind"] == "random" and split["test_share"] == 0.3
    assert split["unseen"] == ["error_type_3", "error_type_4"]
    train, test = _split_files(out)
    assert split["rows"] == {"train": len(train), "test": len(test)}
    assert info["novel_scenarios"] == ["error_type_3", "error_type_4"]
    (seed,) = info["seeds"]
    assert seed["model"]["good_false_alarm"] == pytest.approx(model["good_false_alarm"])
    assert set(seed["baselines"]) == set(methods[1:])
    assert seed["best_baseline"] in methods[1:]
    assert seed["best_baseline_novel_called_good"] == pytest.approx(best)
    side = "on or above" if seed["on_or_above_best_baseline"] else "under"
    assert (f"the best baseline, {seed['best_baseline']}, calls {best:.3f} good at that false "
            f"alarm rate: the model is {side} {seed['best_baseline']}'s curve") in result.output
    assert "one model: a refit with another training seed moves its point; --seeds 3" in (
        result.output)
    records = pd.read_parquet(out / "runs" / "lossless-triplet-seed0" / "records.parquet")
    assert len(records) == len(test)


def test_a_numeric_time_column_orders_the_split_and_is_no_feature(novel_data, tmp_path):
    # a time in seconds was a feature: the later test records looked unlike good traffic
    path, frame = novel_data
    data = tmp_path / "timed.parquet"
    frame.assign(t=frame["timestamp"].astype("int64") // 10**9).to_parquet(data, index=False)
    out = tmp_path / "bt"
    result = CliRunner().invoke(main, [
        "backtest", str(data), "--unseen", UNSEEN, "--out", str(out), "--split", "time",
        "--time-column", "t", "--ignore", "id", "--ignore", "timestamp", "--epochs", "1",
        "--set", "train.steps_per_epoch=5", "--set", "cluster.max_points=1500", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "models" / "lossless-triplet-seed0" / "manifest.json")
                          .read_text())
    assert "t" not in manifest["schema"]["numeric"] + manifest["schema"]["categorical"]
    assert "t" in manifest["config"]["data"]["ignore"]
    # a time column configured as a feature stays one
    cfg = build_config({"data": {"numeric": ["t", "bytes_in"]}})
    assert without_time_column(cfg, "t") is cfg
    assert without_time_column(build_config({}), "t").data.ignore == ("t",)


def test_backtest_refuses_zero_seeds(novel_data, tmp_path):
    path, _ = novel_data
    with pytest.raises(ConfigError, match="--seeds must be at least 1, got 0"):
        backtest(path, tmp_path / "out", unseen="error_type_3", seeds=0)
    assert not (tmp_path / "out").exists()


def test_backtest_refuses_a_folder_of_the_users_before_writing_the_split(novel_data, tmp_path):
    path, _ = novel_data
    out = tmp_path / "mine"
    out.mkdir()
    (out / "backtest.csv").write_text("my own table\n")
    with pytest.raises(OutputError, match="holds 'backtest.csv', which no earlier comparison"):
        backtest(path, out, unseen="error_type_3")
    assert sorted(p.name for p in out.iterdir()) == ["backtest.csv"]
