"""Known or not: the evidence of each record and the decision's calibration.

For each record (its embedding e and normalised inputs x), one kNN query in the
embedding finds its nearest reference records (a stratified sample of the training
records, rare scenarios kept whole; `cluster.stratified_sample`). From them:

1. *the vote*: the distance-weighted labels of the `VOTE_NEIGHBOURS` nearest give each
   scenario a share; the record's known scenario is the largest. Every training scenario
   is known this way, whatever HDBSCAN made of it, and a cluster never gives its majority
   label to records whose neighbours disagree;
2. *HDBSCAN*: `approximate_predict`'s cluster and strength (`assign.Assigner`), and for
   noise the cluster of the nearest clustered neighbour: sub-modes for ts_cluster and the
   reports, not the verdict;
3. *scores* under a hypothesis s (`SCORES`): 1 - the vote's share of s; the embedding
   distance to the nearest neighbour of scenario s; the input distance to s. For good
   traffic the input distance is ts_anomaly's: good traffic is modelled on its own by
   k-means prototypes of all good training records (`api.good_traffic_prototypes`), the
   distance to the nearest one Euclidean or *saturated* at c (per input, the squared
   difference counts up to c ** 2: ``sqrt(sum_j min((x_j - p_j) ** 2, c ** 2))`` to the
   nearest of the `ANOMALY_CANDIDATES` Euclidean-nearest prototypes, averaged over
   `ANOMALY_SETS` k-means fits), chosen at fit by `choose_saturation` unless
   `score.anomaly_saturation` sets it. For a failure scenario it is the distance to the
   nearest k-means prototype of that scenario's reference records: the embedding is
   trained to separate the known scenarios, so a new failure can land among a known
   one's records while its raw features still differ;
4. the scores under the voted scenario and under good traffic become p-values against
   the held-out records of the fit (`decide.Calibration`), and `decide.decide` gives the
   verdict at `score.false_alarm_rate`.

ts_anomaly is the good-traffic input distance over the `ANOMALY_QUANTILE` of the same
distance on held-out good records (1.0: the edge of 99 % of good traffic), fixed per
model: the ranking to triage by.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from trafficsiam.assign import NOISE, Assigner
from trafficsiam.config import Config
from trafficsiam.decide import Calibration, decide, rate_table

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
# The good-traffic prototypes (ts_anomaly) are fitted on at most this many good training
# records: k-means time grows with them (BENCHMARKS.md §5, bench/anomaly_cost.py).
GOOD_PROTOTYPE_RECORDS = 65536


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


# --- the evidence of each record, and the decision's calibration ------------------------

# The vote: the nearest reference records in the embedding, each weighing
# 1 / (distance + VOTE_EPS) (an identical reference record decides).
VOTE_NEIGHBOURS = 10
VOTE_EPS = 1e-6
# ts_anomaly's unit: 1.0 is what this share of the held-out good records stay under.
ANOMALY_QUANTILE = 0.99
# The nonconformity scores of a record under a hypothesis s (`decide.Calibration`):
# 1 - the vote's share of s; the embedding distance to the nearest reference record of s
# among the neighbours (the farthest neighbour's when none is); the input distance to s
# (good traffic: ts_anomaly's distance; a failure: its k-means prototypes).
SCORES = ("vote", "embedding", "inputs")


@dataclass
class Measured:
    """Per-record evidence of `KnownScorer.measure`, before any rate."""

    label: np.ndarray  # HDBSCAN approximate_predict label (-1: noise)
    strength: np.ndarray  # its membership strength
    home: np.ndarray  # label, or the nearest clustered neighbour's cluster; -1: none
    voted: np.ndarray  # the scenario code the neighbours vote for
    voted_scores: np.ndarray  # [n, 3] `SCORES` under the voted scenario
    good_scores: np.ndarray  # [n, 3] `SCORES` under good traffic (inf: no good records)
    good_distance: np.ndarray  # the input distance to good traffic (ts_anomaly, unscaled)


@dataclass
class Assessment:
    """Per-record result of `KnownScorer.judge` (arrays of one length)."""

    cluster: np.ndarray  # the HDBSCAN home cluster (-1: none), for reports and ts_cluster
    strength: np.ndarray
    voted: np.ndarray  # scenario code voted by the neighbours (ts_scenario)
    p_voted: np.ndarray  # p-value of the voted scenario
    p_good: np.ndarray  # p-value of good traffic (ts_p_good)
    novelty: np.ndarray  # rate / p_voted: above 1 the voted scenario does not explain it
    anomaly: np.ndarray  # good_distance over its ANOMALY_QUANTILE on held-out good
    explained: np.ndarray  # bool
    good: np.ndarray  # bool: the verdict is good


class KnownScorer:
    """Everything needed to judge records against what one model knows: the reference
    records (embedding, scenario, HDBSCAN cluster), the input prototypes of each
    scenario and of good traffic, and the calibration on the fit's held-out records."""

    def __init__(
        self,
        assigner: Assigner,
        reference_clusters: np.ndarray,
        reference_scenarios: np.ndarray,
        scenarios: Iterable[str],
        good_code: int,
        prototypes: np.ndarray,
        prototype_scenario: np.ndarray,
        good_prototypes: np.ndarray,
        saturation: float | None = None,
        anomaly_prototypes: np.ndarray | None = None,
        anomaly_set: np.ndarray | None = None,
    ) -> None:
        self.assigner = assigner
        self.reference_clusters = np.asarray(reference_clusters, dtype=np.int64)
        self.reference_scenarios = np.asarray(reference_scenarios, dtype=np.int64)
        self.scenarios = [str(s) for s in scenarios]
        self.good_code = int(good_code)  # -1: no good traffic among the scenarios
        self.prototypes = np.ascontiguousarray(prototypes, dtype=np.float32)
        self.prototype_scenario = np.asarray(prototype_scenario, dtype=np.int64)
        self.good_prototypes = np.ascontiguousarray(good_prototypes, dtype=np.float32)
        self.saturation = None if saturation is None else float(saturation)
        self.anomaly_prototypes = (None if anomaly_prototypes is None
                                   else np.ascontiguousarray(anomaly_prototypes, np.float32))
        self.anomaly_set = None if anomaly_set is None else np.asarray(anomaly_set, np.int64)
        self.calibration: Calibration | None = None
        self.anomaly_scale = 1.0

    def tensors(self) -> dict[str, np.ndarray]:
        """The input-space arrays a model folder stores (inputs.safetensors)."""
        out: dict[str, np.ndarray] = {
            "prototypes": self.prototypes, "prototype_scenario": self.prototype_scenario,
            "good_prototypes": self.good_prototypes}
        if self.anomaly_prototypes is not None and self.anomaly_set is not None:
            out.update(anomaly_prototypes=self.anomaly_prototypes, anomaly_set=self.anomaly_set)
        return out

    # -- distances -----------------------------------------------------------------------

    def good_distance(self, x: np.ndarray) -> np.ndarray:
        """Input distance to good traffic: Euclidean to the nearest good-traffic
        prototype, or saturated (module doc, 5.; inf: no good prototypes)."""
        if len(self.good_prototypes) == 0:
            return np.full(len(x), np.inf)
        if self.saturation is None:
            return nearest_distance(x, self.good_prototypes)
        if self.anomaly_prototypes is None or self.anomaly_set is None:
            return saturated_distance(x, self.good_prototypes, self.saturation)
        return saturated_anomaly(x, self.anomaly_prototypes, self.anomaly_set, self.saturation)

    def scenario_distance(self, x: np.ndarray, codes: np.ndarray,
                          good_distance: np.ndarray) -> np.ndarray:
        """Input distance of each record to the scenario `codes` names: good traffic's
        distance for the good scenario, else the nearest prototype of that scenario."""
        out = np.empty(len(x), dtype=np.float64)
        for s in np.unique(codes).tolist():
            at = np.flatnonzero(codes == s)
            if s == self.good_code and len(self.good_prototypes):
                out[at] = good_distance[at]
                continue
            protos = self.prototypes[self.prototype_scenario == s]
            out[at] = nearest_distance(x[at], protos if len(protos) else self.prototypes)
        return out

    def neighbours(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reference records nearest each embedding: enough for HDBSCAN's assignment
        and for the vote (one kNN query serves both)."""
        k = min(max(self.assigner.k, VOTE_NEIGHBOURS), len(self.reference_scenarios))
        return self.assigner.neighbours(emb, k)

    def clusters(self, dist: np.ndarray, idx: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label, strength, home) per record from its neighbours: HDBSCAN's
        approximate_predict, and for noise the cluster of the clustered neighbour nearest
        in mutual reachability (reports and ts_cluster; the verdict does not use it)."""
        assigner = self.assigner
        dist, idx = dist[:, : assigner.k], idx[:, : assigner.k]
        mr = assigner.mutual_reachability(dist, idx)
        label, strength = assigner.predict_from_neighbours(dist, idx, mr)
        ref_cluster = self.reference_clusters[idx]
        mr_clustered = np.where(ref_cluster >= 0, mr, np.inf)
        nearest = mr_clustered.argmin(axis=1) if len(mr) else np.zeros(0, np.int64)
        rows = np.arange(len(label))
        fallback = np.where(np.isfinite(mr_clustered[rows, nearest]),
                            ref_cluster[rows, nearest], NOISE)
        return label, strength, np.where(label >= 0, label, fallback)

    def vote(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """[n, scenarios] each scenario's share of the distance-weighted vote of the
        `VOTE_NEIGHBOURS` nearest reference records."""
        dist, idx = dist[:, :VOTE_NEIGHBOURS], idx[:, :VOTE_NEIGHBOURS]
        weight = 1.0 / (dist + VOTE_EPS)
        codes = self.reference_scenarios[idx]
        share = np.zeros((len(dist), len(self.scenarios)), dtype=np.float64)
        rows = np.arange(len(dist))
        for j in range(dist.shape[1]):
            share[rows, codes[:, j]] += weight[:, j]
        share /= np.maximum(share.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        return share

    def _scores(self, share: np.ndarray, dist: np.ndarray, idx: np.ndarray,
                codes: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """[n, 3] `SCORES` of each record under the scenario `codes` names."""
        rows = np.arange(len(codes))
        dist, idx = dist[:, :VOTE_NEIGHBOURS], idx[:, :VOTE_NEIGHBOURS]
        same = self.reference_scenarios[idx] == codes[:, None]
        nearest = np.where(same, dist, np.inf).min(axis=1) if len(dist) else dist[:, 0]
        far = dist[:, -1] if dist.shape[1] else np.zeros(len(codes))
        embedding = np.where(np.isfinite(nearest), nearest, far)
        return np.column_stack([1.0 - share[rows, codes], embedding, inputs])

    def measure_batch(self, emb: np.ndarray, x: np.ndarray) -> Measured:
        """The evidence of one batch of records (embeddings, normalised inputs)."""
        n = emb.shape[0]
        if n == 0:
            e_i, e_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
            return Measured(e_i, e_f, e_i, e_i, np.zeros((0, 3)), np.zeros((0, 3)), e_f)
        dist, idx = self.neighbours(emb)
        label, strength, home = self.clusters(dist, idx)
        share = self.vote(dist, idx)
        voted = share.argmax(axis=1).astype(np.int64)
        d_good = self.good_distance(x)
        voted_scores = self._scores(share, dist, idx, voted,
                                    self.scenario_distance(x, voted, d_good))
        if self.good_code >= 0:
            good_scores = voted_scores.copy()
            at = np.flatnonzero(voted != self.good_code)
            good = np.full(len(at), self.good_code, dtype=np.int64)
            good_scores[at] = self._scores(share[at], dist[at], idx[at], good,
                                           self.scenario_distance(x[at], good, d_good[at]))
        else:
            good_scores = np.full((n, 3), np.inf)
        return Measured(label, strength, home, voted, voted_scores, good_scores, d_good)

    def measure(self, emb: np.ndarray, x: np.ndarray, batch_size: int = 16384) -> Measured:
        """`measure_batch` over batches of `batch_size` records."""
        parts = [self.measure_batch(emb[s : s + batch_size], x[s : s + batch_size])
                 for s in range(0, max(emb.shape[0], 1), batch_size)]
        return Measured(*(np.concatenate(p) for p in zip(*(vars(m).values() for m in parts),
                                                         strict=True)))

    # -- calibration and judgement -------------------------------------------------------

    def calibrate(self, emb: np.ndarray, x: np.ndarray, codes: np.ndarray) -> Calibration:
        """Calibrate on held-out records of known scenarios (never in the reference):
        the decision's p-values and ts_anomaly's unit. Returns and keeps it."""
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) == 0:
            raise ValueError("no held-out records to calibrate the decision on")
        scores = self.own_scores(emb, x, codes)
        self.calibration = Calibration.fit(scores, codes)
        good = codes == self.good_code
        if good.any() and len(self.good_prototypes):
            d = self.good_distance(x[good])
            self.anomaly_scale = max(float(np.quantile(d, ANOMALY_QUANTILE)), MIN_THRESHOLD)
        return self.calibration

    def own_scores(self, emb: np.ndarray, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """[n, 3] `SCORES` of records under the scenarios `codes` gives them."""
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) == 0:
            return np.zeros((0, 3))
        dist, idx = self.neighbours(emb)
        share = self.vote(dist, idx)
        d_good = self.good_distance(x)
        return self._scores(share, dist, idx, codes, self.scenario_distance(x, codes, d_good))

    def judge(self, m: Measured, rate: float) -> Assessment:
        """The decision (`decide.decide`) on measured records at false-alarm `rate`."""
        if self.calibration is None:
            raise ValueError("KnownScorer has no calibration: calibrate it first")
        p_voted = self.calibration.p_values(m.voted_scores, m.voted)
        if self.good_code >= 0:
            voted_good = m.voted == self.good_code
            # records voted good already have it; only the others need good's p-value
            p_good = p_voted.copy()
            other = np.flatnonzero(~voted_good)
            p_good[other] = self.calibration.p_values(
                m.good_scores[other], np.full(len(other), self.good_code))
        else:
            voted_good = np.zeros(len(m.voted), dtype=bool)
            p_good = np.zeros(len(m.voted))
        explained, good = decide(voted_good, p_voted, p_good, rate)
        anomaly = m.good_distance / self.anomaly_scale
        return Assessment(m.home, m.strength, m.voted, p_voted, p_good,
                          rate / np.maximum(p_voted, np.finfo(float).tiny), anomaly,
                          explained, good)

    def assess(self, emb: np.ndarray, x: np.ndarray, rate: float,
               batch_size: int = 16384) -> Assessment:
        """`judge(measure(...))`."""
        return self.judge(self.measure(emb, x, batch_size), rate)

    def held_out_rates(self, emb: np.ndarray, x: np.ndarray, codes: np.ndarray,
                       rates: Iterable[float]) -> list[dict[str, float]]:
        """What the decision flags among the held-out good records at each rate, each
        judged as if the calibration had not seen it (leave-one-out): `fit` prints and
        stores it; on traffic like the training data, scoring flags the same share."""
        if self.calibration is None or self.good_code < 0:
            return []
        good = np.asarray(codes) == self.good_code
        if not good.any():
            return []
        m = self.measure(emb[good], x[good])
        voted_good = m.voted == self.good_code
        p_good = self.calibration.held_out_p_values(
            m.good_scores, np.full(len(m.voted), self.good_code))
        p_voted = np.where(voted_good, p_good,
                           self.calibration.p_values(m.voted_scores, m.voted))
        return rate_table(rates, voted_good, p_voted, p_good)


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


def fit_scorer(
    assigner: Assigner, reference_clusters: np.ndarray, reference_codes: np.ndarray,
    scenarios: Iterable[str], good_code: int, x: np.ndarray, reference_rows: np.ndarray,
    good_rows: np.ndarray, held_emb: np.ndarray, held_x: np.ndarray, held_codes: np.ndarray,
    cfg: Config, rng: np.random.Generator,
) -> tuple[KnownScorer, dict[str, Any]]:
    """The fit's `KnownScorer`, calibrated on the held-out records, and what decided
    ts_anomaly's distance (manifest "anomaly"): the input prototypes of each scenario
    (of its reference records `reference_rows` of `x`), those of good traffic (of its
    training records `good_rows`), the anomaly saturation (chosen on the held-out
    records unless configured)."""
    seed, per = cfg.train.seed, cfg.cluster.prototypes
    # good traffic's input distance is the anomaly's: no prototypes of its own needed
    owners = np.where(np.asarray(reference_codes) == good_code, -1, reference_codes)
    prototypes, owner = build_prototypes(x[reference_rows], owners, per, seed)
    good_protos, anomaly_protos, anomaly_set = good_traffic_prototypes(
        x, good_rows, per, rng, seed)
    if cfg.score.anomaly_saturation == "auto":
        choice = choose_saturation(held_x, np.asarray(held_codes) == good_code, good_protos,
                                   ANOMALY_QUANTILE)
        saturation = choice.saturation
        anomaly: dict[str, Any] = {"rule": "auto", **choice.to_dict(), "why": choice.describe()}
    else:
        saturation = cfg.score.anomaly_saturation
        kind = "Euclidean" if saturation is None else f"saturated at {saturation:g}"
        anomaly = {"rule": "configured", "saturation": saturation,
                   "why": f"{kind} (score.anomaly_saturation)"}
    scorer = KnownScorer(assigner, reference_clusters, reference_codes, scenarios, good_code,
                         prototypes, owner, good_protos, saturation=saturation,
                         anomaly_prototypes=anomaly_protos, anomaly_set=anomaly_set)
    scorer.calibrate(held_emb, held_x, held_codes)
    return scorer, anomaly
