"""Parse: the one rule by which every command reads a number, from CSV text or parquet
types alike (`read` reads CSV as text; fit's `validate`, scoring's batches and the
report's samples turn numeric columns into numbers here), so that fit and score agree on
every file."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# pyarrow's CSV reader reads these as booleans: text in parquet reads the same
TRUE_WORDS = frozenset({"1", "True", "TRUE", "true"})
FALSE_WORDS = frozenset({"0", "False", "FALSE", "false"})
# and these as missing (its default null_values)
MISSING_WORDS = frozenset(pacsv.ConvertOptions().null_values)


def _arrow_numbers(values: pd.Series, present: np.ndarray) -> np.ndarray | None:
    """Text that is all decimal numbers, parsed by Arrow (several times faster than
    pandas on a scored CSV's columns); None when any value needs `parse_numbers`' rule
    (a boolean word, a spelling of missing, anything Arrow refuses) or reads as NaN."""
    try:
        arr = pc.cast(pa.array(values, from_pandas=True), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    out = arr.to_numpy(zero_copy_only=False)
    if np.isnan(out[present]).any():  # 'nan' and its spellings: the rule decides
        return None
    return np.array(out, dtype=np.float64)


def parse_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, mask of values present but not numbers): the one rule by which
    every command reads a numeric column, from CSV text or parquet types alike. Numbers as
    they are; booleans 1 and 0; durations in seconds; text parsed as a decimal number or
    a boolean word (`TRUE_WORDS`, `FALSE_WORDS`); missing values and the spellings of
    missing (`MISSING_WORDS`) NaN."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if pd.api.types.is_timedelta64_dtype(values):
        arr = values.dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
        return arr, np.zeros(len(arr), dtype=bool)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        arr = values.to_numpy(dtype="float64", na_value=np.nan)
        return arr, np.zeros(len(arr), dtype=bool)
    present = values.notna().to_numpy()
    fast = _arrow_numbers(values, present)
    if fast is not None:
        return fast, np.zeros(len(fast), dtype=bool)
    parsed = pd.to_numeric(values.where(present), errors="coerce")
    arr = parsed.to_numpy(dtype="float64", na_value=np.nan)
    bad = present & np.isnan(arr)
    if bad.any():
        arr = arr.copy()  # pandas may hand out a read-only view
        text = values[bad].astype(str)
        arr[bad] = np.where(text.isin(TRUE_WORDS), 1.0,
                            np.where(text.isin(FALSE_WORDS), 0.0, np.nan))
        missing = text.isin(MISSING_WORDS).to_numpy()
        bad[np.flatnonzero(bad)[missing]] = False
        bad &= np.isnan(arr)
    return arr, bad


def as_numbers(table: pa.Table, numbers: Iterable[str]) -> pa.Table:
    """`table` with the columns named in `numbers` as float64 by `parse_numbers` (a
    scored CSV's numeric features are numbers in its output, as the model read them)."""
    for name in set(numbers) & set(table.column_names):
        values, _ = parse_numbers(table.column(name).to_pandas())
        table = table.set_column(table.schema.get_field_index(name), name,
                                 pa.array(values, pa.float64()))
    return table
