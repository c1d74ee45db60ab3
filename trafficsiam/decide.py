"""The verdict: one calibrated decision, the same for `score`, `evaluate`, the baselines and
both scoring engines.

Each record arrives with a *voted* scenario (the labels of its nearest reference records:
`calibrate.KnownScorer`) and, per hypothesis, a few nonconformity scores (higher: less
like that scenario). Each score becomes a conformal p-value against the held-out records
of that scenario (the share of them at least as extreme); the smallest of a record's
p-values is itself turned into a p-value against the held-out records' smallest ones, so
that one number per hypothesis has a stated meaning:

    p(s) = share of held-out records of scenario s that look at least as unlike s.

Beyond the largest held-out value of a score, the p-value continues below the conformal
floor 1 / (n + 1) along an exponential tail fitted to the largest held-out values: with
fewer than 1 / rate held-out records the floor alone would never reach the rate.

With ``rate`` = `score.false_alarm_rate`:

* ``good``: the neighbours vote good traffic **and** p(good) > rate;
* ``known_error``: the neighbours vote a known failure s **and** p(s) > rate;
* otherwise unexplained: ``new_error`` when grouped into a candidate new type, else
  ``outlier``.

So at most about ``rate`` of held-out good records are flagged for being unlike good
traffic (those whose neighbours vote a failure come on top: `fit` measures and prints
both). It imports only `contract` (the verdict names and codes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from trafficsiam.contract import GOOD, KNOWN, NEW, OUTLIER


def decide(
    voted_good: np.ndarray, p_voted: np.ndarray, p_good: np.ndarray, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """(explained, good) per record: the rule in the module doc."""
    voted_good = np.asarray(voted_good, dtype=bool)
    good = voted_good & (np.asarray(p_good) > rate)
    known = ~voted_good & (np.asarray(p_voted) > rate)
    return good | known, good


def verdict_codes(explained: np.ndarray, good: np.ndarray, grouped: np.ndarray) -> np.ndarray:
    """int8 verdict codes (index into `VERDICTS`); `grouped`: the unexplained record is in
    a candidate new type."""
    return np.where(explained, np.where(good, GOOD, KNOWN),
                    np.where(grouped, NEW, OUTLIER)).astype(np.int8)


def _exceeding(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many of `sorted_values` (ascending) are >= each of `values`."""
    return len(sorted_values) - np.searchsorted(sorted_values, values, side="left")


def _tail_scale(sorted_values: np.ndarray) -> float:
    """The spread of the largest held-out values (mean excess of the top tenth, at least
    5 values, over the smallest of them): the exponential tail beyond the largest."""
    n = len(sorted_values)
    k = min(n, max(5, n // 10))
    top = sorted_values[n - k :]
    finite = top[np.isfinite(top)]
    scale = float((finite - finite[0]).mean()) if len(finite) else 0.0
    if not scale > 0:
        spread = sorted_values[np.isfinite(sorted_values)]
        scale = float(spread[-1] - spread[0]) if len(spread) else 0.0
    return scale if scale > 0 else 1.0


def _p_beyond(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Conformal p-values (1 + held-out >= value) / (n + 1); beyond the largest held-out
    value, that floor times an exponential tail fitted to the largest ones, so that with
    few held-out records (n + 1 < 1 / rate) a record far beyond all of them can still be
    flagged, and farther is smaller."""
    n = len(sorted_values)
    p = (1.0 + _exceeding(sorted_values, values)) / (n + 1.0)
    beyond = values > sorted_values[-1]
    if beyond.any():
        excess = (values[beyond] - sorted_values[-1]) / _tail_scale(sorted_values)
        with np.errstate(over="ignore", invalid="ignore"):
            p[beyond] = np.exp(-np.nan_to_num(excess, nan=np.inf, posinf=np.inf)) / (n + 1.0)
    return p


@dataclass
class Calibration:
    """Conformal p-values per hypothesis from the held-out records of the fit.

    `scores[s]`: [k, n_s] the held-out records of scenario s, each score sorted
    ascending; `combined[s]`: their smallest leave-one-out p-values, sorted."""

    scores: dict[int, np.ndarray]
    combined: dict[int, np.ndarray]

    @classmethod
    def fit(cls, scores: np.ndarray, codes: np.ndarray) -> Calibration:
        """From held-out records: `scores` [n, k] under each record's own scenario
        (`codes`). A scenario without held-out records is never rejected (p = 1)."""
        scores = np.asarray(scores, dtype=np.float64)
        codes = np.asarray(codes, dtype=np.int64)
        out_scores, out_combined = {}, {}
        for s in np.unique(codes).tolist():
            own = scores[codes == s]
            columns = np.sort(own, axis=0).T.copy()
            out_scores[int(s)] = columns
            out_combined[int(s)] = np.sort(cls._leave_one_out(columns, own))
        return cls(out_scores, out_combined)

    @staticmethod
    def _leave_one_out(columns: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Each held-out record's smallest p-value against the others of its scenario
        (its own value counts once: (1 + others at least as extreme) / n, n the held-out
        records in `columns`, so that any subset of them gets the same p-values)."""
        n = columns.shape[1]
        p = np.stack([_exceeding(columns[j], own[:, j]) for j in range(columns.shape[0])])
        return (p / n).min(axis=0)

    def records(self, scenario: int) -> int:
        s = self.scores.get(int(scenario))
        return 0 if s is None else int(s.shape[1])

    def p_values(self, scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """p-value of each record under the scenario `codes` gives it (float64)."""
        scores = np.asarray(scores, dtype=np.float64)
        codes = np.asarray(codes, dtype=np.int64)
        out = np.ones(len(codes), dtype=np.float64)
        for s in np.unique(codes).tolist():
            columns = self.scores.get(int(s))
            if columns is None:
                continue
            at = np.flatnonzero(codes == s)
            n = columns.shape[1]
            smallest = np.stack([_p_beyond(columns[j], scores[at, j])
                                 for j in range(columns.shape[0])]).min(axis=0)
            combined = self.combined[int(s)]
            below = np.searchsorted(combined, smallest, side="right")
            p = (1.0 + below) / (n + 1.0)
            # below every held-out record's smallest p-value: scaled down from the floor
            least = combined[0]
            under = smallest < least
            p[under] = smallest[under] / least / (n + 1.0)
            out[at] = p
        return out

    def held_out_p_values(self, scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Leave-one-out p-values of the held-out records themselves (`fit`'s input):
        what the decision would say of each had it not been calibrated on it."""
        scores = np.asarray(scores, dtype=np.float64)
        codes = np.asarray(codes, dtype=np.int64)
        out = np.ones(len(codes), dtype=np.float64)
        for s in np.unique(codes).tolist():
            columns = self.scores[int(s)]
            at = np.flatnonzero(codes == s)
            n = columns.shape[1]
            smallest = self._leave_one_out(columns, scores[at])
            out[at] = np.searchsorted(self.combined[int(s)], smallest, side="right") / n
        return out


def rate_table(
    rates: Iterable[float], voted_good: np.ndarray, p_voted: np.ndarray, p_good: np.ndarray,
) -> list[dict[str, float]]:
    """Per rate: the share of the given (good) records flagged, and of those flagged
    because their neighbours vote a failure (`fit`'s measurement on held-out good)."""
    rows = []
    voted_good = np.asarray(voted_good, dtype=bool)
    n = max(len(voted_good), 1)
    for rate in rates:
        _, good = decide(voted_good, p_voted, p_good, float(rate))
        rows.append({"rate": float(rate), "flagged": float((~good).sum() / n),
                     "unlike_good": float((voted_good & ~good).sum() / n),
                     "voted_failure": float((~voted_good).sum() / n)})
    return rows
