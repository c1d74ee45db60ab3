"""Normalise: turn validated records into one float32 matrix.

Numeric columns: signed log1p (traffic volumes span orders of magnitude), then
robust scaling by median and IQR, clipped to +-clip. A numeric column that had
missing values in training gains a 0/1 "missing" indicator, because a missing
latency is itself a signal. Categorical columns: one-hot over the most frequent
values plus an "(other)" bucket that also takes values never seen in training. The
values seen in training but not kept are remembered (`rare`), so that a report can name
a value never seen at fit (`Resp_Code=RST (new)`, `with_new`) instead of "(other)".

The fitted state is plain data (`to_dict` / `from_dict`) stored in the manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trafficsiam.config import NormaliseConfig
from trafficsiam.errors import InputError, ignore_flag
from trafficsiam.validate import FeatureSchema, numeric_matrix

log = logging.getLogger("trafficsiam")

MISSING_TOKEN = "(missing)"
OTHER_TOKEN = "(other)"
NEW_SUFFIX = " (new)"
# Values seen at fit but not kept, remembered per column up to this many (the manifest
# stays small); a column with more cannot tell a new value from a rare one.
MAX_RARE = 1000
# A report names at most this many new values per column (the most frequent); the rest
# stay in "(other)".
MAX_NEW_NAMED = 10
# IQR of a standard normal: dividing by it makes the robust scale comparable to a std.
IQR_TO_STD = 1.349
# q99 - q01 of a normal distribution, in standard deviations.
RANGE_1_99_TO_STD = 4.653


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class TransformCounts:
    """What the transform had to clean, per column: reported, never hidden."""

    rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing_imputed": self.missing,
            "clipped": self.clipped,
            "categorical_other": self.other,
        }


def _warn_other(col: str, counts: pd.Series, kept: int, cfg: NormaliseConfig) -> None:
    """Say what one-hot encoding keeps of a column and what goes to OTHER_TOKEN, and
    what to change: the limit that cut, or --ignore where nothing is kept."""
    total = int(counts.sum())
    other = total - int(counts.iloc[:kept].sum())
    rest = len(counts) - kept
    share = f"{other / max(total, 1):.1%}"
    if kept == 0:
        log.warning(
            "column '%s' has %d distinct values and none is on %g%% of the records "
            "(normalise.min_category_share): all of it becomes '%s', a feature that says "
            "nothing; it looks like free text or an identifier, leave it out with %s",
            col, len(counts), 100 * cfg.min_category_share, OTHER_TOKEN, ignore_flag(col))
        return
    limit = ("normalise.max_categories: raise it" if kept == cfg.max_categories
             else "normalise.min_category_share: lower it")
    log.warning(
        "column '%s' has %d distinct values; one-hot encoding keeps the %d most frequent and "
        "puts the other %d (%s of the records) in '%s' (%s to keep more, or %s)",
        col, len(counts), kept, rest, share, OTHER_TOKEN, limit, ignore_flag(col))


@dataclass
class Normaliser:
    """Fitted numeric and categorical encodings; `transform` maps a frame to the model's input."""

    numeric: list[str]
    center: list[float]
    scale: list[float]
    missing_indicator: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]
    clip: float
    # Values seen at fit that go to "(other)"; None where there were more than MAX_RARE
    # or the model was fitted before they were kept (no value is then called new).
    rare: dict[str, list[str] | None] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, schema: FeatureSchema, cfg: NormaliseConfig) -> Normaliser:
        raw = numeric_matrix(frame, schema.numeric)
        logged = signed_log1p(raw)
        center, scale, indicators = [], [], []
        for j, col in enumerate(schema.numeric):
            v = logged[:, j]
            v = v[~np.isnan(v)]
            med = float(np.median(v))
            q99, q75, q25, q01 = np.percentile(v, [99, 75, 25, 1])
            # The larger of two standard-deviation estimates: the IQR's alone is the width
            # of the majority (good traffic), so a rate near 0 in good records clipped
            # every failure to the same value; the 1-99 % range keeps failures apart
            # (BENCHMARKS.md, what the numbers point at).
            s = max(float(q75 - q25) / IQR_TO_STD, float(q99 - q01) / RANGE_1_99_TO_STD)
            if not s > 0:
                # Mostly one value with a tail (e.g. counts that are usually 0):
                # the IQR is 0, so fall back to the standard deviation.
                s = float(np.std(v))
            if not s > 0:
                s = 1.0
            center.append(med)
            scale.append(s)
            if np.isnan(raw[:, j]).any():
                indicators.append(col)
        categories: dict[str, list[str]] = {}
        rare: dict[str, list[str] | None] = {}
        n = len(frame)
        for col in schema.categorical:
            counts = _as_tokens(frame[col]).value_counts(sort=False)
            counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
            keep = counts[counts >= max(1, cfg.min_category_share * n)].index[: cfg.max_categories]
            if len(keep) < len(counts):
                _warn_other(col, counts, len(keep), cfg)
            categories[col] = [str(v) for v in keep]
            rest = counts.index[len(keep):]
            rare[col] = [str(v) for v in rest] if len(rest) <= MAX_RARE else None
        fitted = cls(
            numeric=list(schema.numeric),
            center=center,
            scale=scale,
            missing_indicator=indicators,
            categorical=list(schema.categorical),
            categories=categories,
            clip=cfg.clip,
            rare=rare,
        )
        fitted._check_names()
        return fitted

    def _check_names(self) -> None:
        """Two model inputs under one name (a column 'protocol=tcp' beside the value 'tcp'
        of 'protocol') would make reports and the manifest ambiguous: refused at fit."""
        names = self.feature_names
        seen: set[str] = set()
        for name in names:
            if name in seen:
                column = name.split("=", 1)[0]
                raise InputError(
                    f"model input '{name}' would stand for two things: a column of that "
                    f"name and a value of column '{column}' (or its missing-value "
                    f"indicator); rename the column '{name}', or leave one out with "
                    f"--ignore")
            seen.add(name)

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        names += [f"{c}=missing" for c in self.missing_indicator]
        for col in self.categorical:
            names += [f"{col}={v}" for v in self.categories[col]]
            names.append(f"{col}={OTHER_TOKEN}")
        return names

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, TransformCounts]:
        """Encode `frame` (which must hold the schema's columns) as float32 [rows, n_features]."""
        n = len(frame)
        counts = TransformCounts(rows=n)
        out = np.zeros((n, self.n_features), dtype=np.float32)
        raw = numeric_matrix(frame, tuple(self.numeric))
        missing = np.isnan(raw)
        # signed_log1p(raw), centred and scaled, in place: the same values, without four
        # [rows, columns] float64 temporaries per batch
        z = np.abs(raw)
        np.log1p(z, out=z)
        z *= np.sign(raw)
        z -= np.asarray(self.center)
        z /= np.asarray(self.scale)
        z[missing] = 0.0  # the training median, after centring
        over = np.abs(z) > self.clip
        np.clip(z, -self.clip, self.clip, out=z)
        k = len(self.numeric)
        out[:, :k] = z
        for j, col in enumerate(self.numeric):
            if missing[:, j].any():
                counts.missing[col] = int(missing[:, j].sum())
            if over[:, j].any():
                counts.clipped[col] = int(over[:, j].sum())
        for col in self.missing_indicator:
            out[:, k] = missing[:, self.numeric.index(col)]
            k += 1
        for col in self.categorical:
            known = self.categories[col]
            codes, n_missing = _codes(frame[col], known)
            if n_missing:
                counts.missing[col] = n_missing
            codes[codes < 0] = len(known)  # unseen or rare values land in "(other)"
            n_other = int((codes == len(known)).sum())
            if n_other:
                counts.other[col] = n_other
            out[np.arange(n), k + codes] = 1.0
            k += len(known) + 1
        return out, counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": {
                "columns": self.numeric,
                "transform": "signed_log1p",
                "center": self.center,
                "scale": self.scale,
                "missing_indicator": self.missing_indicator,
            },
            "categorical": {"columns": self.categorical, "categories": self.categories,
                            "rare": self.rare},
            "clip": self.clip,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normaliser:
        num, cat = data["numeric"], data["categorical"]
        return cls(
            numeric=list(num["columns"]),
            center=[float(v) for v in num["center"]],
            scale=[float(v) for v in num["scale"]],
            missing_indicator=list(num["missing_indicator"]),
            categorical=list(cat["columns"]),
            categories={k: [str(v) for v in vs] for k, vs in cat["categories"].items()},
            clip=float(data["clip"]),
            rare={k: None if vs is None else [str(v) for v in vs]
                  for k, vs in (cat.get("rare") or {}).items()},
        )

    # --- reports: values never seen at fit ---------------------------------------------

    def _unseen(self, values: pd.Series, col: str) -> pd.Series:
        """The tokens of `values` (a categorical column) never seen at fit, as a Series
        aligned with `values`, None elsewhere (kept values, rare ones, missing values)."""
        rare = self.rare.get(col)
        tokens = _as_tokens(values).reset_index(drop=True)
        if rare is None or len(tokens) == 0:
            return pd.Series([None] * len(tokens), dtype=object)
        codes, _ = _codes(values, self.categories[col])
        seen = set(rare) | {MISSING_TOKEN}
        unseen = (codes < 0) & ~tokens.isin(seen).to_numpy()
        return tokens.where(unseen, None).astype(object)

    def new_values(self, frame: pd.DataFrame, top: int = MAX_NEW_NAMED) -> dict[str, list[str]]:
        """Per categorical column of `frame`, its values never seen at fit, the `top` most
        frequent first (ties by value); columns without any are left out."""
        out: dict[str, list[str]] = {}
        for col in self.categorical:
            if col not in frame or len(frame) == 0:
                continue
            counts = self._unseen(frame[col], col).dropna().value_counts(sort=False)
            if len(counts):
                counts = counts.sort_index(kind="stable").sort_values(
                    ascending=False, kind="stable")
                out[col] = [str(v) for v in counts.index[:top]]
        return out

    def with_new(self, frame: pd.DataFrame, x: np.ndarray, new: dict[str, list[str]]
                 ) -> tuple[np.ndarray, list[str]]:
        """A report's view of `x` (the transform of `frame`): the records holding a value
        of `new` leave their column's "(other)" input for one of their own, appended and
        named `col=value (new)`. The names of every input; `x` itself is not changed.
        A `frame` without the rows of `x` (held-out inputs only) has none of them."""
        names = list(self.feature_names)
        extra = [(col, v) for col in self.categorical for v in new.get(col, [])]
        names += [f"{col}={v}{NEW_SUFFIX}" for col, v in extra]
        if not extra:
            return x, names
        out = np.zeros((x.shape[0], x.shape[1] + len(extra)), dtype=x.dtype)
        out[:, :x.shape[1]] = x
        if len(frame) != x.shape[0]:
            return out, names
        position = {name: j for j, name in enumerate(names)}
        unseen = {col: self._unseen(frame[col], col).to_numpy() for col in new if col in frame}
        for j, (col, v) in enumerate(extra, start=x.shape[1]):
            if col not in unseen:
                continue
            hit = unseen[col] == v
            out[hit, j] = 1.0
            out[hit, position[f"{col}={OTHER_TOKEN}"]] = 0.0
        return out, names


def _codes(values: pd.Series, known: list[str]) -> tuple[np.ndarray, int]:
    """(index into `known` per value, -1 when absent; number of missing values)."""
    if isinstance(values.dtype, pd.StringDtype):
        # Arrow's hash lookup on the strings themselves (missing values find no match):
        # several times faster than pandas' Index.get_indexer (BENCHMARKS.md, scoring
        # throughput).
        arrow = pa.array(values)  # zero-copy for pandas' Arrow-backed strings
        value_set = pa.array(known, type=arrow.type)
        codes = pc.index_in(arrow, value_set=value_set).fill_null(-1).to_numpy(
            zero_copy_only=False).astype(np.int64)
        missing = (arrow.is_null().to_numpy(zero_copy_only=False)
                   | pc.equal(arrow, MISSING_TOKEN).fill_null(False).to_numpy(
                       zero_copy_only=False))
        if missing.any() and MISSING_TOKEN in known:
            codes[missing] = known.index(MISSING_TOKEN)
        return codes, int(missing.sum())
    tokens = _as_tokens(values)
    missing_tokens = tokens == MISSING_TOKEN
    return pd.Index(known).get_indexer(tokens).astype(np.int64), int(missing_tokens.sum())


def _as_tokens(values: pd.Series) -> pd.Series:
    """Categorical values as strings, missing as an explicit token."""
    tokens = values.astype(object).where(values.notna(), MISSING_TOKEN)
    return tokens.astype(str)
