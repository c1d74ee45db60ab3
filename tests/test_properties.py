"""Property-based tests: random frames and random corruptions of the reader's and the
normaliser's inputs. The only outcomes allowed are a result or a clean `TrafficSiamError`
with a one-line message; a result is always finite."""

from __future__ import annotations

import functools
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trafficsiam import synth
from trafficsiam.config import DataConfig, NormaliseConfig
from trafficsiam.errors import TrafficSiamError
from trafficsiam.normalise import Normaliser
from trafficsiam.read import common_columns, iter_chunks, read_records
from trafficsiam.validate import check_labels, infer_schema

# CI-sized: each test stays well under 20 s; tmp files make the per-example time uneven.
# TRAFFICSIAM_HYPOTHESIS_EXAMPLES=1000 (and no derandomize) to search harder by hand.
EXAMPLES = int(os.environ.get("TRAFFICSIAM_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 60,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@functools.cache
def _seed_files() -> dict[str, bytes]:
    """A small parquet file (3 row groups) and CSV file to corrupt (not a fixture, so that
    Hypothesis does not print 70 kB of bytes with every falsifying example)."""
    frame = synth.generate(rows=120, seed=5)
    with tempfile.TemporaryDirectory() as folder:
        parquet, csv = Path(folder) / "a.parquet", Path(folder) / "a.csv"
        frame.to_parquet(parquet, index=False, row_group_size=40)
        frame.to_csv(csv, index=False)
        return {".parquet": parquet.read_bytes(), ".csv": csv.read_bytes()}


def _clean(err: TrafficSiamError) -> None:
    """A message for a person: one line once the CLI escapes line breaks from data."""
    from trafficsiam.console import one_line

    text = one_line(str(err))
    assert text and "\n" not in text and "Traceback" not in text, text
    assert err.exit_code == 2, (type(err), text)


corruption = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)),
                                        min_size=1, max_size=20)),
    st.tuples(st.just("splice"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64))),
)


def _corrupt(data: bytes, how: tuple) -> bytes:
    kind, arg = how
    if kind == "truncate":
        return data[: int(arg * len(data))]
    buf = bytearray(data)
    if kind == "flip":
        for where, mask in arg:
            buf[min(int(where * len(buf)), len(buf) - 1)] ^= mask
        return bytes(buf)
    where, junk = arg
    i = int(where * len(buf))
    return bytes(buf[:i] + junk + buf[i:])


@SETTINGS
@given(suffix=st.sampled_from([".parquet", ".csv"]), how=corruption)
def test_a_corrupted_file_is_read_or_refused_cleanly(tmp_path, suffix, how):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(_corrupt(_seed_files()[suffix], how))
    try:
        names = common_columns([path])
        records = read_records([path], names)
        assert len(records.frame) == len(records.row_in_file)
        # the scoring reader streams the same file in chunks
        total = sum(t.num_rows for _, t in iter_chunks(path, None, 50))
        assert total >= 0
    except TrafficSiamError as err:
        _clean(err)


names = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["ts_verdict", "scenario ", "", " ", "a\nb", "é", "服务", "0", "None"]),
)
column = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=1),
    st.lists(st.sampled_from([0.0, -1.0, 1e308, -1e308, 5e-324, np.nan, 2.0**63]), min_size=1,
             max_size=1),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=1),
    st.lists(st.booleans(), min_size=1, max_size=1),
    st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=1, max_size=1),
    st.lists(st.sampled_from(["1", "2.5", "x", "", "nan", "inf", "1e400"]), min_size=1,
             max_size=1),
)


@st.composite
def frames(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 40))
    width = draw(st.integers(1, 5))
    cols: dict[str, list] = {}
    for _ in range(width):
        name = draw(names)
        if name in cols or name == "scenario":
            continue
        kind = draw(column)  # one example value fixes the column's kind
        sample = kind[0]
        if isinstance(sample, bool):
            values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        elif isinstance(sample, int):
            values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
        elif isinstance(sample, float):
            values = draw(st.lists(st.one_of(
                st.floats(allow_nan=True, allow_infinity=draw(st.booleans())),
                st.sampled_from([1e308, -1e308, 0.0])), min_size=n, max_size=n))
        else:
            values = draw(st.lists(st.one_of(st.none(), st.text(max_size=6),
                                             st.sampled_from(["1", "2.5", "1e400", "nan"])),
                                   min_size=n, max_size=n))
        cols[name] = values
    labels = draw(st.lists(st.sampled_from(["good", "bad", "Good", "ugly", None]),
                           min_size=n, max_size=n))
    cols["scenario"] = labels
    return pd.DataFrame(cols)


@SETTINGS
@given(frame=frames(), csv=st.booleans(), drop=st.booleans())
def test_random_frames_fit_a_finite_normaliser_or_are_refused_cleanly(tmp_path, frame, csv,
                                                                       drop):
    path = tmp_path / ("x.csv" if csv else "x.parquet")
    if csv:
        frame.to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    data = DataConfig(rare_scenarios="drop" if drop else "error")
    try:
        records = read_records([path], common_columns([path]))
        labels = check_labels(records, data)
        schema = infer_schema(records, data)
        features = records.frame[list(schema.columns)]
        norm = Normaliser.fit(features, schema, NormaliseConfig())
        x, counts = norm.transform(features)
        assert x.shape == (len(features), norm.n_features) and len(labels) == len(features)
        assert np.isfinite(x).all()
        assert np.abs(x).max(initial=0) <= max(norm.clip, 1.0)
        # the fitted state survives its JSON form and transforms a random other frame
        again = Normaliser.from_dict(norm.to_dict())
        y, _ = again.transform(features.sample(frac=1.0, random_state=0, replace=True))
        assert np.isfinite(y).all()
    except TrafficSiamError as err:
        _clean(err)


def _as_scoring(schema, norm):
    """The real `Scoring` checks and conversions of a batch, over a fitted normaliser
    without a network (the reading half of scoring is what is compared)."""
    from types import SimpleNamespace

    from trafficsiam.scoring.batch import Scoring

    scoring = Scoring.__new__(Scoring)
    scoring.art = SimpleNamespace(schema=schema, normaliser=norm, model_id="0" * 12)
    scoring.features = list(schema.columns)
    scoring.numeric = set(schema.numeric)
    return scoring


@st.composite
def fittable_frames(draw) -> pd.DataFrame:
    """`frames()` with labels fit accepts (two scenarios of two records at least), so that
    the values, not the labels, decide what fit does."""
    frame = draw(frames())
    frame = pd.concat([frame] * max(1, -(-4 // len(frame))), ignore_index=True)
    frame["scenario"] = np.where(np.arange(len(frame)) % 2 == 0, "good", "bad")
    return frame


@SETTINGS
@given(frame=fittable_frames(), csv=st.booleans())
def test_score_reads_the_fit_s_own_training_file_as_fit_read_it(tmp_path, frame, csv):
    """Issue 18: whatever file fit accepts, scoring that same file accepts it too and
    turns every record into the same model inputs (CSV and parquet alike)."""
    from trafficsiam.contract import TS_COLUMNS
    from trafficsiam.read import input_schema

    path = tmp_path / ("x.csv" if csv else "x.parquet")
    if csv:
        frame.to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    data = DataConfig(rare_scenarios="drop")
    try:
        records = read_records([path], common_columns([path]))
        check_labels(records, data)
        schema = infer_schema(records, data)
        norm = Normaliser.fit(records.frame[list(schema.columns)], schema, NormaliseConfig())
    except TrafficSiamError as err:
        _clean(err)
        return
    fitted, _ = norm.transform(records.frame[list(schema.columns)])
    scoring = _as_scoring(schema, norm)
    try:
        scoring.check_schema(path, input_schema(path))
    except TrafficSiamError as err:  # the one file scoring refuses on purpose
        assert any(c in TS_COLUMNS for c in frame.columns), str(err)
        assert "is one that scoring adds" in str(err)
        return
    scored = [norm.transform(scoring.feature_frame(table, path, start))[0]
              for start, table in iter_chunks(path, scoring.features, 7)]
    np.testing.assert_array_equal(np.concatenate(scored), fitted)


@SETTINGS
@given(rows=st.lists(st.tuples(
    st.one_of(st.floats(allow_nan=True, allow_infinity=False),
              st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0, 2.0**63])),
    st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["a", "b", "(other)",
                                                                 "(missing)"]))),
    min_size=0, max_size=60))
def test_the_normaliser_takes_any_numeric_or_text_values_at_scoring(rows):
    """A fitted normaliser meets values it never saw: a finite matrix, never an error
    (scoring refuses infinities and text in numeric features before normalising)."""
    from trafficsiam.validate import FeatureSchema

    train = pd.DataFrame({"n": [1.0, 2.0, np.nan, 10.0, 1e6], "c": ["a", "b", "a", None, "c"]})
    norm = Normaliser.fit(train, FeatureSchema(("n",), ("c",)), NormaliseConfig())
    test = pd.DataFrame({"n": pd.Series([r[0] for r in rows], dtype="float64"),
                         "c": pd.Series([r[1] for r in rows], dtype=object)})
    for frame in (test, test.astype({"c": "string[pyarrow]"})):  # both encodings
        x, counts = norm.transform(frame)
        assert np.isfinite(x).all() and x.shape == (len(frame), norm.n_features)
        assert counts.rows == len(frame)
        width = len(norm.categories["c"]) + 1  # the known values and "(other)"
        assert (x[:, -width:].sum(axis=1) == 1).all()  # exactly one per record


def test_corruption_helpers_change_the_bytes():
    data = bytes(range(100))
    assert _corrupt(data, ("truncate", 0.5)) == data[:50]
    assert _corrupt(data, ("flip", [(0.0, 1)]))[0] == 1
    assert io.BytesIO(_corrupt(data, ("splice", (0.5, b"zz")))).read()[50:52] == b"zz"

