"""Input-space prototypes and the distances to them: the good-traffic model.

k-means prototypes summarise a scenario's normalised inputs (`build_prototypes`): each
failure scenario's, for the input distance of a record to that scenario, and good
traffic's (`good_traffic_prototypes`), for ts_anomaly: the distance to the nearest good
prototype, Euclidean or *saturated* at c (per input, the squared difference counts up to
c ** 2, so that one input far off cannot outweigh the rest), chosen at fit by
`choose_saturation` unless `score.anomaly_saturation` sets it. `calibrate.KnownScorer`
turns these distances into evidence; this module knows nothing of embeddings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

# The saturated anomaly is the mean over `ANOMALY_SETS` k-means fits of good traffic,
# each with half of `cluster.prototypes`, of the saturated distance to the nearest of the
# record's `ANOMALY_CANDIDATES` Euclidean-nearest prototypes of that fit (each fit on its
# own quarter of the good records: `good_traffic_prototypes`): one fit moved with its
# k-means seed, four of half the size rank steadier (BENCHMARKS.md §5).
ANOMALY_SETS = 4
ANOMALY_CANDIDATES = 2
# score.anomaly_saturation "auto": the saturation chosen at fit when the known failures
# move more inputs at once than good traffic's own spread does (`choose_saturation`).
AUTO_SATURATION = 0.25
# ... and the fewest held-out failure records outside good traffic's radius that the
# choice is made on; with fewer, the distance stays Euclidean.
AUTO_MIN_RECORDS = 30
# train.input_dropout "auto": the blanking rate under the same rule. Where the failures
# move many inputs at once, blanking some hides none, and the embedding stops hanging
# on single inputs; a failure told by one or two would be hidden (BENCHMARKS.md §6).
AUTO_INPUT_DROPOUT = 0.25
# A threshold of exactly 0 (a cluster of identical records) would make every other
# distance infinitely novel: floor it.
MIN_THRESHOLD = 1e-9
# The good-traffic prototypes (ts_anomaly) are fitted on at most this many good training
# records: k-means time grows with them (BENCHMARKS.md §5, bench/anomaly_cost.py).
GOOD_PROTOTYPE_RECORDS = 65536


def distinct_rows(points: np.ndarray) -> int:
    """How many distinct rows `points` holds (-0.0 and 0.0 alike)."""
    if len(points) == 0:
        return 0
    rows = np.ascontiguousarray(points + points.dtype.type(0))
    return len(np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))))


def build_prototypes(
    inputs: np.ndarray, clusters: np.ndarray, per_cluster: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(prototypes float32 [P, D], cluster of each prototype): k-means per cluster, with
    k = min(per_cluster, records // 10) (at least 1)."""
    protos, owner = [], []
    for cluster in np.unique(clusters[clusters >= 0]):
        points = np.asarray(inputs[clusters == cluster], dtype=np.float32)
        k = max(1, min(per_cluster, len(points) // 10))
        if k > 1:
            # never more centres than distinct records: the surplus would own none (and
            # be dropped by `_kmeans_centres`) after k-means had spent its time on them
            k = min(k, distinct_rows(points))
        if k == 1:
            centres = points.mean(axis=0, keepdims=True)
        else:
            centres = _kmeans_centres(points, k, seed)
        protos.append(np.asarray(centres, dtype=np.float32))
        owner.append(np.full(len(centres), int(cluster), dtype=np.int64))
    if not protos:
        return np.zeros((0, inputs.shape[1]), np.float32), np.zeros(0, np.int64)
    return np.concatenate(protos), np.concatenate(owner)


def _kmeans_centres(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means centres that own at least one record. Records that differ only by float
    rounding (exports repeat records) are distinct rows, yet two centres on one of them
    split nothing: one owns no record, and sklearn warns on stderr, even under --quiet.
    A centre that owns no record describes none: it is dropped, not warned of."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        km = KMeans(k, n_init=1, random_state=seed).fit(points)
    return km.cluster_centers_[np.unique(km.labels_)]


# Rows per product in `nearest_distance`: the [prototypes, rows] float32 temporary stays
# in cache; a whole batch's did not, and cost half as much again (BENCHMARKS.md §5).
NEAREST_BLOCK = 512


def _blocked_products(
    x: np.ndarray, prototypes: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(row offset, x's float32 rows of the block, |p|^2 - 2 p.x as [prototypes, rows])
    per block of `NEAREST_BLOCK` rows: the shared product of `nearest_distance` and
    `saturated_distance`, whose only temporary is that block's product."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    protos = np.asarray(prototypes, dtype=np.float32)
    weights = np.ascontiguousarray(-2.0 * protos)
    norms = np.einsum("pd,pd->p", protos, protos)[:, None]
    for start in range(0, len(x), NEAREST_BLOCK):
        rows = x[start : start + NEAREST_BLOCK]
        part = weights @ rows.T
        part += norms
        yield start, rows, part


def nearest_distance(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of x to its nearest prototype (float64).

    |p|^2 - 2 p.x is minimised over prototypes before |x|^2 is added, so the only
    temporary is a [prototypes, NEAREST_BLOCK] float32 product, reduced down its columns
    (0.27 us/row for 256 prototypes of 35 inputs, one thread). numpy's BLAS, not torch:
    torch's float32 product changed in the last bit with the thread count, and Dask
    workers run one thread where the local engine runs two (the engines must agree
    record for record)."""
    if len(prototypes) == 0:
        return np.full(len(x), np.inf)
    x = np.ascontiguousarray(x, dtype=np.float32)
    least = np.empty(len(x), dtype=np.float32)
    for start, rows, part in _blocked_products(x, prototypes):
        least[start : start + len(rows)] = part.min(axis=0)
    d2 = least + np.einsum("md,md->m", x, x)
    return np.sqrt(np.maximum(d2.astype(np.float64), 0.0))


def nearest_prototype(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Index of each row's Euclidean-nearest prototype (int64; the same blocked product
    as `nearest_distance`, so the same prototype wins)."""
    out = np.zeros(len(x), dtype=np.int64)
    if len(prototypes) == 0:
        return out
    for start, rows, part in _blocked_products(x, prototypes):
        out[start : start + len(rows)] = part.argmin(axis=0)
    return out


def saturated_distance(
    x: np.ndarray, prototypes: np.ndarray, saturation: float | None,
    candidates: int = ANOMALY_CANDIDATES,
) -> np.ndarray:
    """``sqrt(sum_j min((x_j - p_j) ** 2, saturation ** 2))`` from each row of x to the
    nearest of its `candidates` Euclidean-nearest prototypes p (float64); with
    `saturation` None, the Euclidean distance to the nearest prototype
    (`nearest_distance`). The candidates come from the same blocked product as
    `nearest_distance`; the saturated sums are float32, row by row (the same bits
    whatever the batch)."""
    if saturation is None:
        return nearest_distance(x, prototypes)
    if len(prototypes) == 0:
        return np.full(len(x), np.inf)
    protos = np.asarray(prototypes, dtype=np.float32)
    cap = np.float32(saturation) ** 2
    m = min(int(candidates), len(protos))
    out = np.empty(len(x), dtype=np.float32)
    for start, rows, part in _blocked_products(x, protos):
        near = _nearest_few(part, m)
        best = np.full(len(rows), np.inf, dtype=np.float32)
        for idx in near:
            diff = rows - protos[idx]
            np.square(diff, out=diff)
            np.minimum(diff, cap, out=diff)
            np.minimum(best, diff.sum(axis=1), out=best)
        out[start : start + len(rows)] = best
    return np.sqrt(out.astype(np.float64))


# Up to this many candidates are found by repeated argmin over the block's product, more
# by argpartition, which is slow along the prototype axis (BENCHMARKS.md §5).
ARGMIN_CANDIDATES = 3


def _nearest_few(part: np.ndarray, m: int) -> np.ndarray:
    """[m, rows] indices of the m smallest entries of each column of `part` (which it
    overwrites), in no particular order."""
    if m > ARGMIN_CANDIDATES:
        return np.argpartition(part, m - 1, axis=0)[:m]
    cols = np.arange(part.shape[1])
    near = np.empty((m, part.shape[1]), dtype=np.intp)
    for i in range(m):
        near[i] = part.argmin(axis=0)
        if i + 1 < m:
            part[near[i], cols] = np.inf
    return near


def saturated_anomaly(
    x: np.ndarray, prototypes: np.ndarray, prototype_set: np.ndarray, saturation: float,
) -> np.ndarray:
    """The mean over the k-means fits (`prototype_set` numbers each prototype's fit) of
    `saturated_distance` to that fit's prototypes (module doc, 5.; float64)."""
    sets = np.unique(prototype_set)
    if len(sets) == 0:
        return np.full(len(x), np.inf)
    total = np.zeros(len(x), dtype=np.float64)
    for s in sets:
        total += saturated_distance(x, prototypes[prototype_set == s], saturation)
    return total / len(sets)


def squared_differences(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """[rows, D] float64: each row's squared difference from its nearest prototype."""
    nearest = prototypes[nearest_prototype(x, prototypes)]
    return np.square(np.asarray(x, np.float64) - nearest)


def effective_inputs(r2: np.ndarray) -> np.ndarray:
    """Per row of squared differences r_j^2, how many inputs they are spread over: the
    participation ratio ``(sum_j r_j^2)^2 / sum_j r_j^4`` (1: one input; D: all alike)."""
    total = r2.sum(axis=1)
    return np.square(total) / np.maximum(np.square(r2).sum(axis=1), np.finfo(float).tiny)


@dataclass(frozen=True)
class SaturationChoice:
    """What `choose_saturation` saw and chose (saved in the manifest, printed by fit)."""

    failure_inputs: float | None  # median effective inputs of the far failure records
    good_inputs: float | None  # ... of the held-out good records
    failure_records: int  # held-out failure records outside good traffic's radius

    @property
    def many_inputs(self) -> bool:
        """The known failures move more inputs at once than good traffic's own spread."""
        return (self.failure_inputs is not None and self.good_inputs is not None
                and self.failure_inputs > self.good_inputs)

    @property
    def saturation(self) -> float | None:
        """The anomaly's saturation this chooses (None: Euclidean)."""
        return AUTO_SATURATION if self.many_inputs else None

    def to_dict(self) -> dict[str, Any]:
        return {"saturation": self.saturation, "failure_inputs": self.failure_inputs,
                "good_inputs": self.good_inputs, "failure_records": self.failure_records}

    def describe(self) -> str:
        kind = "Euclidean" if self.saturation is None else f"saturated at {self.saturation:g}"
        if self.failure_inputs is None or self.good_inputs is None:
            return (f"{kind} ({self.failure_records} held-out failure records outside good "
                    f"traffic's radius, under the {AUTO_MIN_RECORDS} the choice needs)")
        return (f"{kind}: the known failures differ from good traffic in "
                f"{self.failure_inputs:.1f} inputs at once, good traffic's own spread "
                f"in {self.good_inputs:.1f} ({self.failure_records} held-out failure records)")


def choose_saturation(
    x: np.ndarray, is_good: np.ndarray, good_prototypes: np.ndarray, quantile: float,
) -> SaturationChoice:
    """``score.anomaly_saturation: auto``, decided on held-out training records: the
    anomaly counts inputs (saturated at `AUTO_SATURATION`) when the known failures that
    lie outside good traffic's `quantile` radius differ from good traffic in more inputs
    at once (median `effective_inputs`) than the held-out good records differ from their
    own nearest prototypes; otherwise it stays Euclidean. Failures that move one or two
    inputs far (a latency spike) need the Euclidean distance, which lets one input
    count fully; failures that change many fields at once (scans, floods) are told from
    good traffic that drifted in one field by counting fields (BENCHMARKS.md §5)."""
    is_good = np.asarray(is_good, dtype=bool)
    if len(good_prototypes) == 0 or not is_good.any():
        return SaturationChoice(None, None, 0)
    r2 = squared_differences(np.asarray(x, dtype=np.float32), good_prototypes)
    distance = r2.sum(axis=1)  # squared: the same order as the distance
    far = ~is_good & (distance > float(np.quantile(distance[is_good], quantile)))
    n = int(far.sum())
    if n < AUTO_MIN_RECORDS:
        return SaturationChoice(None, None, n)
    inputs = effective_inputs(r2)
    # rounded as stored, so that the manifest's numbers give the choice again
    return SaturationChoice(round(float(np.median(inputs[far])), 3),
                            round(float(np.median(inputs[is_good])), 3), n)


def choose_input_dropout(breadth: SaturationChoice) -> tuple[float, str]:
    """``train.input_dropout: auto`` (rate, why), decided by `choose_saturation`'s rule
    before training: `AUTO_INPUT_DROPOUT` where the known failures move more inputs at
    once than good traffic's own spread, none otherwise. Blanking inputs at random hides
    a failure told by one or two of them (the sample data's KPIs, 5G's) and leaves one
    told by many (scans, floods) visible, while the embedding learns not to hang on any
    single input: good traffic that drifted in one or two fields stays near good traffic
    (NSL-KDD's test set; BENCHMARKS.md §6)."""
    if breadth.failure_inputs is None or breadth.good_inputs is None:
        return 0.0, (f"none ({breadth.failure_records} held-out failure records outside good "
                     f"traffic's radius, under the {AUTO_MIN_RECORDS} the choice needs)")
    rate = AUTO_INPUT_DROPOUT if breadth.many_inputs else 0.0
    return rate, (f"{'none' if rate == 0 else f'{rate:g}'}: the known failures differ from "
                  f"good traffic in {breadth.failure_inputs:.1f} inputs at once, good "
                  f"traffic's own spread in {breadth.good_inputs:.1f}")


# --- the evidence of each record, and the decision's calibration ------------------------



def good_traffic_prototypes(
    x: np.ndarray, good_rows: np.ndarray, per_cluster: int, rng: np.random.Generator,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means prototypes of the good training records (ts_anomaly), fitted on
    at most `GOOD_PROTOTYPE_RECORDS` of them, a reproducible sample: (`per_cluster`
    prototypes for the Euclidean distance, `ANOMALY_SETS` fits of half as many
    for the saturated one, each on its own share of the records, stacked, the fit of
    each); [0, D] without any."""
    if len(good_rows) > GOOD_PROTOTYPE_RECORDS:
        good_rows = np.sort(rng.choice(good_rows, GOOD_PROTOTYPE_RECORDS, replace=False))
    protos, _ = build_prototypes(x[good_rows], np.zeros(len(good_rows), np.int64),
                                 per_cluster, seed)
    # a bagged ensemble: each fit on its own quarter of the sample (as good as each on all
    # of it, at a quarter of the k-means time; BENCHMARKS.md §5)
    parts = [good_rows[s::ANOMALY_SETS] for s in range(ANOMALY_SETS)]
    fits = [build_prototypes(x[rows], np.zeros(len(rows), np.int64),
                             max(1, per_cluster // 2), seed + 1 + s)[0]
            for s, rows in enumerate(parts) if len(rows)]
    if not fits:
        return protos, protos, np.zeros(0, np.int64)
    owner = np.concatenate([np.full(len(f), s, np.int64) for s, f in enumerate(fits)])
    return protos, np.concatenate(fits).astype(np.float32), owner
