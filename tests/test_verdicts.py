"""The verdict's promises on sample data (issue 16): the false-alarm rate is what fit
measured, a known scenario needs no cluster of its own, good-looking neighbours do not
excuse inputs unlike good traffic, and one new failure in a small batch is one candidate
that raises the alert."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trafficsiam import api, synth
from trafficsiam.cli import main
from trafficsiam.config import build_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verdicts")
    train = synth.generate(rows=20_000, seed=1)
    # a rare known failure: error_type_2 records thinned to 40, too few for a cluster of
    # their own at the default min_cluster_size (0.5 % of 18,000: 90)
    rare = np.flatnonzero(train["scenario"].to_numpy() == "error_type_2")
    rare_keep = np.zeros(len(train), dtype=bool)
    rare_keep[rare[:40]] = True
    keep = (train["scenario"] != "error_type_2").to_numpy() | rare_keep
    train[keep].reset_index(drop=True).to_parquet(folder / "train.parquet", index=False)
    cfg = build_config({"data": {"ignore": ["id", "timestamp"]},
                        "train": {"epochs": 10}})
    fitted = api.fit(folder / "train.parquet", folder / "model", cfg, quiet=True)
    return fitted, folder


def _score(model, frame: pd.DataFrame, folder, name: str, **cfg) -> pd.DataFrame:
    fitted, _ = model
    frame.to_parquet(folder / f"{name}.parquet", index=False)
    config = build_config({"score": cfg}).score if cfg else None
    run = api.score(fitted.path, folder / f"{name}.parquet", folder / f"out-{name}",
                    config=config, quiet=True)
    return pd.read_parquet(run.outputs[0][1])


def test_good_traffic_is_flagged_at_the_rate_fit_measured(model, tmp_path) -> None:
    fitted, _ = model
    cal = fitted.manifest["calibration"]
    measured = {r["rate"]: r["flagged"] for r in cal["held_out_good"]}
    fresh = synth.generate(rows=30_000, seed=11)
    good = fresh[fresh["scenario"] == "good"].reset_index(drop=True)
    for rate in (0.01, 0.05):
        scored = _score(model, good, tmp_path, f"good-{rate}", false_alarm_rate=rate)
        alarm = float((scored["ts_verdict"] != "good").mean())
        assert alarm <= 0.05 + (rate - 0.01), rate
        assert abs(alarm - measured[rate]) <= 0.01, (rate, alarm, measured[rate])
        # ts_p_good is what decided: good records called good have p above the rate
        called = scored["ts_verdict"] == "good"
        assert (scored.loc[called, "ts_p_good"] > rate).all()


def test_a_known_scenario_without_a_cluster_is_still_known(model, tmp_path) -> None:
    fitted, _ = model
    clusters = fitted.manifest["clusters"]["table"]
    assert "error_type_2" not in {row["scenario"] for row in clusters if row["cluster"] >= 0}
    fresh = synth.generate(rows=20_000, seed=12)
    rare = fresh[fresh["scenario"] == "error_type_2"].reset_index(drop=True)
    scored = _score(model, rare, tmp_path, "rare")
    assert (scored["ts_scenario"] == "error_type_2").mean() >= 0.8
    assert (scored["ts_verdict"] == "known_error").mean() >= 0.7
    assert (scored["ts_verdict"] == "good").mean() <= 0.05


def test_good_neighbours_do_not_excuse_inputs_unlike_good_traffic(model, tmp_path) -> None:
    """Good records with KPIs far beyond anything good traffic did are not called good
    (whether their neighbours vote a failure or vote good and ts_p_good flags them: the
    second case with a controlled embedding is in test_calibrate.py)."""
    fresh = synth.generate(rows=10_000, seed=13)
    good = fresh[fresh["scenario"] == "good"].head(500).reset_index(drop=True)
    odd = good.copy()
    odd["retransmissions"] = 5_000.0
    odd["error_rate"] = 0.9
    plain = _score(model, good, tmp_path, "plain")
    scored = _score(model, odd, tmp_path, "odd")
    assert (plain["ts_verdict"] == "good").mean() >= 0.95
    assert (scored["ts_verdict"] == "good").mean() <= 0.05
    assert (scored["ts_p_good"] < 0.01).mean() >= 0.95


def test_one_new_failure_in_a_small_batch_is_one_candidate(model, tmp_path) -> None:
    fitted, _ = model
    fresh = synth.generate(rows=20_000, seed=14, novel=True)
    good = fresh[fresh["scenario"] == "good"].head(2700)
    new = fresh[fresh["scenario"] == "error_type_3"].head(300)
    pd.concat([good, new]).to_parquet(tmp_path / "batch.parquet", index=False)
    known = fresh[fresh["scenario"].isin(["good", "error_type_1"])].head(3000)
    known.to_parquet(tmp_path / "known.parquet", index=False)
    runner = CliRunner()
    res = runner.invoke(main, ["score", str(fitted.path), str(tmp_path / "batch.parquet"),
                               "--out", str(tmp_path / "s1"), "--alert-exit-code", "3",
                               "-q"])
    assert res.exit_code == 3, res.output
    summary = json.loads((tmp_path / "s1" / "summary.json").read_text())
    assert [t["new_type"] for t in summary["new_types"]] == ["new-1"]
    scored = pd.read_parquet(tmp_path / "s1" / "batch.parquet")
    grouped = scored["ts_new_type"].notna()
    assert (scored.loc[grouped, "scenario"] == "error_type_3").mean() >= 0.8
    novel = scored["scenario"] == "error_type_3"
    flagged = novel & scored["ts_verdict"].isin(["new_error", "outlier"])
    assert (scored.loc[flagged, "ts_verdict"] == "new_error").mean() >= 0.8
    res = runner.invoke(main, ["score", str(fitted.path), str(tmp_path / "known.parquet"),
                               "--out", str(tmp_path / "s2"), "--alert-exit-code", "3",
                               "-q"])
    assert res.exit_code == 0, res.output
