"""fit on real traffic: the NSL-KDD 20% training subset (skipped where the data set is absent)."""

import pytest

from tests.conftest import datasets_dir, nslkdd_config
from trafficsiam import api

KDD20 = datasets_dir() / "nsl-kdd" / "KDDTrain+_20Percent.parquet"

pytestmark = pytest.mark.skipif(
    not KDD20.is_file(), reason=f"NSL-KDD not found at {KDD20} (set TRAFFICSIAM_DATASETS)"
)


@pytest.mark.slow
def test_fit_on_nsl_kdd_subset(tmp_path):
    cfg = nslkdd_config(train={"epochs": 3, "steps_per_epoch": 40})
    result = api.fit(KDD20, tmp_path / "kdd", cfg, quiet=True)
    m = result.manifest
    # four attacks have a single record in the subset: left out, and counted
    assert m["data"]["dropped_rare_scenarios"] == {
        "ftp_write": 1, "land": 1, "loadmodule": 1, "spy": 1,
    }
    # constant columns are dropped (with a warning), the labels never become features
    assert m["schema"]["excluded"] == {"num_outbound_cmds": "constant", "is_host_login": "constant"}
    assert set(m["schema"]["categorical"]) == {"protocol_type", "service", "flag"}
    table = result.clusters[result.clusters["cluster"] >= 0]
    named = set(table["scenario"])
    assert {"normal", "neptune", "smurf"} <= named
    assert result.weighted_purity >= 0.9
    assert table.loc[table["scenario"] == "normal", "is_good"].all()
