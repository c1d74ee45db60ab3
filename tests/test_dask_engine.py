"""score --engine dask: the same outputs as the local engine on a real 2-worker LocalCluster."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_independent
from trafficsiam import api, synth
from trafficsiam.config import ScoreConfig
from trafficsiam.errors import ConfigError, InputError
from trafficsiam.scoring import dask_engine, passes, score

distributed = pytest.importorskip("dask.distributed")

# Batches of 300 rows: every file spans several, and a row group boundary (500) falls
# inside one, so both engines must cut identical batches for the embeddings to match.
# Candidates of 5: the file of unseen failures forms groups well above the decision's
# false alarms (which, at this rate, are no candidates of their own).
# The saturated anomaly: its candidate search and float32 sums must agree bit for bit too
# (the Euclidean nearest distance runs for the input novelty either way), and each
# worker recalibrates it from the model's held-out records. A false-alarm rate of 0.01:
# records judged by their p-values on both sides of the rate.
CFG = ScoreConfig(batch_size=300, new_type_min_size=5, anomaly_saturation=0.25,
                  false_alarm_rate=0.01)


@pytest.fixture(scope="module")
def model(fitted):
    return api.load(fitted[0].path)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": ":0"}) as local:
        yield local


def _inputs(folder: Path) -> Path:
    """Files whose text order is not dask's natural order (f10 < f2), one with two row
    groups and a named RangeIndex, one with a stored pandas index, one in a subfolder
    with pass-through columns of awkward types, one empty."""
    folder.mkdir()
    ranged = synth.generate(rows=1000, seed=21, novel=True)
    ranged.index.name = "n"  # a named RangeIndex: pandas metadata only, no column
    ranged.to_parquet(folder / "f10.parquet", row_group_size=500)
    # one file of unseen failures: groups that stand out from the decision's false alarms
    many = synth.generate(rows=8000, seed=22, novel=True)
    indexed = many[many["scenario"].isin(synth.NOVEL_SCENARIOS)].head(700).reset_index(drop=True)
    indexed.index = indexed.index * 3  # stored as the column __index_level_0__
    indexed.to_parquet(folder / "f2.parquet")
    awkward = synth.generate(rows=900, seed=23, novel=True)
    table = pa.Table.from_pandas(awkward, preserve_index=False).append_column(
        "retries", pa.array([None if i % 7 == 0 else i % 3 for i in range(900)], pa.int32())
    ).append_column(
        "site", pa.array([["ams", "fra", None][i % 3] for i in range(900)]).dictionary_encode()
    ).append_column(
        "tags", pa.array([[i, i + 1] if i % 5 else None for i in range(900)],
                         pa.list_(pa.int64()))
    )
    (folder / "sub").mkdir()
    pq.write_table(table, folder / "sub" / "c.parquet", row_group_size=256)
    awkward.iloc[:0].to_parquet(folder / "empty.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def runs(model, cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    src = _inputs(root / "in")
    local = score(model, src, root / "local", config=CFG, state=root / "local.db",
                  engine="local", quiet=True)
    dask = score(model, src, root / "dask", config=CFG, state=root / "dask.db",
                 engine="dask", scheduler=cluster.scheduler_address, quiet=True)
    return local, dask


def test_dask_output_equals_local_record_for_record(runs):
    local, dask = runs
    assert [(i, o.relative_to(local.out), n) for i, o, n in local.outputs] == [
        (i, o.relative_to(dask.out), n) for i, o, n in dask.outputs
    ]
    assert local.found_new_types and sum(n for _, _, n in local.outputs) == 2600
    for (_, mine, _), (_, theirs, _) in zip(local.outputs, dask.outputs, strict=True):
        assert pq.read_schema(theirs).equals(pq.read_schema(mine), check_metadata=True)
        want, got = pd.read_parquet(mine), pd.read_parquet(theirs)
        assert list(got.columns) == list(want.columns) and len(got) == len(want)
        # Exact: the same batches through the same model give the same bits.
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    pd.testing.assert_frame_equal(dask.new_types.drop(columns="first_seen"),
                                  local.new_types.drop(columns="first_seen"), check_exact=True)
    # the decision ran both ways: records voted good flagged by ts_p_good, in both engines
    flagged = sum(int(((f["ts_verdict"] != "good") & (f["ts_scenario"] == "good")
                       & (f["ts_p_good"] <= 0.05)).sum())
                  for f in (pd.read_parquet(o) for _, o, _ in dask.outputs))
    assert flagged > 0
    for key in ("records", "verdicts", "clusters", "cleaning", "decision"):
        assert dask.summary[key] == local.summary[key], key
    assert run_independent(dask.out)[0]["new_types"] == run_independent(local.out)[0]["new_types"]
    assert dask.summary["engine"] == "dask"


def test_dask_report_tables_equal_local(runs):
    """The report's samples are the same rows whatever the engine, so its tables agree."""
    local, dask = runs
    for name in ("clusters.csv", "new_types.csv", "features_by_cluster.csv"):
        theirs, mine = pd.read_csv(dask.out / name), pd.read_csv(local.out / name)
        if name == "new_types.csv":  # each run's own id
            theirs, mine = theirs.drop(columns="first_seen"), mine.drop(columns="first_seen")
        pd.testing.assert_frame_equal(theirs, mine, check_exact=True)


def test_model_is_loaded_once_per_worker(runs, cluster):
    with distributed.Client(cluster) as client:
        loads = client.run(dask_engine.loads)
    # Two stages over four partitions each ran on the two workers.
    assert len(loads) == 2 and set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1


def test_a_bad_value_on_a_worker_is_the_local_engines_input_error(model, cluster, tmp_path):
    bad = synth.generate(rows=400, seed=5)
    bad["bytes_in"] = bad["bytes_in"].astype(str)
    bad.loc[345, "bytes_in"] = "lots"
    bad.to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(InputError, match=r"b\.parquet row 345: column 'bytes_in' has value "
                                         r"'lots'"):
        score(model, tmp_path / "b.parquet", tmp_path / "out", config=CFG, engine="dask",
              scheduler=cluster.scheduler_address, quiet=True)
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_csv_input_is_refused_with_the_fix(model, tmp_path):
    synth.generate(rows=50, seed=1).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(InputError, match=r"x\.csv: the Dask engine reads parquet only; "
                                         "score CSV with --engine local"):
        score(model, tmp_path / "x.csv", tmp_path / "out", engine="dask", quiet=True)


def test_a_stored_multiindex_is_refused_with_the_fix(model, tmp_path):
    frame = synth.generate(rows=50, seed=1)
    frame.index = pd.MultiIndex.from_arrays([np.arange(50) ** 2, np.arange(50)],
                                            names=["k", None])
    frame.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"x\.parquet: holds a pandas MultiIndex \(index "
                                         r"columns \['k', .*--engine local"):
        score(model, tmp_path / "x.parquet", tmp_path / "out", engine="dask", quiet=True)


def test_a_bad_scheduler_address_is_a_config_error(model, tmp_path):
    synth.generate(rows=50, seed=1).to_parquet(tmp_path / "x.parquet", index=False)
    with pytest.raises(ConfigError, match=r"--scheduler nonsense::x: cannot reach a Dask "
                                          "scheduler there"):
        score(model, tmp_path / "x.parquet", tmp_path / "out", engine="dask",
              scheduler="nonsense::x", quiet=True)


def test_missing_dask_is_a_clear_error(model, tmp_path, monkeypatch):
    for name in ("dask", "dask.dataframe", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError
    synth.generate(rows=50, seed=1).to_parquet(tmp_path / "x.parquet", index=False)
    with pytest.raises(InputError, match=r"--engine dask needs Dask: pip install "
                                         r"'trafficsiam\[dask\]'"):
        score(model, tmp_path / "x.parquet", tmp_path / "out", engine="dask", quiet=True)
    assert not (tmp_path / "out" / "x.parquet").exists()


def test_partition_batches_match_the_local_chunks():
    table = pa.table({"v": np.arange(1000)})
    got = [(s, t.num_rows) for s, t in passes.batches(table, 300)]
    assert got == [(0, 300), (300, 300), (600, 300), (900, 100)]
