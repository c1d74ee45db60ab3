"""Feature profiles: what sets a group of records apart from good traffic.

For every input of the model (each numeric feature, each missing-value indicator, each
one-hot category) and every group, the effect size is the standardised mean difference
between the group and good traffic on the model's normalised inputs (signed log1p,
robust scaling, clipping; one-hot 0/1): `trafficsiam.effects.effect_sizes`.
Typical values are medians in the data's own units (numeric features, missing values left
out) or the share of records with the value (categories, missing indicators), on both
sides. One long table, one row per (group, input): `features_by_cluster.csv`.

A good cluster is compared with the good records outside it (`rest_of_good`): against all
good traffic, which it mostly is, every effect would be about zero. A good cluster that
is nearly all of good traffic has no profile.

A categorical value never seen at fit has an input of its own here, `col=value (new)`
(`Normaliser.with_new`), where the model sees it as "(other)": a new response code is
named, not hidden among the rare ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trafficsiam.effects import effect_sizes
from trafficsiam.normalise import Normaliser
from trafficsiam.validate import numeric_matrix

COLUMNS = ["kind", "group", "cluster", "feature", "type", "effect", "rank", "median",
           "good_median", "share", "good_share", "records", "good_records", "versus"]
GOOD, OTHER_GOOD = "good", "other good"  # what a group is compared with (`versus`)
# Fewer good records outside a good cluster than this: it gets no profile.
MIN_OTHER_GOOD = 30


@dataclass
class Members:
    """Records of one group: raw feature columns and the model's normalised inputs."""

    kind: str
    group: str  # display name: cluster name, candidate name, "outlier"
    cluster: int  # known cluster id; -1 for candidates and outliers
    raw: pd.DataFrame
    x: np.ndarray


def _sig(value: float) -> float:
    return float(f"{value:.6g}") if np.isfinite(value) else float("nan")


def _medians(raw: pd.DataFrame, numeric: list[str]) -> np.ndarray:
    if not numeric or len(raw) == 0:
        return np.full(len(numeric), np.nan)
    values = numeric_matrix(raw, tuple(numeric))
    out = np.full(len(numeric), np.nan)
    for j in range(len(numeric)):
        col = values[:, j]
        col = col[~np.isnan(col)]
        if len(col):
            out[j] = float(np.median(col))
    return out


def rest_of_good(good: Members, inside: np.ndarray) -> Members | None:
    """The records of `good` outside a good cluster (`inside`: a mask over them), or None
    when fewer than MIN_OTHER_GOOD are left (`good` without its own rows: None too)."""
    if len(good.raw) != len(good.x) or int((~inside).sum()) < MIN_OTHER_GOOD:
        return None
    return Members(good.kind, OTHER_GOOD, -1, good.raw[~inside], good.x[~inside])


def feature_profile(normaliser: Normaliser, groups: list[Members], good: Members,
                    own: Mapping[int, Members | None] | None = None) -> pd.DataFrame:
    """The long-form profile of `groups` against `good` (see the module docstring); a
    cluster id in `own` (the good clusters) is compared with its own reference instead,
    and left out where that is None."""
    own = own or {}
    everyone = [m.raw for m in [*groups, good] if len(m.raw) == len(m.x) and len(m.raw)]
    new = normaliser.new_values(pd.concat(everyone, ignore_index=True)) if everyone else {}
    _, names = normaliser.with_new(good.raw, good.x, new)
    k = len(normaliser.numeric)
    n_ind = len(normaliser.missing_indicator)
    kinds = ["numeric"] * k + ["missing"] * n_ind + ["category"] * (len(names) - k - n_ind)
    rows: list[dict[str, object]] = []
    for m in groups:
        reference = own.get(m.cluster, good) if m.kind == "cluster" else good
        if len(m.x) == 0 or reference is None:
            continue
        rows += _rows(normaliser, m, reference, new, names, kinds)
    return pd.DataFrame(rows, columns=COLUMNS)


def _rows(normaliser: Normaliser, m: Members, good: Members, new: dict[str, list[str]],
          names: list[str], kinds: list[str]) -> list[dict[str, object]]:
    k = len(normaliser.numeric)
    good_x, _ = normaliser.with_new(good.raw, good.x, new)
    g_mean = good_x.mean(axis=0) if len(good_x) else np.full(len(names), np.nan)
    g_median = _medians(good.raw, normaliser.numeric)
    versus = OTHER_GOOD if good.group == OTHER_GOOD else GOOD
    rows = []
    x, _ = normaliser.with_new(m.raw, m.x, new)
    m_mean = x.mean(axis=0)
    effect = effect_sizes(x, good_x)
    rank = np.empty(len(names), np.int64)
    rank[np.argsort(-np.abs(np.nan_to_num(effect)), kind="stable")] = np.arange(
        1, len(names) + 1)
    median = _medians(m.raw, normaliser.numeric)
    for j, name in enumerate(names):
        numeric = j < k
        rows.append({
            "kind": m.kind, "group": m.group, "cluster": m.cluster,
            "feature": name, "type": kinds[j],
            "effect": round(float(effect[j]), 3) if np.isfinite(effect[j]) else np.nan,
            "rank": int(rank[j]),
            "median": _sig(median[j]) if numeric else np.nan,
            "good_median": _sig(g_median[j]) if numeric else np.nan,
            "share": np.nan if numeric else round(float(m_mean[j]), 4),
            "good_share": np.nan if numeric else round(float(g_mean[j]), 4),
            "records": int(len(m.x)), "good_records": int(len(good_x)),
            "versus": versus,
        })
    return rows


def top_features(profile: pd.DataFrame, kind: str, group: str, top: int
                 ) -> list[dict[str, object]]:
    """The `top` rows of a group by |effect| (rank 1 first), as dicts for a card."""
    rows = profile[(profile["kind"] == kind) & (profile["group"] == group)]
    rows = rows[rows["rank"] <= top].sort_values("rank")
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in rows.to_dict(orient="records")]
