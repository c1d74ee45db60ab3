"""The parts of trafficsiam/scoring/ below the run: the batch's columns, the tally, the
threads and the passes' chunking (the run itself: test_score.py; the engines:
test_score.py and test_dask_engine.py; a DataFrame: test_library.py)."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from trafficsiam import api
from trafficsiam.config import ScoreConfig
from trafficsiam.contract import NEW, TS_COLUMNS, VERDICTS
from trafficsiam.scoring.batch import AS_IS, SPOOL, Scoring
from trafficsiam.scoring.passes import batches
from trafficsiam.scoring.tally import Tally
from trafficsiam.scoring.threads import ahead, prefetch


@pytest.fixture(scope="module")
def scoring(fitted):
    return Scoring(api.load(fitted[0].path), ScoreConfig())


def test_the_spool_keeps_what_the_columns_copy_and_the_verdict_needs():
    assert set(SPOOL.names) == {f for _, f, _ in AS_IS} | {"voted", "explained", "good"}
    assert {c for c, _, _ in AS_IS} < set(TS_COLUMNS)


def test_columns_come_in_the_contracts_order_with_their_types(scoring):
    spool = np.zeros(3, SPOOL)
    spool["explained"] = [1, 0, 0]
    spool["good"] = [1, 0, 0]
    arrays, verdict = scoring.columns(spool, np.array([None, "new-1", None], dtype=object))
    assert list(arrays) == list(TS_COLUMNS)
    assert [VERDICTS[v] for v in verdict] == ["good", "new_error", "outlier"]
    assert arrays["ts_new_type"].to_pylist() == [None, "new-1", None]
    assert arrays["ts_cluster"].type == pa.int64() and arrays["ts_verdict"].type == pa.string()
    empty, _ = scoring.columns(np.zeros(0, SPOOL), np.zeros(0, object))
    assert list(empty) == list(TS_COLUMNS) and all(len(a) == 0 for a in empty.values())


def test_tallies_add_up_across_batches_and_merges():
    spool = np.zeros(4, SPOOL)
    spool["cluster"] = [0, 0, 1, -1]
    verdict = np.array([0, 1, NEW, NEW], np.int8)
    new_type = np.array([None, None, "new-1", "new-1"], dtype=object)
    a, b = Tally(), Tally()
    a.add_batch(spool, verdict, new_type)
    b.add_batch(spool, verdict, new_type)
    a.merge(b)
    assert a.rows == 8
    assert a.verdicts() == {"good": 2, "known_error": 2, "new_error": 4, "outlier": 0}
    assert a.by_new_type == {("new-1", 1): 2, ("new-1", -1): 2}


def test_batches_cut_exactly_the_batch_size():
    table = pa.table({"a": list(range(7))})
    assert [(s, t.num_rows) for s, t in batches(table, 3)] == [(0, 3), (3, 3), (6, 1)]


def test_ahead_keeps_the_order_and_prefetch_hands_errors_over():
    assert list(ahead(range(6), lambda i: i * i, depth=2)) == [(i, i * i) for i in range(6)]

    def broken():
        yield 1
        raise RuntimeError("read failed")

    got = []
    with pytest.raises(RuntimeError, match="read failed"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    before = threading.active_count()
    for item in prefetch(iter(range(1000)), depth=2):
        if item == 3:
            break
    assert threading.active_count() == before
