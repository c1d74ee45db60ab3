"""Fit, evaluate and detection quality on real traffic, CI-sized (issue 6; the full run is
bench/quality.py): the default configuration fitted once on the NSL-KDD 20 % training
subset with fewer epochs, evaluated on KDDTest+ (17 attack types absent from all of
KDDTrain+) beside IsolationForest and a RandomForest on the same features. Skipped
without the data (set TRAFFICSIAM_DATASETS)."""

import json

import pytest

from tests.conftest import datasets_dir, nslkdd_config
from trafficsiam import api
from trafficsiam.measure.compare import compare
from trafficsiam.measure.evaluate import METRICS, evaluate

KDD = datasets_dir() / "nsl-kdd"
TRAIN, TEST = KDD / "KDDTrain+_20Percent.parquet", KDD / "KDDTest+.parquet"

pytestmark = pytest.mark.skipif(
    not TRAIN.is_file() or not TEST.is_file(),
    reason=f"NSL-KDD not found at {KDD} (set TRAFFICSIAM_DATASETS)",
)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """(model metrics, {baseline: metrics}) for seed 0, as bench/quality.py runs them."""
    # the default configuration: only the data section (and fewer epochs) is set
    cfg = nslkdd_config(train={"epochs": 10})
    out = tmp_path_factory.mktemp("quality")
    result = compare(TRAIN, TEST, out, cfg,
                     losses=[cfg.loss.name], seeds=1,
                     baseline_names=("isolation-forest", "random-forest"),
                     quiet=True, report=False)
    rows = {r["method"]: r for r in result.runs.to_dict(orient="records")}
    model = rows.pop(cfg.loss.name)
    model["path"] = out / "models" / f"{cfg.loss.name}-seed0"
    model["run"] = out / "runs" / f"{cfg.loss.name}-seed0"
    model["operating_points"] = model["run"] / "operating_points.csv"
    return model, rows


@pytest.mark.slow
def test_fit_on_nsl_kdd_subset(measured):
    model, _ = measured
    art = api.load(model["path"])
    m = art.manifest
    # four attacks have a single record in the subset: left out, and counted
    assert m["data"]["dropped_rare_scenarios"] == {
        "ftp_write": 1, "land": 1, "loadmodule": 1, "spy": 1,
    }
    # constant columns are dropped (with a warning), the labels never become features
    assert m["schema"]["excluded"] == {"num_outbound_cmds": "constant", "is_host_login": "constant"}
    assert set(m["schema"]["categorical"]) == {"protocol_type", "service", "flag"}
    table = art.clusters[art.clusters["cluster"] >= 0]
    assert {"normal", "neptune", "smurf"} <= set(table["scenario"])
    assert m["clusters"]["weighted_purity"] >= 0.9
    assert table.loc[table["scenario"] == "normal", "is_good"].all()


@pytest.mark.slow
def test_evaluate_on_kdd_test(measured):
    model, _ = measured
    saved = json.loads((model["run"] / "metrics.json").read_text())
    assert saved["records"] == 22_544 and saved["good_label"] == "normal"
    # the 17 types absent from KDDTrain+, and the 4 the subset holds once (dropped)
    assert len(saved["novel_scenarios"]) == 21 and saved["novel_records"] == 3764
    assert set(saved["metrics"]) == set(METRICS)
    assert saved["metrics"]["novel_auroc"] == pytest.approx(model["novel_auroc"])


@pytest.mark.slow
def test_unseen_attacks_rank_above_normal_traffic_ahead_of_isolation_forest(measured):
    """The issue's CI assertion: the default configuration stays ahead of IsolationForest
    on novel AUROC. Ranked by ts_anomaly, which the fit made saturated (NSL-KDD's known
    attacks differ from normal traffic in many inputs at once). 10 epochs, seeds 0-2:
    AUROC 0.966 / 0.967 / 0.963 against IsolationForest's 0.956 / 0.955 / 0.954; recall
    at 5 % false alarms 0.823 / 0.817 / 0.809 against 0.771 / 0.776 / 0.773."""
    model, rivals = measured
    forest = rivals["isolation-forest"]
    assert model["novel_auroc"] > forest["novel_auroc"] + 0.005
    assert model["novel_auroc"] > 0.96
    assert model["novel_recall_at_5pct_fpr"] > forest["novel_recall_at_5pct_fpr"] + 0.02


@pytest.mark.slow
def test_the_fit_chose_the_saturated_anomaly_and_it_ranks_higher(measured, tmp_path):
    """score.anomaly_saturation auto chose the saturated distance at fit; the Euclidean
    one on the same model (null, recalibrated on the stored held-out records without a
    refit) ranks unseen attacks lower (seeds 0-2: 0.937-0.940), because KDDTest+'s
    normal traffic drifts in single fields."""
    model, _ = measured
    art = api.load(model["path"])
    assert art.manifest["anomaly"]["rule"] == "auto"
    assert art.manifest["anomaly"]["saturation"] == 0.25
    assert (art.manifest["anomaly"]["failure_inputs"]
            > art.manifest["anomaly"]["good_inputs"] + 1)
    cfg = art.config.score.model_copy(update={"anomaly_saturation": None})
    euclid = evaluate(art, [str(TEST)], tmp_path, quiet=True, report=False,
                      config=cfg).metrics
    assert euclid["novel_auroc"] < model["novel_auroc"] - 0.015


@pytest.mark.slow
def test_fewer_unseen_attacks_called_good_than_the_random_forest(measured):
    model, rivals = measured
    # The RandomForest names every record after a training label: most new attacks come
    # out as normal. The model flags them or explains them as a known attack instead.
    assert rivals["random-forest"]["novel_called_good"] > 0.6
    assert model["novel_called_good"] < rivals["random-forest"]["novel_called_good"] - 0.2


@pytest.mark.slow
def test_seen_attack_types_are_explained(measured):
    model, _ = measured
    assert model["known_accuracy"] > 0.75
    assert model["known_called_good"] < 0.25


@pytest.mark.slow
def test_the_rate_trades_false_alarms_for_new_attacks_called_good(measured):
    """The operating points of the same model: the configured row is the run's own, and
    a higher false-alarm rate calls fewer new attacks good (KDDTest+'s normal traffic
    has drifted from the training records, so its false alarms exceed the rate)."""
    import pandas as pd

    model, _ = measured
    points = pd.read_csv(model["operating_points"]).sort_values("false_alarm_rate")
    mine = points[points["configured"]].iloc[0]
    assert mine["good_false_alarm"] == pytest.approx(model["good_false_alarm"])
    assert points["novel_called_good"].is_monotonic_decreasing
    loose = points[points["false_alarm_rate"] == 0.05].iloc[0]
    assert loose["novel_called_good"] < mine["novel_called_good"] - 0.05
