"""Validate: check the labels and decide which columns are numeric or categorical features.

Every problem is an `InputError` whose one line names the file, the column, the
value and the fix. Columns we decide not to use (constant, datetime, identifier)
are reported as warnings, never dropped silently.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trafficsiam.config import DataConfig
from trafficsiam.contract import MAX_TEXT, TS_COLUMNS
from trafficsiam.errors import InputError, cut, ignore_flag
from trafficsiam.labels import clean_label, clean_labels
from trafficsiam.parse import parse_numbers
from trafficsiam.read import Records, require_column

log = logging.getLogger("trafficsiam")

# A text column is taken for a numeric column with stray text when at least this
# share of its non-missing values parse as numbers.
NUMERIC_TEXT_SHARE = 0.9
# Identifiers are told apart from features once a column has this many rows (below
# that, distinct values may be chance): a text column whose values are mostly distinct
# (at least IDENTIFIER_SHARE of its present values), or an integer column that counts
# (all distinct and in order: a row or flow number). One-hot encoding would put nearly
# all of such a column in "(other)"; a float column is never one (a measurement is
# mostly distinct too).
IDENTIFIER_MIN_ROWS = 50
IDENTIFIER_SHARE = 0.5
# Text columns are recognised as timestamps or IP addresses when at least this share of
# their distinct values (among the first SNIFF_VALUES) parse as one: operations exports
# carry them as text, and as one-hot features they only name the hour or the host.
SNIFF_SHARE = 0.95
SNIFF_VALUES = 1000
# pandas formats tried besides ISO 8601: Apache/nginx access logs, syslog, ctime.
LOG_TIME_FORMATS = ("%d/%b/%Y:%H:%M:%S %z", "%d/%b/%Y:%H:%M:%S", "%b %d %H:%M:%S",
                    "%a %b %d %H:%M:%S %Y")
# Column kinds left out of the features, with the reason the warning gives.
NOT_FEATURES = {
    "datetime": "holds timestamps",
    "timestamp": "holds timestamps as text",
    "ip address": "holds IP addresses",
    "identifier": "has a distinct value on most rows, like an identifier,",
    "scored": "is one that trafficsiam score adds",
}


@dataclass(frozen=True)
class FeatureSchema:
    """Which input columns feed the model, and as what."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    # Columns left out of the features, with the reason (for the manifest and the summary).
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def to_dict(self) -> dict[str, object]:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "excluded": dict(self.excluded),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureSchema:
        return cls(
            numeric=tuple(data["numeric"]),  # type: ignore[arg-type]
            categorical=tuple(data["categorical"]),  # type: ignore[arg-type]
            excluded=dict(data.get("excluded", {})),  # type: ignore[call-overload]
        )


def read_labels(records: Records, column: str, normalise: bool) -> pd.Series:
    """The label column as `labels.clean_labels` spells it (str); refuses a record without
    one (missing, empty or blank), naming the first."""
    labels = clean_labels(records.frame[column], normalise)
    records.refuse_rows(labels.isna().to_numpy(),
                        f"column '{column}' is missing a label ({{n}} rows without one; "
                        "empty and blank labels count as missing); label every record or "
                        "filter them out")
    return labels.astype(str)


def check_labels(records: Records, data: DataConfig, require_good: bool = True) -> pd.Series:
    """Return the label column as strings; refuse labels that cannot train a model.

    With `data.rare_scenarios = drop`, single-record scenarios are not refused: the
    caller keeps only the rows whose label is in `usable_scenarios(labels)`.
    """
    frame, col = records.frame, data.label_column
    require_column(records.source, list(frame.columns), col, "label column",
                   "name the scenario column with --label-column")
    labels = read_labels(records, col, data.label_normalise)
    counts = labels.value_counts()
    long = [name for name in counts.index if len(str(name)) > MAX_TEXT]
    if long:
        raise InputError(
            f"{records.source}: column '{col}' has a label of {len(str(long[0])):,} "
            f"characters ('{cut(long[0])}'; a model holds at most {MAX_TEXT:,}); shorten "
            "the scenario names")
    folded: dict[str, str] = {}
    for name in counts.index:
        key = clean_label(name, normalise=True)
        if key in folded:
            raise InputError(
                f"{records.source}: column '{col}' has labels {folded[key]!r} and {name!r} "
                "that differ only by case or spaces; make them identical if they are one "
                "scenario, rename one, or set data.label_normalise=true to fold case and "
                "spaces"
            )
        folded[str(key)] = str(name)
    if len(counts) < 2:
        raise InputError(
            f"{records.source}: column '{col}' holds one scenario only ({counts.index[0]!r}); "
            "training needs at least two scenarios, e.g. good traffic and one error type"
        )
    single = counts[counts < 2]
    if len(single) and data.rare_scenarios == "error":
        name = single.index[0]
        raise InputError(
            f"{records.source}: scenario {name!r} in column '{col}' has a single record, "
            "so it has no positive pair; add records of it, filter it out, or set "
            "data.rare_scenarios=drop"
        )
    if len(single):
        log.warning(
            "left out %d records of %d scenarios with a single record (%s): no positive pair "
            "(data.rare_scenarios=drop)", int(single.sum()), len(single),
            ", ".join(repr(str(v)) for v in single.index[:10]),
        )
        counts = counts[counts >= 2]
        if len(counts) < 2:
            raise InputError(
                f"{records.source}: column '{col}' has fewer than two scenarios with at least "
                "two records; training needs at least two, e.g. good traffic and one error type"
            )
    if require_good and data.good_label not in counts.index:
        shown = ", ".join(repr(str(v)) for v in counts.index[:10])
        raise InputError(
            f"{records.source}: good-traffic label {data.good_label!r} not found in column "
            f"'{col}' (values: {shown}); name it with --good-label"
        )
    return labels


def show(value: object) -> str:
    """A value as a user would write it: numpy scalars as plain Python values."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def usable(labels: pd.Series) -> np.ndarray:
    """Mask of rows whose scenario has at least two records (a positive pair)."""
    counts = labels.map(labels.value_counts())
    return (counts >= 2).to_numpy()


def _first_bad(records: Records, col: str, mask: np.ndarray, values: pd.Series) -> str:
    first = int(np.flatnonzero(mask)[0])
    return f"{records.where(first)}: column '{col}' has value {show(values.iloc[first])}"


def _numeric_values(records: Records, col: str, forced: bool) -> pd.Series | None:
    """Parse a text column as numbers; None when it is genuinely categorical."""
    values = records.frame[col]
    arr, bad = parse_numbers(values)
    n_present = int(values.notna().sum())
    share = 1.0 - bad.sum() / max(n_present, 1)
    if not bad.any():
        return pd.Series(arr, index=values.index, name=values.name)
    if forced or share >= NUMERIC_TEXT_SHARE:
        raise InputError(
            f"{_first_bad(records, col, bad, values)} in a numeric column "
            f"({int(bad.sum())} such values); fix or blank those values, or list the column "
            "under data.categorical"
        )
    return None


def infer_schema(records: Records, data: DataConfig) -> FeatureSchema:
    """Decide the feature columns (unless configured) and check their values.

    Raises InputError for text in a numeric column, an all-missing column or
    infinite values. Constant, datetime and identifier columns are excluded
    with a warning.
    """
    frame = records.frame
    skip = {data.label_column, *data.ignore}
    configured = set(data.numeric) | set(data.categorical)
    for col in sorted(configured):
        if col not in frame.columns:
            raise InputError(
                f"{records.source}: configured feature column '{col}' not found; "
                "remove it from data.numeric / data.categorical or fix its name"
            )
    if configured:
        candidates = [c for c in frame.columns if c in configured]
    else:
        candidates = [c for c in frame.columns if c not in skip]

    numeric: list[str] = []
    categorical: list[str] = []
    excluded: dict[str, str] = {}
    for col in candidates:
        if len(str(col)) > MAX_TEXT:
            raise InputError(
                f"{records.source}: column '{cut(col)}' has a name of {len(str(col)):,} "
                f"characters (a model holds at most {MAX_TEXT:,}); rename it, or leave it "
                "out of the export")
        values = frame[col]
        if values.isna().all():
            _refuse_missing(records, col)
        # a column scoring adds (records scored before): our output, never a feature,
        # whatever is in it (fit took ts_verdict as one, and score refused the file)
        kind = "scored" if col in TS_COLUMNS else _column_kind(records, col, data)
        if kind in NOT_FEATURES:
            excluded[col] = kind
            log.warning(
                "column '%s' %s and is not used as a feature (add %s to silence this)",
                col, NOT_FEATURES[kind], ignore_flag(col),
            )
            continue
        if values.nunique(dropna=True) <= 1 and not values.isna().any():
            excluded[col] = "constant"
            log.warning(
                "column '%s' is constant (%s on every row) and is dropped", col,
                show(values.iloc[0]),
            )
            continue
        if kind == "numeric":
            numeric.append(col)
        else:
            categorical.append(col)
    if not numeric and not categorical:
        raise InputError(
            f"{records.source}: no feature columns left after ignoring "
            f"{sorted(skip | set(excluded))}; keep at least one numeric or categorical column"
        )
    return FeatureSchema(tuple(numeric), tuple(categorical), excluded)


def _column_kind(records: Records, col: str, data: DataConfig) -> str:
    values = records.frame[col]
    if col in data.categorical:
        return "categorical"
    forced = col in data.numeric
    if pd.api.types.is_datetime64_any_dtype(values) and not forced:
        return "datetime"
    _check_scalar(records, col, values)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        if not forced and _is_counter(values):
            return "identifier"
        _check_finite(records, col, values)
        return "numeric"
    parsed = _numeric_values(records, col, forced)
    if parsed is not None and parsed.isna().all():  # text that only spells "missing"
        _refuse_missing(records, col)
    if parsed is not None:
        # CSV is text: a counter written as text is one too (the same verdict as parquet's)
        if not forced and _integral(parsed) and _is_counter(parsed.astype("int64")):
            return "identifier"
        records.frame[col] = parsed
        _check_finite(records, col, parsed)
        return "numeric"
    if not forced:
        kind = _text_kind(values)
        if kind is not None:
            return kind
    return "categorical"


def _refuse_missing(records: Records, col: str) -> None:
    raise InputError(f"{records.source}: column '{col}' is entirely missing; "
                     f"fill it or leave it out with {ignore_flag(col)}")


def _integral(values: pd.Series) -> bool:
    """Whole numbers only, none missing, within float64's exact integers."""
    arr = values.to_numpy(dtype="float64")
    return bool(np.isfinite(arr).all() and (arr == np.round(arr)).all()
                and (np.abs(arr) < 2.0**53).all())


def _is_counter(values: pd.Series) -> bool:
    """An integer column numbering its rows: all distinct, in order, enough rows."""
    if (not pd.api.types.is_integer_dtype(values) or len(values) < IDENTIFIER_MIN_ROWS
            or values.isna().any()):
        return False
    return bool((values.is_monotonic_increasing or values.is_monotonic_decreasing)
                and values.is_unique)


def _text_kind(values: pd.Series) -> str | None:
    """"timestamp", "ip address" or "identifier" for a text column that holds those, else
    None (a categorical feature)."""
    present = values.dropna().astype(str)
    distinct = present.drop_duplicates()
    if len(present) >= IDENTIFIER_MIN_ROWS and len(distinct) >= IDENTIFIER_SHARE * len(present):
        kind = "identifier"
    else:
        kind = None
    sniff = distinct.head(SNIFF_VALUES)
    if len(sniff) == 0:
        return kind
    needed = SNIFF_SHARE * len(sniff)
    if _share_parsed(sniff, _parses_as_ip) >= needed:
        return "ip address"
    # a timestamp has digits and a separator, and is longer than a year or a number
    shaped = sniff.str.contains(r"\d", regex=True) & sniff.str.contains(r"[-:/T ]", regex=True)
    if shaped.sum() >= needed and (sniff.str.len() >= 8).sum() >= needed:
        parsed = pd.to_datetime(sniff, format="ISO8601", errors="coerce", utc=True).notna()
        for fmt in LOG_TIME_FORMATS:
            if parsed.sum() >= needed:
                break
            parsed |= pd.to_datetime(sniff, format=fmt, errors="coerce").notna()
        if parsed.sum() >= needed:
            return "timestamp"
    return kind


def _parses_as_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return False
    return True


def _share_parsed(values: pd.Series, parses: Callable[[str], bool]) -> int:
    return sum(1 for v in values if parses(v))


def _check_scalar(records: Records, col: str, values: pd.Series) -> None:
    """Lists, maps and structs (nested parquet types) cannot be one feature value."""
    if values.dtype != object:
        return
    nested = values.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).to_numpy()
    if nested.any():
        kind = type(values.iloc[int(np.flatnonzero(nested)[0])]).__name__
        raise InputError(
            f"{_first_bad(records, col, nested, values.astype(str))} of type {kind} (a nested "
            f"value, {int(nested.sum())} such rows); a feature holds one number or one text per "
            f"record, so flatten it into columns or leave it out with {ignore_flag(col)}"
        )


def _check_finite(records: Records, col: str, values: pd.Series) -> None:
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    inf = np.isinf(arr)
    if inf.any():
        raise InputError(
            f"{_first_bad(records, col, inf, values)} ({int(inf.sum())} infinite values); "
            "replace them with finite numbers or leave them empty (missing)"
        )


def numeric_matrix(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """The numeric feature columns as a float64 matrix, missing values as NaN."""
    if not columns:
        return np.empty((len(frame), 0), dtype=np.float64)
    return np.column_stack([parse_numbers(frame[c])[0] for c in columns])


def training_set(
    records: Records, data: DataConfig
) -> tuple[Records, pd.Series, pd.Series, FeatureSchema]:
    """What fit trains on: the records of usable scenarios (a scenario too rare to train
    on is dropped, counted in the third value), their labels and the feature schema."""
    labels = check_labels(records, data)
    keep = usable(labels)
    dropped = labels[~keep].value_counts()
    if not keep.all():
        records = records.subset(keep)
        labels = labels[keep].reset_index(drop=True)
    schema = infer_schema(records, data)
    warn_label_like(records.frame, labels, schema, data)
    return records, labels, dropped, schema


# A feature with at most this many distinct values is checked for standing in for the
# label (`warn_label_like`); more, and one value per record would pass for one.
LABEL_LIKE_VALUES = 50


def warn_label_like(frame: pd.DataFrame, labels: pd.Series, schema: FeatureSchema,
                    data: DataConfig) -> None:
    """Warn about features each of whose values occurs with good traffic only or with
    failures only: another label exported beside the scenario column (TON_IoT's `label`,
    NSL-KDD's `is_attack` and `category`), which would then decide the verdict. On the
    sample data and 5G no feature does."""
    good = (labels.astype(str) == str(data.good_label)).to_numpy()
    if good.all() or not good.any():
        return
    for col in schema.columns:
        values = frame[col]
        # high-cardinality columns (addresses, ids) ruled out on a prefix, at little cost
        if values.iloc[:10_000].nunique(dropna=True) > LABEL_LIKE_VALUES:
            continue
        codes, uniques = pd.factorize(values)  # missing: -1, left out
        distinct = len(uniques)
        if not 2 <= distinct <= LABEL_LIKE_VALUES:
            continue
        seen = codes >= 0
        sides = np.bincount(codes[seen] * 2 + good[seen], minlength=2 * distinct)
        occurs = sides.reshape(distinct, 2) > 0
        if occurs.any(axis=0).all() and (occurs.sum(axis=1) == 1).all():
            log.warning(
                "column '%s' separates good traffic from the failures exactly (each of its %d "
                "values occurs on one side only): if it is a label exported beside '%s', leave "
                "it out with %s, or it will decide the verdict", col, distinct,
                data.label_column, ignore_flag(col))
