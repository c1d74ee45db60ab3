"""Cluster: HDBSCAN on the embeddings of training records, each cluster named after
its majority scenario.

HDBSCAN runs on a stratified sample (at most `cluster.max_points` records) so that
fit time stays bounded on large inputs while rare scenarios keep enough records
to form a cluster. The sample's embeddings are stored in the artifact; loading
refits HDBSCAN from them (deterministic) and checks that the stored labels come
back, so the clusterer is restored from data, never from a pickle.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import hdbscan
import numpy as np
import pandas as pd

from trafficsiam.config import ClusterConfig
from trafficsiam.errors import ArtifactError, ConfigError

log = logging.getLogger("trafficsiam")

NOISE = -1


@dataclass
class ClusterResult:
    sample_idx: np.ndarray  # rows of the embedding matrix that were clustered
    scenarios: np.ndarray  # scenario per sampled row
    labels: np.ndarray  # HDBSCAN label per sampled row (-1 = noise)
    strength: np.ndarray  # HDBSCAN membership probability per sampled row
    outlier_score: np.ndarray  # GLOSH outlier score per sampled row
    table: pd.DataFrame  # one row per cluster, plus the noise row
    params: dict[str, Any]  # resolved HDBSCAN parameters, enough to refit
    clusterer: hdbscan.HDBSCAN
    # One row per epsilon candidate tried (empty when epsilon was configured).
    selection: list[dict[str, float]] = field(default_factory=list)

    @property
    def weighted_purity(self) -> float:
        """Share of clustered (non-noise) records whose scenario names their cluster."""
        rows = self.table[self.table["cluster"] != NOISE]
        if rows["size"].sum() == 0:
            return 0.0
        return float((rows["purity"] * rows["size"]).sum() / rows["size"].sum())

    @property
    def explained_share(self) -> float:
        """Share of clustered records in a cluster named after their own scenario."""
        return explained_share(self.labels, self.scenarios)

    @property
    def noise_share(self) -> float:
        return float((self.labels == NOISE).mean())


def stratified_sample(labels: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """At most `max_points` row indices; small classes kept whole, large ones thinned.

    Water-filling: every class gets an equal share of the budget, a class smaller
    than its share keeps all its rows, and what it leaves over goes to the rest.
    """
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = np.zeros(len(classes), dtype=np.int64)
    budget, open_ = max_points, np.ones(len(classes), dtype=bool)
    while budget > 0 and open_.any():
        share = max(1, budget // int(open_.sum()))
        for c in np.flatnonzero(open_):
            take = min(share, counts[c] - quota[c], budget)
            quota[c] += take
            budget -= take
            if quota[c] == counts[c]:
                open_[c] = False
            if budget == 0:
                break
    picked = [
        rng.choice(np.flatnonzero(inverse == c), size=int(quota[c]), replace=False)
        for c in range(len(classes))
    ]
    return np.sort(np.concatenate(picked))


# Candidate cluster_selection_epsilon values when it is chosen automatically. The
# lossless loss packs each scenario's sub-modes (web, streaming, DNS...) into very
# dense knots; with epsilon 0, HDBSCAN can keep the knots and call the records
# between them noise (a large share on some seeds of the sample data). A small epsilon merges
# knots closer than it. Embeddings live in [0,1]^N, so these are absolute distances.
EPSILON_CANDIDATES = (0.0, 0.025, 0.05, 0.1, 0.2)
# A candidate must beat a smaller epsilon by this much to be preferred: finer
# clusters are kept unless merging explains clearly more records.
EPSILON_TOLERANCE = 0.002


def resolve_params(cfg: ClusterConfig, n_points: int) -> dict[str, Any]:
    """HDBSCAN parameters with the automatic ones filled in for this sample size
    (cluster_selection_epsilon stays None when it is to be selected)."""
    # 0.5% of the sample: big enough that good traffic does not shatter into
    # hundreds of micro-clusters, small enough for rare scenarios (>= 10 records).
    mcs = cfg.min_cluster_size or int(np.clip(round(0.005 * n_points), 10, 200))
    mcs = min(mcs, max(2, n_points // 2))
    min_samples = min(cfg.min_samples or mcs, mcs)
    return {
        "min_cluster_size": int(mcs),
        "min_samples": int(min_samples),
        "cluster_selection_method": cfg.cluster_selection_method,
        "cluster_selection_epsilon": cfg.cluster_selection_epsilon,
    }


def check_min_cluster_size(cfg: ClusterConfig, n_points: int) -> None:
    """Refuse a configured min_cluster_size that no cluster of `n_points` could reach
    (checked before training on the record count, and again on the clustered sample)."""
    if cfg.min_cluster_size is not None and cfg.min_cluster_size > n_points:
        raise ConfigError(
            f"cluster.min_cluster_size {cfg.min_cluster_size} is larger than the "
            f"{n_points} training records to cluster, so no cluster could form; set it "
            "below that (a few percent of the records) or leave it empty for automatic"
        )


def make_clusterer(params: dict[str, Any]) -> hdbscan.HDBSCAN:
    # core_dist_n_jobs=1: hdbscan's default starts a joblib process pool above 16,384
    # points, which costs more than the work it shares (BENCHMARKS.md §2).
    return hdbscan.HDBSCAN(prediction_data=True, core_dist_n_jobs=1, **params)


def explained_share(labels: np.ndarray, scenarios: np.ndarray) -> float:
    """Share of records in a (non-noise) cluster whose majority scenario is their own."""
    frame = pd.DataFrame({"c": labels, "s": scenarios})
    clustered = frame[frame["c"] != NOISE]
    if clustered.empty:
        return 0.0
    majority = clustered.groupby(["c", "s"]).size().groupby(level="c").max()
    return float(majority.sum() / len(frame))


def _fit_best(
    points: np.ndarray, scenarios: np.ndarray, params: dict[str, Any]
) -> tuple[hdbscan.HDBSCAN, dict[str, Any], list[dict[str, float]]]:
    """Fit HDBSCAN; when epsilon is None, pick it from the candidates by the labels."""
    if params["cluster_selection_epsilon"] is not None:
        return make_clusterer(params).fit(points), params, []
    best: tuple[float, hdbscan.HDBSCAN, dict[str, Any]] | None = None
    trials: list[dict[str, float]] = []
    for eps in EPSILON_CANDIDATES:
        trial = {**params, "cluster_selection_epsilon": eps}
        clusterer = make_clusterer(trial).fit(points)
        score = explained_share(clusterer.labels_, scenarios)
        trials.append({
            "cluster_selection_epsilon": eps,
            "clusters": int(clusterer.labels_.max() + 1),
            "noise_share": float((clusterer.labels_ == NOISE).mean()),
            "explained_share": score,
        })
        if best is None or score > best[0] + EPSILON_TOLERANCE:
            best = (score, clusterer, trial)
    assert best is not None
    return best[1], best[2], trials


def fit_clusters(
    embeddings: np.ndarray,
    scenarios: np.ndarray,
    cfg: ClusterConfig,
    good_label: str,
    rng: np.random.Generator,
) -> ClusterResult:
    """Cluster a stratified sample of `embeddings` and name clusters after `scenarios`."""
    sample = stratified_sample(scenarios, cfg.max_points, rng)
    check_min_cluster_size(cfg, len(sample))
    points = np.ascontiguousarray(embeddings[sample], dtype=np.float64)
    clusterer, params, trials = _fit_best(
        points, scenarios[sample], resolve_params(cfg, len(sample))
    )
    labels = clusterer.labels_.astype(np.int64)
    table = name_clusters(labels, scenarios[sample], clusterer.probabilities_, good_label)
    named = set(table.loc[table["cluster"] != NOISE, "scenario"])
    unnamed = sorted({str(s) for s in scenarios} - named)
    if unnamed:
        # Not a warning since issue 16: a known scenario is recognised by the vote of its
        # labelled neighbours, whatever HDBSCAN did with it.
        log.info(
            "%d scenario(s) have no cluster of their own; their records are still "
            "recognised by their labelled neighbours, clusters only name sub-modes for "
            "ts_cluster and the reports (lower cluster.min_cluster_size for one): %s",
            len(unnamed), ", ".join(repr(s) for s in unnamed),
        )
    return ClusterResult(
        sample_idx=sample,
        scenarios=scenarios[sample],
        labels=labels,
        strength=clusterer.probabilities_.astype(np.float64),
        outlier_score=np.nan_to_num(clusterer.outlier_scores_.astype(np.float64)),
        table=table,
        params=params,
        clusterer=clusterer,
        selection=trials,
    )


def name_clusters(
    labels: np.ndarray, scenarios: np.ndarray, strength: np.ndarray, good_label: str
) -> pd.DataFrame:
    """One row per cluster: its majority scenario, purity, scenario mix and strength.

    A scenario split over several clusters gets names `good`, `good-2`, ... by size.
    """
    frame = pd.DataFrame({"cluster": labels, "scenario": scenarios, "strength": strength})
    per_scenario = frame["scenario"].value_counts()
    noise_per_scenario = frame.loc[frame["cluster"] == NOISE, "scenario"].value_counts()
    rows = []
    for cluster, part in frame.groupby("cluster", sort=True):
        mix = part["scenario"].value_counts()
        top = str(mix.index[0])
        rows.append({
            "cluster": int(cluster),
            "scenario": top if cluster != NOISE else "",
            "size": len(part),
            "share": len(part) / len(frame),
            "purity": float(mix.iloc[0] / len(part)),
            "mean_strength": float(part["strength"].mean()),
            "mix": json.dumps({str(k): int(v) for k, v in mix.items()}),
        })
    table = pd.DataFrame(rows)
    table["scenario_noise_share"] = [
        float(noise_per_scenario.get(s, 0) / per_scenario[s]) if s else 1.0
        for s in table["scenario"]
    ]
    table["is_good"] = table["scenario"] == good_label
    names = {}
    real = table[table["cluster"] != NOISE].sort_values(
        ["size", "cluster"], ascending=[False, True]
    )
    seen: dict[str, int] = {}
    for cluster, scenario in zip(real["cluster"], real["scenario"], strict=True):
        seen[scenario] = seen.get(scenario, 0) + 1
        names[cluster] = scenario if seen[scenario] == 1 else f"{scenario}-{seen[scenario]}"
    names[NOISE] = "noise"
    table.insert(1, "name", [names[c] for c in table["cluster"]])
    order = ["cluster", "name", "scenario", "is_good", "size", "share", "purity",
             "mean_strength", "scenario_noise_share", "mix"]
    return table[order].reset_index(drop=True)


def restore_clusterer(
    points: np.ndarray, labels: np.ndarray, params: dict[str, Any]
) -> hdbscan.HDBSCAN:
    """Refit HDBSCAN on the stored reference embeddings and check the stored labels return."""
    clusterer = make_clusterer(params).fit(np.ascontiguousarray(points, dtype=np.float64))
    if not np.array_equal(clusterer.labels_, labels):
        differ = int((clusterer.labels_ != labels).sum())
        raise ArtifactError(
            f"reference.parquet: refitting HDBSCAN gave different labels for {differ} of "
            f"{len(labels)} reference points with hdbscan {version('hdbscan')}; "
            "refit the model with this version of the hdbscan library"
        )
    return clusterer
