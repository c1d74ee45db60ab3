"""New error types: group the records no known cluster explains.

The unexplained records of a run are clustered among themselves with HDBSCAN in the
embedding (on the sample data it separates unseen failure types cleanly, in 0.03 s for
1,500 points, where the 35-dimensional input space mixes them; see BENCHMARKS.md). Each
dense group is a *candidate new error type*; the scattered rest stay `outlier`.

At most `max_new_points` records are clustered: a bottom-k sample by a hash of (input
content hash, row number). That sample depends only on the data, never on how it was
split into batches, partitions or workers, so the local and the Dask engines (and a
rerun after a crash) cluster exactly the same points. Every other unexplained record is
assigned to the candidates as `hdbscan.approximate_predict` would (`assign.Assigner`).

Each candidate is described by the input features that set it apart from good traffic
(standardised mean difference against the held-out good records of the fit) and by its
most typical example records.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import hdbscan
import numpy as np
import pandas as pd

from trafficsiam.assign import NOISE, Assigner, core_distances
from trafficsiam.config import ScoreConfig
from trafficsiam.normalise import Normaliser

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def row_keys(file_key: str, rows: np.ndarray) -> np.ndarray:
    """A well-mixed uint64 per (file, row): splitmix64 of the row number seeded by the file."""
    seed = np.uint64(int(file_key[:16], 16))
    z = np.asarray(rows, dtype=np.uint64) + seed
    with np.errstate(over="ignore"):
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


@dataclass
class Sample:
    """The unexplained records kept for clustering: the `capacity` smallest keys seen."""

    capacity: int
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    file: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    emb: np.ndarray | None = None
    x: np.ndarray | None = None
    novelty: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def offer(
        self, keys: np.ndarray, file: int | np.ndarray, row: np.ndarray, emb: np.ndarray,
        x: np.ndarray, novelty: np.ndarray,
    ) -> None:
        n = len(keys)
        if n == 0:
            return
        files = np.broadcast_to(np.asarray(file, dtype=np.int64), (n,))
        emb32, x32 = emb.astype(np.float32), x.astype(np.float32)
        if self.emb is None or self.x is None:
            self.emb = np.zeros((0, emb.shape[1]), np.float32)
            self.x = np.zeros((0, x.shape[1]), np.float32)
        keys_all = np.concatenate([self.keys, np.asarray(keys, dtype=np.uint64)])
        file_all = np.concatenate([self.file, files])
        row_all = np.concatenate([self.row, np.asarray(row, dtype=np.int64)])
        # Sort by (key, file, row): ties (astronomically rare) still break the same way.
        order = np.lexsort((row_all, file_all, keys_all))[: self.capacity]
        self.keys, self.file, self.row = keys_all[order], file_all[order], row_all[order]
        self.emb = np.concatenate([self.emb, emb32])[order]
        self.x = np.concatenate([self.x, x32])[order]
        self.novelty = np.concatenate([self.novelty, np.asarray(novelty, np.float64)])[order]

    def merge(self, other: Sample) -> None:
        if len(other) and other.emb is not None and other.x is not None:
            self.offer(other.keys, other.file, other.row, other.emb, other.x, other.novelty)


@dataclass
class NewTypes:
    """Candidates found in one run; `assign` maps unexplained records to them."""

    names: list[str]  # candidate index -> "new-1", ...
    table: pd.DataFrame  # one row per candidate (sizes filled in by the caller)
    assigner: Assigner | None
    examples: dict[str, list[tuple[int, int]]]  # name -> [(file index, row)]

    def assign(self, emb: np.ndarray) -> np.ndarray:
        """Candidate name per record (None: outlier)."""
        out = np.full(emb.shape[0], None, dtype=object)
        if self.assigner is None or emb.shape[0] == 0:
            return out
        labels, _ = self.assigner.predict(emb)
        hit = labels >= 0
        out[hit] = np.asarray(self.names, dtype=object)[labels[hit]]
        return out


def good_profile(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std, median) of each input dimension over good held-out records."""
    return x.mean(axis=0), x.std(axis=0), np.median(x, axis=0)


def _raw_value(normaliser: Normaliser, j: int, z: float) -> float:
    v = z * normaliser.scale[j] + normaliser.center[j]
    return float(np.sign(v) * np.expm1(abs(v)))


def describe_features(
    members: np.ndarray, good_x: np.ndarray, normaliser: Normaliser, top: int
) -> list[dict[str, Any]]:
    """The `top` input features by |standardised mean difference| from good traffic."""
    names = normaliser.feature_names
    n_numeric = len(normaliser.numeric)
    m_mean, g_mean = members.mean(axis=0), good_x.mean(axis=0)
    pooled = np.sqrt((members.var(axis=0) + good_x.var(axis=0)) / 2)
    effect = (m_mean - g_mean) / np.maximum(pooled, 0.05)
    out = []
    for j in np.argsort(-np.abs(effect), kind="stable")[:top]:
        j = int(j)
        row: dict[str, Any] = {"feature": names[j], "effect": round(float(effect[j]), 3)}
        if j < n_numeric:
            row["median"] = _raw_value(normaliser, j, float(np.median(members[:, j])))
            row["good_median"] = _raw_value(normaliser, j, float(np.median(good_x[:, j])))
        else:
            row["share"] = float(m_mean[j])
            row["good_share"] = float(g_mean[j])
        out.append(row)
    return out


def feature_text(row: dict[str, Any]) -> str:
    if "median" in row:
        return (f"{row['feature']} {row['effect']:+.1f} sd "
                f"(median {row['median']:.4g} vs {row['good_median']:.4g} in good)")
    return (f"{row['feature']} {row['effect']:+.1f} sd "
            f"({row['share']:.0%} vs {row['good_share']:.0%} in good)")


def discover(
    sample: Sample, cfg: ScoreConfig, good_x: np.ndarray, normaliser: Normaliser
) -> NewTypes:
    """Cluster the sample of unexplained records into candidate new error types."""
    columns = ["new_type", "sample_records", "median_novelty", "top_features", "features"]
    empty = NewTypes([], pd.DataFrame(columns=columns), None, {})
    if len(sample) < max(cfg.new_type_min_size, 2) or sample.emb is None or sample.x is None:
        return empty
    points = sample.emb.astype(np.float64)
    # At 20,000 sampled points a fixed 50 split one unseen type into a dozen fragments
    # and left a third of it as noise; 0.5% of the sample (the fit's rule) plus epsilon
    # merging keeps it whole (BENCHMARKS.md, scoring).
    min_size = max(cfg.new_type_min_size, int(np.ceil(0.005 * len(sample))))
    if len(sample) < min_size:
        return empty
    min_samples = min(cfg.new_type_min_samples, len(sample) - 1)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=min_size,
        min_samples=min_samples,
        cluster_selection_epsilon=cfg.new_type_epsilon,
        # Not allow_single_cluster: approximate_predict cannot assign to a lone root cluster
        # (hdbscan predicts noise for it), so that case would report a candidate no record
        # belongs to. min_samples 3 (not 5) keeps a lone dense group a child of the root.
        core_dist_n_jobs=1,
    )
    # The assigner's core distances are queried while the clusterer is fitted (the fit
    # holds the GIL, the query does not), instead of by prediction_data=True after it:
    # 0.73 -> 0.60 s for a 20,000-point sample, the same assigner.
    with ThreadPoolExecutor(max_workers=1) as pool:
        core = pool.submit(core_distances, points, min_samples)
        clusterer.fit(points)
    labels = clusterer.labels_
    found = sorted(
        (int(c) for c in np.unique(labels) if c != NOISE),
        key=lambda c: (-int((labels == c).sum()), int(np.flatnonzero(labels == c)[0])),
    )
    if not found:
        return empty
    # Relabel so that candidate i is the i-th largest; the assigner maps back through it.
    rank = {c: i for i, c in enumerate(found)}
    names = [f"new-{i + 1}" for i in range(len(found))]
    assigner = Assigner.from_clusterer(clusterer, core.result())
    remap = np.full(int(labels.max()) + 1, NOISE, dtype=np.int64)
    for c, i in rank.items():
        remap[c] = i
    assigner.cluster_label[assigner.cluster_label >= 0] = remap[
        assigner.cluster_label[assigner.cluster_label >= 0]
    ]
    rows, examples = [], {}
    strength = clusterer.probabilities_
    for c in found:
        name = names[rank[c]]
        at = np.flatnonzero(labels == c)
        typical = at[np.lexsort((sample.keys[at], -strength[at]))][: cfg.examples]
        examples[name] = [(int(sample.file[i]), int(sample.row[i])) for i in typical]
        feats = describe_features(sample.x[at], good_x, normaliser, cfg.top_features)
        rows.append({
            "new_type": name,
            "sample_records": int(len(at)),
            "median_novelty": float(np.median(sample.novelty[at])),
            "top_features": "; ".join(feature_text(f) for f in feats),
            "features": feats,
        })
    return NewTypes(names, pd.DataFrame(rows, columns=columns), assigner, examples)
