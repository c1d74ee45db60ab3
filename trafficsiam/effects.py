"""Effect sizes: how far a group of records sits from good traffic, input by input.

One rule for every place that says what sets records apart (the report's feature
profiles; a candidate new type's distinguishing features): the standardised mean
difference on the model's normalised inputs, the pooled standard deviation floored at
`SD_FLOOR` so that a near-constant input does not explode.
"""

from __future__ import annotations

import numpy as np

SD_FLOOR = 0.05


def effect_sizes(members: np.ndarray, good: np.ndarray) -> np.ndarray:
    """(mean of `members` - mean of `good`) / pooled sd, per column of the two [n, d]
    matrices; NaN everywhere when either has no rows."""
    if len(members) == 0 or len(good) == 0:
        return np.full(members.shape[1], np.nan)
    pooled = np.sqrt((members.var(axis=0) + good.var(axis=0)) / 2)
    return (members.mean(axis=0) - good.mean(axis=0)) / np.maximum(pooled, SD_FLOOR)
