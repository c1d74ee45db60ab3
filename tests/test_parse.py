"""The one rule by which every command reads a number (`trafficsiam.parse`)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from trafficsiam.parse import as_numbers, parse_numbers


@pytest.mark.parametrize(("text", "number"), [
    ("True", 1.0), ("false", 0.0), ("TRUE", 1.0), ("1.5e3", 1500.0), ("-7", -7.0),
    ("NA", np.nan), ("null", np.nan), ("", np.nan), ("NaN", np.nan), (None, np.nan),
])
def test_numbers_parse_alike_from_csv_text_and_parquet_text(text, number):
    values, bad = parse_numbers(pd.Series(["1", text], dtype=object))
    np.testing.assert_array_equal(values, [1.0, number])
    assert not bad.any()


def test_text_that_is_no_number_is_marked_bad_not_dropped():
    values, bad = parse_numbers(pd.Series(["1", "yes", "tRuE", None]))
    assert bad.tolist() == [False, True, True, False]
    assert values[0] == 1.0 and np.isnan(values[1:]).all()


def test_durations_are_seconds_and_booleans_ones_and_zeros():
    durations = pd.Series(pd.to_timedelta([1500, None], unit="ms"))
    np.testing.assert_array_equal(parse_numbers(durations)[0], [1.5, np.nan])
    np.testing.assert_array_equal(parse_numbers(pd.Series([True, False]))[0], [1.0, 0.0])


def test_arrow_and_pandas_paths_agree_on_plain_and_mixed_text():
    """Plain decimal text takes Arrow's fast path; text with a boolean word or a spelling
    of missing takes the rule's own path: the same numbers either way."""
    plain = pd.Series(["1.5", "-2", "1e3", None], dtype="str")
    mixed = pd.Series(["1.5", "-2", "1e3", None, "true", "NA"], dtype="str")
    np.testing.assert_array_equal(parse_numbers(plain)[0], [1.5, -2.0, 1000.0, np.nan])
    np.testing.assert_array_equal(parse_numbers(mixed)[0],
                                  [1.5, -2.0, 1000.0, np.nan, 1.0, np.nan])


def test_as_numbers_turns_the_named_columns_to_float64_and_leaves_the_rest():
    table = pa.table({"n": ["1", "TRUE", None], "id": ["007", "008", "009"]})
    got = as_numbers(table, ["n", "absent"])
    assert got.schema.field("n").type == pa.float64()
    np.testing.assert_array_equal(got.column("n").to_numpy(), [1.0, 1.0, np.nan])
    assert got.column("id").to_pylist() == ["007", "008", "009"]
