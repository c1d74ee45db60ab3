"""Known or not: the evidence of each record and the decision's calibration.

For each record (its embedding e and normalised inputs x), one kNN query in the
embedding finds its nearest reference records (a stratified sample of the training
records, rare scenarios kept whole; `cluster.stratified_sample`). From them:

1. *the vote*: the distance-weighted labels of the `VOTE_NEIGHBOURS` nearest (as many
   as the model was calibrated with: manifest "calibration.vote_neighbours") give each
   scenario a share; the record's known scenario is the largest. Every training scenario
   is known this way, whatever HDBSCAN made of it, and a cluster never gives its majority
   label to records whose neighbours disagree;
2. *HDBSCAN*: `approximate_predict`'s cluster and strength (`assign.Assigner`), and for
   noise the cluster of the nearest clustered neighbour: sub-modes for ts_cluster and the
   reports, not the verdict;
3. *scores* under a hypothesis s (`SCORES`): 1 - the vote's share of s; the embedding
   distance to the nearest neighbour of scenario s; the input distance to s. For good
   traffic the input distance is ts_anomaly's: good traffic is modelled on its own by
   k-means prototypes of all good training records (`prototypes.good_traffic_prototypes`), the
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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trafficsiam.assign import NOISE, Assigner
from trafficsiam.config import Config
from trafficsiam.decide import Calibration, decide, rate_table
from trafficsiam.prototypes import (
    MIN_THRESHOLD,
    SaturationChoice,
    build_prototypes,
    choose_saturation,
    good_traffic_prototypes,
    nearest_distance,
    saturated_anomaly,
    saturated_distance,
)

# The vote: the nearest reference records in the embedding, each weighing
# 1 / (distance + VOTE_EPS) (an identical reference record decides). As many as HDBSCAN's
# assignment needs for most records (min_samples + 1 at the default min_samples): 6 and 10
# gave verdicts within the seeds' spread of each other on the four data sets, and 10 made
# every record's kNN query the longer one (BENCHMARKS.md §6). Models saved before the
# count was stored used 10.
VOTE_NEIGHBOURS = 6
LEGACY_VOTE_NEIGHBOURS = 10
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
        vote_neighbours: int = VOTE_NEIGHBOURS,
    ) -> None:
        self.assigner = assigner
        self.vote_neighbours = int(vote_neighbours)
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
        """The reference records nearest each embedding: enough for the vote and for
        HDBSCAN's assignment of most records (`Assigner.decided`); `clusters` queries the
        rest again. One kNN query serves both."""
        k = min(max(self.assigner.k_short, self.vote_neighbours),
                len(self.reference_scenarios))
        return self.assigner.neighbours(emb, k)

    def clusters(self, dist: np.ndarray, idx: np.ndarray, emb: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label, strength, home) per record from its neighbours: HDBSCAN's
        approximate_predict, and for noise the cluster of the clustered neighbour nearest
        in mutual reachability (reports and ts_cluster; the verdict does not use it).
        With fewer neighbours than the assigner's `k`, the records they cannot decide
        (and noise, whose home needs all `k`) are queried again from `emb`: the result
        is that of the full query."""
        assigner = self.assigner
        if dist.shape[1] < assigner.k and emb is not None:
            label, strength, home = self._clusters(dist, idx)
            redo = np.flatnonzero(~assigner.decided(dist, idx) | (label == NOISE))
            if len(redo):
                full = assigner.neighbours(emb[redo], assigner.k)
                label[redo], strength[redo], home[redo] = self._clusters(*full)
            return label, strength, home
        return self._clusters(dist, idx)

    def _clusters(self, dist: np.ndarray, idx: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        `vote_neighbours` nearest reference records."""
        dist, idx = dist[:, : self.vote_neighbours], idx[:, : self.vote_neighbours]
        weight = 1.0 / (dist + VOTE_EPS)
        n, width = len(dist), len(self.scenarios)
        # one bincount over (row, scenario) bins; it adds each bin's weights nearest first
        bins = (np.arange(n)[:, None] * width + self.reference_scenarios[idx]).ravel()
        share: np.ndarray = np.bincount(bins, weights=weight.ravel(), minlength=n * width)
        share = share.reshape(n, width).astype(np.float64, copy=False)
        share /= np.maximum(share.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        return share

    def _scores(self, share: np.ndarray, dist: np.ndarray, idx: np.ndarray,
                codes: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """[n, 3] `SCORES` of each record under the scenario `codes` names."""
        rows = np.arange(len(codes))
        dist, idx = dist[:, : self.vote_neighbours], idx[:, : self.vote_neighbours]
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
        label, strength, home = self.clusters(dist, idx, emb)
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

    def held_out_evidence(self, emb: np.ndarray, x: np.ndarray, codes: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(voted good, p-value of the voted scenario, p-value of good traffic) of held-out
        records of scenario `codes`, each judged as if the calibration had not seen it
        (leave-one-out under its own scenario): `decide`'s input."""
        if self.calibration is None:
            raise ValueError("KnownScorer has no calibration: calibrate it first")
        codes = np.asarray(codes, dtype=np.int64)
        m = self.measure(emb, x)
        # each record's p-value under a scenario once: leave-one-out under its own
        p_voted = self._p_held_out(m.voted_scores, m.voted, codes)
        if self.good_code < 0:
            return np.zeros(len(codes), dtype=bool), p_voted, np.zeros(len(codes))
        voted_good = m.voted == self.good_code
        p_good = p_voted.copy()  # records voted good already have it
        other = np.flatnonzero(~voted_good)
        p_good[other] = self._p_held_out(m.good_scores[other],
                                         np.full(len(other), self.good_code), codes[other])
        return voted_good, p_voted, p_good

    def _p_held_out(self, scores: np.ndarray, hypothesis: np.ndarray, own: np.ndarray
                    ) -> np.ndarray:
        """p-values of held-out records (`own`: their scenarios) under `hypothesis`:
        leave-one-out where it is their own scenario, the calibration's otherwise."""
        cal = self.calibration
        assert cal is not None
        mine = hypothesis == own
        out = np.empty(len(hypothesis), dtype=np.float64)
        out[~mine] = cal.p_values(scores[~mine], hypothesis[~mine])
        out[mine] = cal.held_out_p_values(scores[mine], hypothesis[mine])
        return out

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
        return rate_table(rates, *self.held_out_evidence(emb[good], x[good],
                                                         np.asarray(codes)[good]))

    def held_out_explained(self, emb: np.ndarray, x: np.ndarray, codes: np.ndarray,
                           rate: float) -> np.ndarray:
        """Whether the decision at `rate` explains each held-out record (the false alarms
        new-type discovery weighs candidates against), judged as `held_out_rates` does."""
        if len(codes) == 0:
            return np.zeros(0, dtype=bool)
        explained, _ = decide(*self.held_out_evidence(emb, x, codes), rate)
        return np.asarray(explained)


# The false-alarm rates at which the decision is measured on held-out good records
# (manifest "calibration", the fit summary), besides the configured one.
REPORTED_RATES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)


def calibration_facts(scorer: KnownScorer, emb: np.ndarray, x: np.ndarray,
                      codes: np.ndarray, names: Iterable[str], rate: float) -> dict[str, Any]:
    """The manifest's "calibration" of a calibrated `scorer` on its held-out records
    (`emb`, `x`, scenario `codes`): what it flags among the good ones at `rate` and at
    `REPORTED_RATES`, the records per scenario, the anomaly's unit."""
    if scorer.calibration is None:
        raise ValueError("KnownScorer has no calibration: calibrate it first")
    names = [str(n) for n in names]
    return {
        "scores": list(SCORES),
        "vote_neighbours": scorer.vote_neighbours,
        "held_out_records": {name: scorer.calibration.records(s)
                             for s, name in enumerate(names)},
        "false_alarm_rate": rate,
        "held_out_good": scorer.held_out_rates(emb, x, codes, sorted({*REPORTED_RATES, rate})),
        "anomaly_quantile": ANOMALY_QUANTILE,
        "anomaly_scale": scorer.anomaly_scale,
    }


@dataclass(frozen=True)
class GoodTraffic:
    """Good traffic in the inputs, fitted before training: ts_anomaly's prototypes
    (`good_traffic_prototypes`) and how many inputs at once the held-out failures differ
    from it in (`choose_saturation`), which decides the anomaly's saturation and
    `train.input_dropout` auto."""

    prototypes: np.ndarray
    anomaly_prototypes: np.ndarray
    anomaly_set: np.ndarray
    breadth: SaturationChoice


def good_code(scenarios: np.ndarray, good_label: str) -> int:
    """The code of good traffic among the sorted scenario names (-1: none)."""
    found = np.flatnonzero(np.asarray(scenarios) == str(good_label))
    return int(found[0]) if len(found) else -1


def good_traffic(x: np.ndarray, good_rows: np.ndarray, held_x: np.ndarray,
                 held_good: np.ndarray, cfg: Config, rng: np.random.Generator) -> GoodTraffic:
    """`GoodTraffic` of the training records `good_rows` of `x`, the breadth measured on
    the held-out records `held_x` (`held_good`: which of them are good traffic)."""
    protos, anomaly_protos, anomaly_set = good_traffic_prototypes(
        x, good_rows, cfg.cluster.prototypes, rng, cfg.train.seed)
    breadth = choose_saturation(held_x, np.asarray(held_good, dtype=bool), protos,
                                ANOMALY_QUANTILE)
    return GoodTraffic(protos, anomaly_protos, anomaly_set, breadth)


def fit_scorer(
    assigner: Assigner, reference_clusters: np.ndarray, reference_codes: np.ndarray,
    scenarios: Iterable[str], good_code: int, x: np.ndarray, reference_rows: np.ndarray,
    held_emb: np.ndarray, held_x: np.ndarray, held_codes: np.ndarray, cfg: Config,
    good: GoodTraffic,
) -> tuple[KnownScorer, dict[str, Any]]:
    """The fit's `KnownScorer`, calibrated on the held-out records, and what decided
    ts_anomaly's distance (manifest "anomaly"): the input prototypes of each scenario
    (of its reference records `reference_rows` of `x`), good traffic's (`good`), the
    anomaly saturation (`good.breadth` unless configured)."""
    seed, per = cfg.train.seed, cfg.cluster.prototypes
    # good traffic's input distance is the anomaly's: no prototypes of its own needed
    owners = np.where(np.asarray(reference_codes) == good_code, -1, reference_codes)
    prototypes, owner = build_prototypes(x[reference_rows], owners, per, seed)
    if cfg.score.anomaly_saturation == "auto":
        choice = good.breadth
        saturation = choice.saturation
        anomaly: dict[str, Any] = {"rule": "auto", **choice.to_dict(), "why": choice.describe()}
    else:
        saturation = cfg.score.anomaly_saturation
        kind = "Euclidean" if saturation is None else f"saturated at {saturation:g}"
        anomaly = {"rule": "configured", "saturation": saturation,
                   "why": f"{kind} (score.anomaly_saturation)"}
    scorer = KnownScorer(assigner, reference_clusters, reference_codes, scenarios, good_code,
                         prototypes, owner, good.prototypes, saturation=saturation,
                         anomaly_prototypes=good.anomaly_prototypes,
                         anomaly_set=good.anomaly_set)
    scorer.calibrate(held_emb, held_x, held_codes)
    return scorer, anomaly
