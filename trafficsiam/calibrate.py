"""Known or not: assign records to the fitted clusters and measure how novel they are.

For each record (its embedding e and normalised inputs x):

1. the ``k = 2 * min_samples`` nearest reference points in the embedding give the
   HDBSCAN `approximate_predict` label and membership strength (`assign.Assigner`);
2. *home*: that label, or, when HDBSCAN calls the record noise, the cluster of the
   clustered neighbour nearest in mutual reachability (HDBSCAN leaves a few percent of
   ordinary training records unclustered at cluster edges; without this they would all
   be flagged);
3. two novelty distances, each divided by its threshold for the home cluster:

   - *embedding*: mutual-reachability distance to the nearest reference point (how far
     the record lies from the known dense regions of the embedding);
   - *inputs*: Euclidean distance in the normalised input space to the nearest k-means
     prototype of the home cluster (`build_prototypes`: up to 256 per cluster, fitted on
     the cluster's reference records). The embedding is trained to separate the known
     scenarios, so a new failure can land inside a known cluster; its raw features still
     differ from the training records of that cluster, and this distance sees that.
     Prototypes, not the records themselves: an exact kNN in 35+ dimensions runs at
     ~55k records/s here, the prototypes at several times that, and on the sample data
     they flag unseen failures as well (BENCHMARKS.md). With no home cluster, the
     nearest prototype of any cluster.

   ``novelty = max(embedding / T_emb[home], inputs / T_in[home])``: 1.0 is the edge of
   what ``quantile`` of held-out training records of that cluster reach; the thresholds
   are fixed per model, so novelty is comparable across runs of one model;
4. *explained* = a home cluster exists and novelty <= 1;
5. *anomaly*: how unlike good traffic the record is, whatever its home. Good traffic is
   modelled on its own, apart from the clusters: k-means prototypes of all good training
   records (`api.good_traffic_prototypes`; HDBSCAN leaves good records at cluster edges
   as noise, and the reference is a sample). The distance to the nearest one is
   Euclidean or *saturated* at c: per input, the squared difference counts up to
   c ** 2 and no further, ``sqrt(sum_j min((x_j - p_j) ** 2, c ** 2))`` to the nearest
   of the `ANOMALY_CANDIDATES` Euclidean-nearest prototypes, averaged over
   `ANOMALY_SETS` k-means fits of good traffic (`saturated_anomaly`), so that one input
   far off (a counter good training traffic never set) cannot outweigh the rest.
   ``score.anomaly_saturation: auto`` (the default) chooses at fit from the held-out
   records (`choose_saturation`): saturated when the known failures differ from good
   traffic in more inputs at once than good traffic's own spread, Euclidean when they
   move one or two inputs far (a number or null sets it). Over the `quantile` of the
   same distance on the held-out good records. Novelty asks "is this still its
   scenario?"; a new attack that lands near a known attack is not novel but is
   anomalous, and ranking by anomaly is what tells new failures from good traffic
   (BENCHMARKS.md, detection quality). Without good records it is the novelty; models
   fitted before the good-traffic prototypes (format 2) measure the Euclidean distance
   to their good clusters' prototypes, format 3 models the saturated one to their good
   prototypes as one fit, as they were calibrated.
6. with `score.good_within_radius`, two opinions are needed to flag a record: one that
   step 4 leaves unexplained but whose anomaly is <= 1 (its inputs inside good
   traffic's `quantile` radius) is explained as good traffic instead, by the good
   cluster of its nearest good-cluster prototype in the inputs (its novelty is kept).
   Normal traffic that has drifted away from the training records in the embedding
   while its inputs still look like good traffic stops raising alarms; a new failure
   must be unlike good traffic in the inputs to be flagged (BENCHMARKS.md §5).

Thresholds come from the held-out validation records of the fit (never seen by the
clusterer): per home cluster, the `quantile` of each distance. A cluster with fewer than
`min_records` held-out records uses the thresholds of all held-out records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from trafficsiam.assign import NOISE, Assigner

# The saturated anomaly is the mean over `ANOMALY_SETS` k-means fits of good traffic,
# each with half of `cluster.prototypes`, of the saturated distance to the nearest of the
# record's `ANOMALY_CANDIDATES` Euclidean-nearest prototypes of that fit (each fit on its
# own quarter of the good records: `api.good_traffic_prototypes`). NSL-KDD, c = 0.25,
# novel AUROC / recall at 5 % (BENCHMARKS.md §5; offline, training seeds 0-2, the full
# training set and the 20 % subset): one fit of 256 (the first version) 0.952-0.963 /
# 0.81-0.83 and 0.944-0.955 / 0.81-0.82, moving with the k-means seed; 4 fits of 128
# 0.964-0.966 / 0.81-0.82 and 0.963-0.968 / 0.81-0.82; 4 of 64 with 8 candidates ranks
# higher (0.966-0.970) but recalls less at 5 % (0.75-0.78).
ANOMALY_SETS = 4
ANOMALY_CANDIDATES = 2
# score.anomaly_saturation "auto": the saturation chosen at fit when the known failures
# move more inputs at once than good traffic's own spread does (`choose_saturation`).
AUTO_SATURATION = 0.25
# ... and the fewest held-out failure records outside good traffic's radius that the
# choice is made on; with fewer, the distance stays Euclidean.
AUTO_MIN_RECORDS = 30
# A threshold of exactly 0 (a cluster of identical records) would make every other
# distance infinitely novel: floor it.
MIN_THRESHOLD = 1e-9


def build_prototypes(
    inputs: np.ndarray, clusters: np.ndarray, per_cluster: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(prototypes float32 [P, D], cluster of each prototype): k-means per cluster, with
    k = min(per_cluster, records // 10) (at least 1)."""
    protos, owner = [], []
    for cluster in np.unique(clusters[clusters >= 0]):
        points = np.asarray(inputs[clusters == cluster], dtype=np.float32)
        k = max(1, min(per_cluster, len(points) // 10))
        if k == 1:
            centres = points.mean(axis=0, keepdims=True)
        else:
            centres = KMeans(k, n_init=1, random_state=seed).fit(points).cluster_centers_
        protos.append(np.asarray(centres, dtype=np.float32))
        owner.append(np.full(len(centres), int(cluster), dtype=np.int64))
    if not protos:
        return np.zeros((0, inputs.shape[1]), np.float32), np.zeros(0, np.int64)
    return np.concatenate(protos), np.concatenate(owner)


# Rows per product in `nearest_distance`: the [prototypes, rows] float32 temporary stays
# in cache (512 KiB for 256 prototypes). A whole 65,536-row batch against 256 prototypes
# made a 64 MiB temporary: 0.44 -> 0.27 us/row, the same bits.
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
# by argpartition, which is slow along the prototype axis: the saturated distance to 2 of
# 128 prototypes costs 1.32 us/row with it, 0.77 with two argmins (random records, 71
# inputs, one thread; BENCHMARKS.md §5).
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

    saturation: float | None
    failure_inputs: float | None  # median effective inputs of the far failure records
    good_inputs: float | None  # ... of the held-out good records
    failure_records: int  # held-out failure records outside good traffic's radius

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
        return SaturationChoice(None, None, None, 0)
    r2 = squared_differences(np.asarray(x, dtype=np.float32), good_prototypes)
    distance = r2.sum(axis=1)  # squared: the same order as the distance
    far = ~is_good & (distance > float(np.quantile(distance[is_good], quantile)))
    n = int(far.sum())
    if n < AUTO_MIN_RECORDS:
        return SaturationChoice(None, None, None, n)
    inputs = effective_inputs(r2)
    failure, good = float(np.median(inputs[far])), float(np.median(inputs[is_good]))
    return SaturationChoice(AUTO_SATURATION if failure > good else None,
                            round(failure, 3), round(good, 3), n)


@dataclass(frozen=True)
class Thresholds:
    """Per-cluster novelty thresholds (and the pooled fallback), calibrated on held-out data."""

    quantile: float
    min_records: int
    clusters: dict[int, dict[str, float | int | bool]]
    pooled: dict[str, float | int]
    good: float | None = None  # threshold of the distance to good traffic (None: none)
    saturation: float | None = None  # the anomaly saturation `good` was calibrated with

    def lookup(self, home: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embedding, inputs) thresholds for each record's home cluster."""
        t_emb = np.full(home.shape, float(self.pooled["embedding"]))
        t_in = np.full(home.shape, float(self.pooled["inputs"]))
        for cluster, row in self.clusters.items():
            at = home == cluster
            t_emb[at] = float(row["embedding"])
            t_in[at] = float(row["inputs"])
        return t_emb, t_in

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantile": self.quantile,
            "min_records": self.min_records,
            "pooled": self.pooled,
            "clusters": [{"cluster": c, **row} for c, row in sorted(self.clusters.items())],
            "good": self.good,
            "anomaly_saturation": self.saturation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        clusters = {
            int(row["cluster"]): {k: v for k, v in row.items() if k != "cluster"}
            for row in data["clusters"]
        }
        good, saturation = data.get("good"), data.get("anomaly_saturation")
        return cls(float(data["quantile"]), int(data["min_records"]), clusters,
                   dict(data["pooled"]), None if good is None else float(good),
                   None if saturation is None else float(saturation))


@dataclass
class Assessment:
    """Per-record result of `KnownScorer.assess` (arrays of one length)."""

    label: np.ndarray  # approximate_predict label (-1: noise)
    strength: np.ndarray  # approximate_predict membership strength
    home: np.ndarray  # label, or the nearest clustered neighbour's cluster; -1: none
    embedding_distance: np.ndarray
    input_distance: np.ndarray
    novelty: np.ndarray
    explained: np.ndarray  # bool
    anomaly: np.ndarray  # unlike good traffic (module doc, 5.)

    @property
    def cluster(self) -> np.ndarray:
        """The assignment reported: the home cluster, explained or not (the verdict says
        whether it explains the record; an unexplained record's home is the nearest known
        scenario, which reports and candidates use)."""
        return self.home


@dataclass
class Measured:
    """Per-record distances of `KnownScorer.measure`, before thresholds."""

    x: np.ndarray  # the normalised inputs (the radius rule needs them)
    label: np.ndarray
    strength: np.ndarray
    home: np.ndarray
    embedding_distance: np.ndarray
    input_distance: np.ndarray
    good_distance: np.ndarray | None  # to the good-traffic prototypes (None: not measured)


class KnownScorer:
    """Everything needed to assess records against the known clusters of one model."""

    def __init__(
        self,
        assigner: Assigner,
        reference_clusters: np.ndarray,
        prototypes: np.ndarray,
        prototype_cluster: np.ndarray,
        thresholds: Thresholds | None = None,
        good_clusters: Iterable[int] = (),
        good_prototypes: np.ndarray | None = None,
        saturation: float | None = None,
        anomaly_prototypes: np.ndarray | None = None,
        anomaly_set: np.ndarray | None = None,
    ) -> None:
        self.assigner = assigner
        self.reference_clusters = np.asarray(reference_clusters, dtype=np.int64)
        self.prototypes = np.ascontiguousarray(prototypes, dtype=np.float32)
        self.prototype_cluster = np.asarray(prototype_cluster, dtype=np.int64)
        self.thresholds = thresholds
        self.good_clusters = np.array(sorted({int(c) for c in good_clusters}), dtype=np.int64)
        if good_prototypes is None:
            # models fitted before the good-traffic prototypes: the good clusters' own
            good_prototypes = self.prototypes[np.isin(self.prototype_cluster, self.good_clusters)]
        self.good_prototypes = np.ascontiguousarray(good_prototypes, dtype=np.float32)
        self.saturation = None if saturation is None else float(saturation)
        # the saturated anomaly's k-means fits (None: a format 3 model, whose saturated
        # distance is to its good prototypes, as one fit)
        self.anomaly_prototypes = (None if anomaly_prototypes is None
                                   else np.ascontiguousarray(anomaly_prototypes, np.float32))
        self.anomaly_set = None if anomaly_set is None else np.asarray(anomaly_set, np.int64)

    def good_distance(self, x: np.ndarray) -> np.ndarray:
        """Input distance to good traffic: Euclidean to the nearest good-traffic
        prototype, or saturated (module doc, 5.; inf: no good prototypes)."""
        if self.saturation is None:
            return nearest_distance(x, self.good_prototypes)
        if self.anomaly_prototypes is None or self.anomaly_set is None:
            return saturated_distance(x, self.good_prototypes, self.saturation)
        return saturated_anomaly(x, self.anomaly_prototypes, self.anomaly_set, self.saturation)

    def input_distance(self, x: np.ndarray, home: np.ndarray) -> np.ndarray:
        """Distance to the nearest prototype of each record's home cluster."""
        out = np.empty(len(x), dtype=np.float64)
        for cluster in np.unique(home):
            at = np.flatnonzero(home == cluster)
            protos = (self.prototypes if cluster < 0
                      else self.prototypes[self.prototype_cluster == cluster])
            out[at] = nearest_distance(x[at], protos if len(protos) else self.prototypes)
        return out

    def distances(
        self, emb: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(label, strength, home, embedding distance, input distance) per record."""
        m = emb.shape[0]
        if m == 0:
            empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
            return empty_i, empty_f, empty_i, empty_f, empty_f
        # Most records are decided by their nearest `k_short` neighbours (Assigner.decided),
        # and so is the home of most of those HDBSCAN calls noise; the others are queried
        # again with k. The results are those of one query with k (tests/test_assign.py).
        assigner = self.assigner
        dist, idx = assigner.neighbours(emb, assigner.k_short)
        mr = assigner.mutual_reachability(dist, idx)
        label, strength = assigner.predict_from_neighbours(dist, idx, mr)
        d_emb = mr.min(axis=1)
        home = label.copy()
        decided = assigner.decided(dist, idx)
        noise = np.flatnonzero(decided & (label < 0))
        if len(noise):
            # The home of a noise record is its clustered neighbour of least mutual
            # reachability; by the argument of `Assigner.decided`, a clustered one among
            # the first with core distance <= the record's own is that neighbour (the
            # first such wins ties). Only the rest need all k.
            near = idx[noise, : assigner.k_short]
            ok = ((self.reference_clusters[near] >= 0)
                  & (assigner.core_distances[near] <= dist[noise, assigner.k_short - 1, None]))
            found = ok.any(axis=1)
            first = ok.argmax(axis=1)
            home[noise[found]] = self.reference_clusters[near[found, first[found]]]
            decided[noise[~found]] = False
        again = np.flatnonzero(~decided)
        if len(again):
            if dist.shape[1] < assigner.k:
                dist, idx = assigner.neighbours(emb[again])
            else:
                dist, idx = dist[again], idx[again]
            mr = assigner.mutual_reachability(dist, idx)
            label[again], strength[again] = assigner.predict_from_neighbours(dist, idx, mr)
            d_emb[again] = mr.min(axis=1)
            ref_cluster = self.reference_clusters[idx]
            mr_clustered = np.where(ref_cluster >= 0, mr, np.inf)
            nearest = mr_clustered.argmin(axis=1)
            rows = np.arange(len(again))
            fallback = np.where(
                np.isfinite(mr_clustered[rows, nearest]), ref_cluster[rows, nearest], NOISE
            )
            home[again] = np.where(label[again] >= 0, label[again], fallback)
        return label, strength, home, d_emb, self.input_distance(x, home)

    def measure(self, emb: np.ndarray, x: np.ndarray, batch_size: int = 16384,
                good: bool = True) -> Measured:
        """The distances of each record (steps 1-3 and 5 before any threshold), in batches
        of `batch_size`; `good`: also the distance to good traffic (when there are good
        prototypes). `judge` turns them into an `Assessment` for any thresholds."""
        parts = [
            self.distances(emb[s : s + batch_size], x[s : s + batch_size])
            for s in range(0, max(emb.shape[0], 1), batch_size)
        ]
        label, strength, home, d_emb, d_in = (np.concatenate(p) for p in zip(*parts, strict=True))
        d_good = self.good_distance(x) if good and len(self.good_prototypes) else None
        return Measured(x, label, strength, home, d_emb, d_in, d_good)

    def judge(self, m: Measured, good_within_radius: bool = False,
              thresholds: Thresholds | None = None) -> Assessment:
        """Novelty, explained and anomaly of measured records (steps 3-6) under this
        scorer's thresholds, or `thresholds` (from `thresholds_from`: the same distances
        judged at other quantiles, `evaluate.operating_points`)."""
        th = self.thresholds if thresholds is None else thresholds
        if th is None:
            raise ValueError("KnownScorer has no thresholds: calibrate it first")
        home = m.home
        t_emb, t_in = th.lookup(home)
        novelty = np.maximum(m.embedding_distance / t_emb, m.input_distance / t_in)
        explained = (home >= 0) & (novelty <= 1.0)
        if th.good is None or m.good_distance is None:
            anomaly = novelty
        else:
            anomaly = m.good_distance / th.good
            if good_within_radius:
                home, explained = self._within_good_radius(m.x, home, explained, anomaly)
        return Assessment(m.label, m.strength, home, m.embedding_distance, m.input_distance,
                          novelty, explained, anomaly)

    def assess(self, emb: np.ndarray, x: np.ndarray, batch_size: int = 16384,
               good_within_radius: bool = False) -> Assessment:
        """Per-record assessment (module doc); `good_within_radius` applies 6."""
        if self.thresholds is None:
            raise ValueError("KnownScorer has no thresholds: calibrate it first")
        measured = self.measure(emb, x, batch_size, good=self.thresholds.good is not None)
        return self.judge(measured, good_within_radius)

    def _within_good_radius(
        self, x: np.ndarray, home: np.ndarray, explained: np.ndarray, anomaly: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(home, explained) with the unexplained records inside good traffic's radius
        (anomaly <= 1) explained by the good cluster of their nearest good-cluster
        prototype in the inputs (module doc, 6.)."""
        at = np.flatnonzero(~explained & (anomaly <= 1.0))
        good_protos = np.isin(self.prototype_cluster, self.good_clusters)
        if len(at) == 0 or not good_protos.any():
            return home, explained
        owner = self.prototype_cluster[good_protos]
        home, explained = home.copy(), explained.copy()
        home[at] = owner[nearest_prototype(x[at], self.prototypes[good_protos])]
        explained[at] = True
        return home, explained

    def calibrate(
        self, emb: np.ndarray, x: np.ndarray, quantile: float, min_records: int,
        good: np.ndarray | None = None,
    ) -> Thresholds:
        """Thresholds from held-out records of known scenarios (not in the reference);
        `good` marks the held-out records of good traffic (the anomaly threshold)."""
        return self.thresholds_from(self.measure(emb, x, good=good is not None),
                                    quantile, min_records, good)

    def thresholds_from(
        self, m: Measured, quantile: float, min_records: int, good: np.ndarray | None = None,
    ) -> Thresholds:
        """`calibrate` from held-out records already measured: one `measure` serves any
        number of quantiles."""
        home, d_emb, d_in = m.home, m.embedding_distance, m.input_distance
        if len(home) == 0:
            raise ValueError("no held-out records to calibrate the novelty thresholds on")

        def q(values: np.ndarray) -> float:
            return max(float(np.quantile(values, quantile)), MIN_THRESHOLD)

        pooled: dict[str, float | int] = {
            "embedding": q(d_emb), "inputs": q(d_in), "records": int(len(home)),
        }
        clusters: dict[int, dict[str, float | int | bool]] = {}
        for cluster in np.unique(self.reference_clusters[self.reference_clusters >= 0]):
            at = home == cluster
            n = int(at.sum())
            if n >= min_records:
                row: dict[str, float | int | bool] = {
                    "embedding": q(d_emb[at]), "inputs": q(d_in[at]), "records": n,
                    "pooled": False,
                }
            else:
                row = {"embedding": float(pooled["embedding"]), "inputs": float(pooled["inputs"]),
                       "records": n, "pooled": True}
            clusters[int(cluster)] = row
        t_good = None
        if good is not None and m.good_distance is not None and np.any(good):
            t_good = q(m.good_distance[np.asarray(good, dtype=bool)])
        return Thresholds(float(quantile), int(min_records), clusters, pooled, t_good,
                          self.saturation)
