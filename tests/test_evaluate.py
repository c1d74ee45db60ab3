"""evaluate: every metric on a tiny hand-made case with a known answer, then the whole
protocol on sample data (fit without the novel types, evaluate with them)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from trafficsiam import synth
from trafficsiam.errors import InputError
from trafficsiam.measure.evaluate import (
    METRICS,
    Predictions,
    ari_nmi,
    evaluate,
    known_scores,
    map_at_r,
    metrics,
    novel_auroc,
    novel_grouping_ari,
    recall_at_fpr,
    share,
)


def test_ari_nmi_perfect_and_crossed():
    assert ari_nmi(np.array(["a", "a", "b", "b"]), np.array([1, 1, 2, 2])) == (1.0, 1.0)
    ari, nmi = ari_nmi(np.array(["a", "a", "b", "b"]), np.array([1, 2, 1, 2]))
    assert ari == pytest.approx(-0.5) and nmi == pytest.approx(0.0, abs=1e-12)
    assert all(math.isnan(v) for v in ari_nmi(np.array(["a"]), None))


def test_known_scores_flagged_records_are_never_right():
    labels = np.array(["good", "good", "e1", "e1", "new"])
    scenario = np.array(["good", None, "e1", "good", "good"], dtype=object)
    accuracy, f1 = known_scores(labels, scenario, {"good", "e1"})
    # right: records 0 and 2 of the 4 known ones; the novel record is not counted
    assert accuracy == 0.5
    # good: P = 1/2, R = 1/2 -> 1/2; e1: P = 1, R = 1/2 -> 2/3
    assert f1 == pytest.approx((0.5 + 2 / 3) / 2)
    assert all(math.isnan(v) for v in known_scores(labels, None, {"good"}))


def test_novel_auroc_counts_ordered_pairs():
    novelty = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.5])
    good = np.array([True] * 4 + [False] * 2)
    # 0.35 beats 3 of 4 good records, 0.5 all 4: 7 / 8
    assert novel_auroc(novelty, ~good, good) == pytest.approx(0.875)
    assert math.isnan(novel_auroc(novelty, np.zeros(6, bool), good))


def test_recall_at_fpr_threshold_from_good_records():
    good_scores = np.arange(100) / 100  # 0.00 .. 0.99
    novel_scores = np.array([0.5, 0.955, 0.97, 1.2])
    novelty = np.concatenate([good_scores, novel_scores])
    good = np.arange(104) < 100
    # 5%: threshold 0.95 (4 good records above it); novel above: 0.955, 0.97, 1.2
    assert recall_at_fpr(novelty, ~good, good, 0.05) == 0.75
    # 1%: threshold 0.99 (no good record above); novel above: 1.2
    assert recall_at_fpr(novelty, ~good, good, 0.01) == 0.25


def test_share_of_verdicts():
    verdict = np.array(["good", "outlier", "good", "known_error"])
    assert share(verdict != "good", np.array([True, True, False, False])) == 0.5
    assert math.isnan(share(verdict == "good", np.zeros(4, bool)))


def test_novel_grouping_ari():
    labels = np.array(["x", "x", "y", "y", "good"])
    novel = np.array([True, True, True, True, False])
    perfect = np.array(["n1", "n1", "n2", "n2", None], dtype=object)
    assert novel_grouping_ari(labels, perfect, novel) == 1.0
    nothing = np.array([None] * 5, dtype=object)
    assert novel_grouping_ari(labels, nothing, novel) == 0.0
    # a good record inside a candidate makes the match worse
    mixed = np.array(["n1", "n1", "n2", "n2", "n2"], dtype=object)
    assert novel_grouping_ari(labels, mixed, novel) < 1.0
    assert math.isnan(novel_grouping_ari(labels, None, novel))
    # one novel type, nothing grouped: 0, not the 1.0 of two one-group partitions
    one = np.array(["x", "x", "x", "good"])
    assert novel_grouping_ari(one, np.array([None] * 4, dtype=object),
                              np.array([True, True, True, False])) == 0.0


def test_novel_grouped_is_the_share_of_flagged_novel_records_in_a_candidate():
    from trafficsiam.measure.evaluate import novel_grouped

    verdict = np.array(["new_error", "outlier", "good", "new_error", "outlier"])
    novel = np.array([True, True, True, True, False])
    assert novel_grouped(verdict, novel) == pytest.approx(2 / 3)


def test_map_at_r_hand_computed():
    emb = np.array([[0.0], [0.1], [1.0], [1.1], [5.0]])
    labels = np.array(["a", "a", "b", "b", "b"])
    # a-records: R = 1, nearest is the other a: 1 each. b at 1.0 and 1.1: R = 2, their
    # two nearest are (b, a): precision@1 = 1 at a hit, rank 2 a miss -> 1/2 each. b at
    # 5.0: both nearest are b: (1 + 1) / 2 = 1.
    assert map_at_r(emb, labels) == pytest.approx((1 + 1 + 0.5 + 0.5 + 1) / 5)
    # a perfect embedding
    assert map_at_r(np.array([[0.0], [0.1], [9.0], [9.1]]), np.array(["a", "a", "b", "b"])) == 1
    assert math.isnan(map_at_r(None, labels))


def test_metrics_on_a_hand_made_case():
    labels = np.array(["good"] * 4 + ["e1"] * 2 + ["new"] * 2)
    pred = Predictions(
        verdict=np.array(["good", "good", "good", "outlier", "known_error", "good",
                          "new_error", "good"]),
        novelty=np.array([0.1, 0.2, 0.3, 2.0, 0.5, 0.4, 3.0, 0.25]),
        scenario=np.array(["good", "good", "good", None, "e1", "good", None, "good"],
                          dtype=object),
        group=np.array(["c0", "c0", "c0", "outlier", "c1", "c0", "new-1", "c0"]),
        new_type=np.array([None] * 6 + ["new-1", None], dtype=object),
    )
    m = metrics(labels, pred, known={"good", "e1"}, good_label="good")
    assert list(m) == list(METRICS)
    assert m["good_false_alarm"] == 0.25  # one of four good records flagged
    assert m["known_called_good"] == 0.5  # one of the two e1 records called good
    assert m["novel_called_good"] == 0.5
    assert m["known_accuracy"] == 4 / 6  # three good and one e1 explained by their own
    assert m["known_error_accuracy"] == 0.5  # of the two e1 records, one explained as e1
    # novel 3.0 beats every good record, 0.25 beats 0.1 and 0.2: (4 + 2) / 8
    assert m["novel_auroc"] == pytest.approx(0.75)
    assert math.isnan(m["map_at_r"])  # no embedding given


@pytest.fixture(scope="module")
def novel_batch(tmp_path_factory):
    path = tmp_path_factory.mktemp("novel") / "test.parquet"
    synth.write(path, rows=2000, seed=11, novel=True)
    return path


def test_evaluate_on_sample_data(fitted, novel_batch, tmp_path):
    result, _ = fitted
    out = tmp_path / "eval"
    ev = evaluate(result.path, novel_batch, out, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "evaluate.html", "metrics.csv", "metrics.json", "operating_points.csv",
        "records.parquet", "scenarios.csv"]
    assert set(ev.info["novel_scenarios"]) == set(synth.NOVEL_SCENARIOS)
    for name in METRICS:
        assert 0.0 <= ev.metrics[name] <= 1.0 or name in ("ari", "novel_grouping_ari"), name
    # the sample data's novel types are far from good traffic
    assert ev.metrics["novel_auroc"] > 0.8
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"] == pytest.approx(ev.metrics)
    assert saved["model_id"] == result.manifest["model_id"]
    table = pd.read_csv(out / "metrics.csv")
    assert list(table["metric"]) == list(METRICS)
    records = pd.read_parquet(out / "records.parquet")
    assert len(records) == 2000 and {"scenario", "known", "ts_verdict", "e0"} <= set(records)
    html = (out / "evaluate.html").read_text()
    assert "Plotly.newPlot" in html and "<script src" not in html  # works offline
    assert "error_type_3" in html  # the per-scenario table names the novel types
    assert "<h2>Operating points</h2>" in html and "<th>false_alarm_rate</th>" in html
    # each scenario in the colour the score and model pages give it
    from trafficsiam.report.figures import scenario_colors

    data = json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert data["colours"] == scenario_colors(result.manifest["scenarios"],
                                              result.manifest["good_label"],
                                              set(records["scenario"]))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # scoring work removed


def test_operating_points_match_the_scored_verdicts(fitted, novel_batch, tmp_path):
    """operating_points.csv: at the configured rate (and, via score's own config, at
    another rate), the verdict metrics equal those of a full scoring run; a higher rate
    flags more records."""
    from trafficsiam import api
    from trafficsiam.config import ScoreConfig
    from trafficsiam.measure.evaluate import OPERATING_METRICS, OPERATING_RATES, operating_points

    result, _ = fitted
    ev = evaluate(result.path, novel_batch, tmp_path / "plain", quiet=True, report=False)
    points = pd.read_csv(tmp_path / "plain" / "operating_points.csv")
    assert len(points) == len(set(OPERATING_RATES) | {0.01})
    assert points["configured"].sum() == 1
    mine = points[points["configured"]].iloc[0]
    assert mine["false_alarm_rate"] == 0.01
    for key in OPERATING_METRICS[:-1]:
        assert mine[key] == pytest.approx(ev.metrics[key]), key
    other = ScoreConfig(false_alarm_rate=0.05)
    ev2 = evaluate(result.path, novel_batch, tmp_path / "other", quiet=True, report=False,
                   config=other)
    row = points[points["false_alarm_rate"] == 0.05].iloc[0]
    for key in OPERATING_METRICS[:-1]:
        assert row[key] == pytest.approx(ev2.metrics[key]), key
    ordered = points.sort_values("false_alarm_rate")
    assert ordered["flagged"].is_monotonic_increasing
    assert ordered["flagged"].iloc[-1] > ordered["flagged"].iloc[0]
    saved = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert len(saved["operating_points"]) == len(points)
    assert (points["records"] == 2000).all()
    # beyond max_records: a sample of that many, the same one each time
    art = api.load(result.path)
    frame = pd.read_parquet(novel_batch)
    features = frame[list(art.schema.columns)]
    x, emb = art.normaliser.transform(features)[0], art.embed(features)
    y = frame["scenario"].to_numpy(str)
    few = operating_points(art, x, emb, y, art.config.score, max_records=500)
    assert (few["records"] == 500).all()
    pd.testing.assert_frame_equal(few, operating_points(art, x, emb, y, art.config.score,
                                                        max_records=500))
    assert not few[list(OPERATING_METRICS)].equals(points[list(OPERATING_METRICS)])


def test_evaluate_refuses_test_data_without_the_label_column(fitted, tmp_path):
    from trafficsiam.errors import InputError

    result, _ = fitted
    frame = synth.generate(rows=200, seed=3).drop(columns=["scenario"])
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    with pytest.raises(InputError, match="label column 'scenario' not found") as err:
        evaluate(result.path, path, tmp_path / "out", quiet=True)
    assert err.value.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_a_label_column_named_like_a_records_column_keeps_its_labels(tmp_path):
    # a label column named 'known' was overwritten by the known flag in records.parquet
    from trafficsiam import api
    from trafficsiam.config import build_config

    train = synth.generate(rows=1200, seed=3).rename(columns={"scenario": "known"})
    test = synth.generate(rows=400, seed=4, novel=True).rename(columns={"scenario": "known"})
    cfg = build_config({"data": {"label_column": "known", "ignore": ["id", "timestamp"]},
                        "train": {"epochs": 1, "steps_per_epoch": 2}})
    fitted = api.fit(train, tmp_path / "m", cfg, quiet=True)
    path = tmp_path / "test.parquet"
    test.to_parquet(path, index=False)
    evaluate(fitted.path, path, tmp_path / "eval", quiet=True, report=False)
    records = pd.read_parquet(tmp_path / "eval" / "records.parquet")
    assert list(records.columns[:3]) == ["known", "known_", "ts_verdict"]
    assert records["known"].tolist() == test["known"].tolist()
    assert records["known_"].tolist() == test["known"].isin(fitted.manifest["scenarios"]).tolist()


def test_an_empty_label_is_refused_before_anything_is_scored_or_written(fitted, tmp_path):
    test = synth.generate(rows=300, seed=4)
    test.loc[7, "scenario"] = " "
    path = tmp_path / "test.parquet"
    test.to_parquet(path, index=False)
    with pytest.raises(InputError, match=(
            rf"{path} row 7: label column 'scenario' is empty \(1 records; empty and blank "
            "labels count as missing\\)")):
        evaluate(fitted[0].path, path, tmp_path / "eval", quiet=True)
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("relabel, expected", [
    ({"good": "Good"}, "test label 'Good' in 'scenario' is not a scenario of model"),
    ({"good": "0", "error_type_1": "1", "error_type_2": "1"},
     "no test label in 'scenario' is a scenario of model"),
])
def test_labels_the_model_cannot_match_are_warned_about(relabel, expected, fitted, tmp_path,
                                                        caplog):
    # 'Good' for 'good' counted every good record as an unseen failure called good, silently
    test = synth.generate(rows=300, seed=4)
    test["scenario"] = test["scenario"].replace(relabel)
    path = tmp_path / "test.parquet"
    test.to_parquet(path, index=False)
    caplog.set_level("WARNING")
    evaluate(fitted[0].path, path, tmp_path / "eval", quiet=True, report=False)
    assert expected in caplog.text
    assert "is labelled 'good' (the model's good label)" in caplog.text
