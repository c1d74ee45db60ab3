"""evaluate on real traffic: a model fitted on the NSL-KDD 20% training subset, evaluated
on KDDTest+ (17 attack types absent from all of KDDTrain+; skipped without the data)."""

import json

import pytest

from tests.conftest import datasets_dir, nslkdd_config
from trafficsiam import api
from trafficsiam.measure.evaluate import METRICS, evaluate

KDD = datasets_dir() / "nsl-kdd"

pytestmark = pytest.mark.skipif(
    not (KDD / "KDDTrain+_20Percent.parquet").is_file() or not (KDD / "KDDTest+.parquet").is_file(),
    reason=f"NSL-KDD not found at {KDD} (set TRAFFICSIAM_DATASETS)",
)


@pytest.mark.slow
def test_evaluate_on_kdd_test(tmp_path):
    cfg = nslkdd_config(train={"epochs": 2, "steps_per_epoch": 30},
                        cluster={"max_points": 5000})
    api.fit(KDD / "KDDTrain+_20Percent.parquet", tmp_path / "kdd", cfg, quiet=True)
    result = evaluate(tmp_path / "kdd", KDD / "KDDTest+.parquet", tmp_path / "eval", quiet=True)
    info = result.info
    assert info["records"] == 22_544 and info["good_label"] == "normal"
    # the 17 types absent from KDDTrain+, and the 4 the subset holds once (dropped)
    assert len(info["novel_scenarios"]) == 21 and info["novel_records"] == 3764
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(saved["metrics"]) == set(METRICS)
    # even a two-epoch model ranks unseen attacks above most normal traffic
    assert result.metrics["novel_auroc"] > 0.7
