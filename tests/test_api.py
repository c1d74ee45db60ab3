"""`api` on sample traffic: what fit keeps and reads (the default fit's named clusters are
checked in test_score_quality, on the fit it scores with)."""

import pytest

from trafficsiam import api, synth
from trafficsiam.config import build_config


def test_ignored_columns_never_reach_the_features(fitted):
    result, _ = fitted
    schema = result.manifest["schema"]
    used = set(schema["numeric"]) | set(schema["categorical"])
    assert not used & {"id", "timestamp", "scenario"}
    assert result.manifest["data"]["scenario_counts"] == {
        "good": 2100, "error_type_1": 450, "error_type_2": 450,
    }


def test_fingerprint_changes_with_any_value(synth_small):
    frame = synth_small[["scenario", "bytes_in"]].copy()
    a = api.fingerprint(frame)
    frame.loc[5, "bytes_in"] += 1
    assert api.fingerprint(frame) != a


def test_fit_and_score_read_a_filtered_pandas_parquet(tmp_path, fast_config):
    # pandas stores the index of a filtered frame as __index_level_0__: not a feature,
    # and no KeyError (issue 18)
    frame = synth.generate(rows=1500, seed=3)
    frame[frame["bytes_in"] > 0].to_parquet(tmp_path / "filtered.parquet")
    fitted = api.fit(tmp_path / "filtered.parquet", tmp_path / "m", fast_config, quiet=True,
                     report=False)
    assert "__index_level_0__" not in fitted.manifest["schema"]["numeric"]
    result = api.score(tmp_path / "m", tmp_path / "filtered.parquet", tmp_path / "s",
                       quiet=True, report=False)
    assert sum(n for _, _, n in result.outputs) == int((frame["bytes_in"] > 0).sum())


def test_the_fit_summary_counts_clusters_not_table_rows(fitted):
    import dataclasses

    result = fitted[0]
    table = result.clusters
    n = int((table["cluster"] >= 0).sum())
    for clusters in (table, table[table["cluster"] >= 0]):  # with and without a noise row
        text = dataclasses.replace(result, clusters=clusters).summary()
        assert f": {n} clusters, " in text


def test_fit_keeps_max_records_and_says_what_it_sampled(tmp_path):
    synth.generate(rows=3000, seed=4).to_parquet(tmp_path / "big.parquet", index=False)
    cfg = build_config({"data": {"ignore": ["id", "timestamp"], "max_records": 1000},
                        "train": {"epochs": 1, "steps_per_epoch": 5}})
    fitted = api.fit(tmp_path / "big.parquet", tmp_path / "m", cfg, quiet=True, report=False)
    data = fitted.manifest["data"]
    assert data["rows"] == 1000
    assert data["sampled"]["records"] == 3000 and data["sampled"]["kept"] == 1000
    assert fitted.summary().startswith("sampled 1000 of 3000 records (data.max_records 1000")


@pytest.mark.parametrize("good_records", [2, 20])
def test_fit_warns_when_good_traffic_is_too_thin_to_calibrate(good_records, tmp_path, caplog):
    # 2 good records: none held out, and scoring then flagged 99 % of good traffic in silence
    frame = synth.generate(rows=1500, seed=3)
    good = frame.index[frame["scenario"] == "good"]
    frame = frame.drop(good[good_records:])
    cfg = build_config({"data": {"ignore": ["id", "timestamp"]},
                        "train": {"epochs": 1, "steps_per_epoch": 2}})
    caplog.set_level("WARNING")
    api.fit(frame, tmp_path / "m", cfg, quiet=True)
    assert (f"good traffic ('good') has {good_records} records, {good_records // 10} of them "
            "held out to calibrate the decision: too few for score.false_alarm_rate 0.01 to "
            "hold") in caplog.text



def _failures_moving_many_inputs(rows: int, seed: int):
    """Good traffic on 16 Gaussian inputs; two failures that each move 8 of them at once."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 16))
    scenario = np.array(["good"] * rows, dtype=object)
    for i, name in enumerate(("scan", "flood")):
        at = np.arange(rows)[i + 1 :: 5]
        x[np.ix_(at, np.arange(8 * i, 8 * i + 8))] += 3.0
        scenario[at] = name
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(16)])
    frame["scenario"] = scenario
    return frame


@pytest.mark.parametrize("data, want", [("many", 0.25), ("sample", 0.0)])
def test_fit_chooses_input_dropout_from_how_many_inputs_the_failures_move(data, want,
                                                                          tmp_path):
    """train.input_dropout auto: blanking where the known failures move more inputs at once
    than good traffic's own spread (the saturation's rule, on the same held-out records:
    both choices agree), none where a failure is told by one or two inputs (the sample
    data's KPIs). The network is the one that rate trains, bit for bit, and not the one
    the other rate trains; the manifest, the summary and the loaded model say so."""
    frame = (_failures_moving_many_inputs(2500, 0) if data == "many"
             else synth.generate(rows=2500, seed=3))

    def fit(name: str, rate: float | str) -> api.FitResult:
        cfg = build_config({"data": {"ignore": ["id", "timestamp"]},
                            "train": {"epochs": 1, "steps_per_epoch": 2, "input_dropout": rate}})
        return api.fit(frame, tmp_path / name, cfg, quiet=True, report=False)

    auto, same, other = fit("auto", "auto"), fit("same", want), fit("other", 0.25 - want)
    dropout = auto.manifest["training"]["input_dropout"]
    assert dropout["rule"] == "auto" and dropout["rate"] == want
    assert same.manifest["training"]["input_dropout"]["rule"] == "configured"
    a, b, c = (r.manifest["files"]["weights.safetensors"] for r in (auto, same, other))
    assert a == b != c
    many = auto.manifest["anomaly"]["saturation"] is not None
    assert many == (want > 0)  # one rule, one set of held-out records
    assert f"input dropout: {dropout['why']}" in auto.summary()
    loaded = api.load(auto.path)  # the manifest's schema takes the record
    assert loaded.manifest["training"]["input_dropout"] == dropout


def test_the_calibration_line_counts_add_up():
    # 12 of 1,400 flagged: 10 unlike good, 2 voted a failure; shares rounded to one
    # decimal had read 0.9 % = 0.7 % + 0.1 %
    cal = {"held_out_records": {"good": 1400, "e1": 300}, "false_alarm_rate": 0.01,
           "held_out_good": [
               {"rate": 0.005, "flagged": 6 / 1400, "unlike_good": 4 / 1400,
                "voted_failure": 2 / 1400},
               {"rate": 0.01, "flagged": 12 / 1400, "unlike_good": 10 / 1400,
                "voted_failure": 2 / 1400}]}
    assert api.calibration_text(cal, "good") == (
        "decision calibrated on 1700 held-out records: at score.false_alarm_rate 0.01, "
        "12 of the 1400 held-out good records flagged (0.86%): 10 unlike good traffic, "
        "2 whose neighbours vote a failure")
    assert api.calibration_text({**cal, "false_alarm_rate": 0.02}, "good") is None
