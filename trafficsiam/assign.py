"""Assign new points to the clusters of a fitted HDBSCAN: a vectorised
`hdbscan.approximate_predict`.

`hdbscan.approximate_predict` loops in Python over the points, too slow for scoring. This
module reproduces its semantics exactly (hdbscan 0.8.x `prediction.py`) with a batched
kNN query and array lookups. For the euclidean metric the kNN query uses `pykdtree`
(exact, OpenMP-parallel, several times the sklearn tree hdbscan uses: bench/assign_speed.py,
BENCHMARKS.md "Scoring throughput"); other metrics keep the sklearn tree of the clusterer:

1. query the ``2 * min_samples`` nearest training points of each new point (the library
   queries twice `min_samples`, not `min_samples`);
2. the new point's own core distance is its distance to neighbour number ``min_samples``
   (0-based, i.e. the ``min_samples + 1``-th neighbour; training core distances are the
   ``min_samples``-th neighbour *including the point itself*);
3. mutual reachability to each neighbour = max(neighbour core distance, own core
   distance, distance); the neighbour with the smallest one wins (first on ties, in the
   tree's neighbour order); ``lambda = 1 / mr`` (``DBL_MAX`` when ``mr == 0``);
4. start at the condensed-tree parent of that neighbour (the first tree row whose child
   is the neighbour, row 0 when there is none); only when the neighbour's own lambda is
   *greater* than the new point's lambda, walk up while the current cluster is not the
   root and its birth lambda (its row as a child) is ``>=`` the new lambda;
5. label = `prediction_data_.cluster_map` of the cluster reached (selected clusters and
   every cluster below them), else noise; strength = ``min(max_lambda, lambda) /
   max_lambda`` with `prediction_data_.max_lambdas` (the largest lambda among the rows
   *directly* under the selected cluster, shared by its sub-clusters), 1.0 when that
   max lambda is 0, and 0.0 for noise.

Consequences worth knowing: `cluster_selection_epsilon` only acts through `cluster_map`
(the selected clusters come from the fitted labels); a new point whose nearest
mutual-reachability neighbour is a noise training point can still get a label (if its
lambda is low enough to walk up into a selected ancestor) and vice versa; with no
clusters at all every point is noise with strength 0.

Everything is derived from arrays of `clusterer.prediction_data_` and the condensed
tree, so an `Assigner` can be built from a clusterer refitted from stored embeddings.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import hdbscan
import numpy as np
from pykdtree.kdtree import KDTree as FastKDTree
from sklearn.neighbors import BallTree, KDTree

NOISE = -1
# What `to_arrays` saves: with the training points, all an Assigner needs (no refit).
_ARRAYS = ("core_distances", "point_cluster", "point_lambda", "cluster_parent",
           "cluster_birth", "cluster_label", "cluster_max_lambda")
_TREES = {"KDTree": KDTree, "BallTree": BallTree}
_LEAF_SIZE = 32  # pykdtree's default is 16; 32 was faster on embeddings (bench/assign_speed.py)
_SORT_MIN = 2048  # fewer queries: not worth ordering (`Assigner._query_order`)


@lru_cache(maxsize=32)
def _spread(bits: int, dims: int) -> np.ndarray:
    """Cell number (0 .. 2**bits - 1) -> its bits spread `dims` apart (bit b at b * dims),
    so that OR-ing each dimension's spread value shifted by the dimension interleaves
    them into a Z-order (Morton) key."""
    spread = [sum(((cell >> b) & 1) << (b * dims) for b in range(bits))
              for cell in range(1 << bits)]
    out = np.array(spread, dtype=np.uint32 if bits * dims <= 32 else np.uint64)
    out.flags.writeable = False  # shared by every caller (lru_cache)
    return out


def core_distances(points: np.ndarray, min_samples: int) -> np.ndarray:
    """Each point's euclidean distance to its `min_samples`-th nearest neighbour, itself
    included: what hdbscan's prediction data holds, computed as it computes them (the
    same sklearn tree and query, so the same bits). The query releases the GIL, so it can
    run while the clusterer is fitted (`newtypes.discover`)."""
    data = np.asarray(points, dtype=np.float64)
    return np.asarray(KDTree(data, metric="euclidean").query(data, k=min_samples)[0][:, -1])


@dataclass
class _Prediction:
    """The parts of hdbscan's `PredictionData` an Assigner is built from."""

    raw_data: np.ndarray
    core_distances: np.ndarray
    tree_type: str
    cluster_tree: np.ndarray  # the condensed tree's rows whose child is a cluster
    cluster_map: dict[int, int]  # selected clusters and every cluster below -> label
    max_lambdas: dict[int, float]  # the same clusters -> max lambda of the selected one

    @classmethod
    def of(cls, clusterer: hdbscan.HDBSCAN, core: np.ndarray | None) -> _Prediction:
        pdata = getattr(clusterer, "prediction_data_", None)
        if pdata is not None:
            return cls(pdata.raw_data, pdata.core_distances, type(pdata.tree).__name__,
                       pdata.cluster_tree, pdata.cluster_map, pdata.max_lambdas)
        if core is None or clusterer.metric != "euclidean":
            raise ValueError("clusterer has no prediction data: fit it with "
                             "prediction_data=True (or pass the core distances of its points)")
        try:
            return cls._derived(clusterer, core)
        except (AttributeError, KeyError, ValueError):
            # hdbscan's private layout changed (the derivation follows 0.8.x): its own,
            # slower prediction data gives the same arrays.
            clusterer.generate_prediction_data()
            return cls.of(clusterer, None)

    @classmethod
    def _derived(cls, clusterer: hdbscan.HDBSCAN, core: np.ndarray) -> _Prediction:
        # As hdbscan's PredictionData.__init__ derives them (0.8.x), without its tree,
        # its second kNN query and the exemplars, which approximate_predict does not use.
        condensed = clusterer.condensed_tree_
        raw = condensed._raw_tree
        cluster_tree = raw[raw["child_size"] > 1]
        selected = sorted(condensed._select_clusters())
        cluster_map = {int(c): i for i, c in enumerate(selected)}
        max_lambdas: dict[int, float] = {}
        for c in selected:
            top = float(raw["lambda_val"][raw["parent"] == c].max())
            below = [int(c)]
            while below:  # the cluster and every cluster below it, level by level
                for sub in below:
                    cluster_map[sub] = cluster_map[int(c)]
                    max_lambdas[sub] = top
                below = cluster_tree["child"][np.isin(cluster_tree["parent"], below)].tolist()
        return cls(np.asarray(clusterer._raw_data, dtype=np.float64),
                   np.asarray(core, dtype=np.float64), "KDTree", cluster_tree, cluster_map,
                   max_lambdas)


@dataclass(frozen=True, eq=False)
class Assigner:
    """Vectorised equivalent of hdbscan.approximate_predict, built once from a fitted clusterer.

    Clusters are indexed by ``cluster_id - root`` (condensed-tree ids are ``root`` and up).
    """

    raw_data: np.ndarray  # (n, d) float64 training points
    core_distances: np.ndarray  # (n,) core distance of each training point
    min_samples: int
    point_cluster: np.ndarray  # (n,) int64 cluster index of each point's tree row parent
    point_lambda: np.ndarray  # (n,) float64 lambda of that row
    cluster_parent: np.ndarray  # (C,) int64 parent cluster index (-1: none)
    cluster_birth: np.ndarray  # (C,) float64 lambda of the cluster's row as a child (NaN: none)
    cluster_label: np.ndarray  # (C,) int64 final label of the cluster (-1: noise)
    cluster_max_lambda: np.ndarray  # (C,) float64 max lambda of its selected cluster
    has_clusters: bool = True
    metric: str = "euclidean"
    tree_type: str = "KDTree"
    metric_kwargs: dict[str, Any] = field(default_factory=dict)
    _tree: Any = field(default=None, init=False, repr=False)
    _tree32: Any = field(default=None, init=False, repr=False)
    _box: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        raw = self.raw_data
        if self.metric == "euclidean" and not self.metric_kwargs:
            # Embeddings are float32 (the model's output) held as float64. For float32
            # queries a float32 tree holds the same points and finds the same neighbours
            # faster; its distances are rounded to float32 (relative 6e-8).
            as32 = raw.astype(np.float32)
            if np.array_equal(as32.astype(np.float64), raw, equal_nan=True):
                object.__setattr__(self, "_tree32", FastKDTree(as32, leafsize=_LEAF_SIZE))
                low = raw.min(axis=0) if len(raw) else np.zeros(raw.shape[1])
                span = (raw.max(axis=0) - low) if len(raw) else np.zeros(raw.shape[1])
                scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
                object.__setattr__(self, "_box", (low.astype(np.float32),
                                                  scale.astype(np.float32)))

    def _tree_for(self, pts: np.ndarray) -> tuple[Any, Any]:
        """(tree, dtype) for the query points: the float32 tree when they are float32
        values, else a float64 one (built on first use)."""
        if self._tree32 is not None and (
            pts.dtype == np.float32
            or np.array_equal(pts.astype(np.float32).astype(pts.dtype), pts)
        ):
            return self._tree32, np.float32
        if self._tree is None:
            if self.metric == "euclidean" and not self.metric_kwargs:
                tree: Any = FastKDTree(self.raw_data, leafsize=_LEAF_SIZE)
            else:
                tree = _TREES[self.tree_type](self.raw_data, metric=self.metric,
                                              **self.metric_kwargs)
            object.__setattr__(self, "_tree", tree)
        return self._tree, np.float64

    @property
    def k(self) -> int:
        """Neighbours queried per point (approximate_predict queries 2 * min_samples)."""
        return min(2 * self.min_samples, int(self.raw_data.shape[0]))

    @property
    def k_short(self) -> int:
        """Neighbours that decide most points (see `decided`): the own core distance's."""
        return min(self.min_samples + 1, self.k)

    def neighbours(
        self, points: np.ndarray, k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances float64, indices int64) of the `k` (default `self.k`) nearest
        training points, nearest first."""
        pts = np.asarray(points)
        if pts.dtype not in (np.float32, np.float64):
            pts = pts.astype(np.float64)
        k = self.k if k is None else k
        tree, dtype = self._tree_for(pts)
        order = self._query_order(pts) if dtype == np.float32 else None
        found = tree.query(np.ascontiguousarray(pts if order is None else pts[order],
                                                dtype=dtype), k=k)
        # (rows, k) float64 / int64 in the caller's row order, converted while put back
        # (pykdtree returns 1-d arrays for k == 1)
        dist = np.empty((len(pts), k), dtype=np.float64)
        idx = np.empty((len(pts), k), dtype=np.int64)
        rows = slice(None) if order is None else order
        dist[rows] = np.asarray(found[0]).reshape(len(pts), k)
        idx[rows] = np.asarray(found[1]).reshape(len(pts), k)
        return dist, idx

    def _query_order(self, pts: np.ndarray) -> np.ndarray | None:
        """An order of `pts` along a Z-order curve over the training points' bounding box
        (4 bits per dimension), or None. pykdtree answers each query alone, from the
        root: queries near each other in a row find the tree's nodes and leaves in cache,
        which saves more than the ordering costs (BENCHMARKS.md, "Scoring throughput").
        Every query's answer is the same in any order."""
        if self._box is None or pts.ndim != 2 or len(pts) < _SORT_MIN:
            return None
        dims = pts.shape[1]
        bits = min(4, 64 // max(dims, 1))
        if bits == 0:
            return None
        low, scale = self._box
        cells = (1 << bits) - 1
        q = (np.asarray(pts, dtype=np.float32) - low) * (scale * cells) + np.float32(0.5)
        np.nan_to_num(q, copy=False, nan=0.0)
        np.clip(q, 0, cells, out=q)
        cell = q.astype(np.uint8)
        spread = _spread(bits, dims)
        key = spread[cell[:, 0]]
        for d in range(1, dims):
            key |= spread[cell[:, d]] << spread.dtype.type(d)
        return np.argsort(key)

    def mutual_reachability(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Mutual-reachability distance from each point to each of its neighbours."""
        col = min(self.min_samples, dist.shape[1] - 1)
        own_core = dist[:, col : col + 1]
        return np.maximum(np.maximum(self.core_distances[idx], own_core), dist)

    def decided(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Rows whose `k_short` nearest neighbours already give the result of all `k`.

        The own core distance c is the distance to neighbour `min_samples`, so the first
        `min_samples + 1` neighbours have mutual reachability max(core_j, c) >= c and every
        later one has at least its distance, which is >= c. When one of the first has
        core_j <= c, the smallest mutual reachability is c, reached first (argmin's tie
        rule) by that neighbour, and the later neighbours cannot change the winner. That
        holds for ~99 % of records (the training core distances count fewer neighbours),
        so scoring queries `k_short` neighbours and only the rest again with `k`: the kNN
        is a quarter cheaper, and the labels are those of the full query."""
        if dist.shape[1] < self.k_short or self.k_short == self.k:
            return np.ones(dist.shape[0], dtype=bool)
        own_core = dist[:, self.k_short - 1]
        return self.core_distances[idx[:, : self.k_short]].min(axis=1) <= own_core

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-ready spec): everything but the training points, for saving."""
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}
        spec = {"min_samples": self.min_samples, "has_clusters": self.has_clusters,
                "metric": self.metric, "tree_type": self.tree_type,
                "metric_kwargs": dict(self.metric_kwargs)}
        return arrays, spec

    @classmethod
    def from_arrays(
        cls, raw_data: np.ndarray, arrays: dict[str, np.ndarray], spec: dict[str, Any]
    ) -> Assigner:
        """The inverse of `to_arrays`, given the same training points."""
        return cls(
            raw_data=np.ascontiguousarray(raw_data, dtype=np.float64),
            core_distances=np.asarray(arrays["core_distances"], dtype=np.float64),
            min_samples=int(spec["min_samples"]),
            point_cluster=np.asarray(arrays["point_cluster"], dtype=np.int64),
            point_lambda=np.asarray(arrays["point_lambda"], dtype=np.float64),
            cluster_parent=np.asarray(arrays["cluster_parent"], dtype=np.int64),
            cluster_birth=np.asarray(arrays["cluster_birth"], dtype=np.float64),
            cluster_label=np.asarray(arrays["cluster_label"], dtype=np.int64),
            cluster_max_lambda=np.asarray(arrays["cluster_max_lambda"], dtype=np.float64),
            has_clusters=bool(spec["has_clusters"]),
            metric=str(spec["metric"]),
            tree_type=str(spec["tree_type"]),
            metric_kwargs=dict(spec.get("metric_kwargs") or {}),
        )

    @property
    def n_features(self) -> int:
        return int(self.raw_data.shape[1])

    @classmethod
    def from_clusterer(
        cls, clusterer: hdbscan.HDBSCAN, core: np.ndarray | None = None
    ) -> Assigner:
        """From a clusterer fitted with prediction data, or from one fitted without it
        (euclidean metric) and the `core_distances` of its points."""
        pdata = _Prediction.of(clusterer, core)
        raw_data = np.ascontiguousarray(pdata.raw_data, dtype=np.float64)
        n = raw_data.shape[0]
        min_samples = int(clusterer.min_samples or clusterer.min_cluster_size)
        tree_type = pdata.tree_type
        if tree_type not in _TREES:
            raise ValueError(f"unsupported prediction tree {tree_type}")
        metric_kwargs = dict(getattr(clusterer, "_metric_kwargs", None) or {})
        common: dict[str, Any] = dict(
            raw_data=raw_data,
            core_distances=np.asarray(pdata.core_distances, dtype=np.float64),
            min_samples=min_samples,
            metric=str(clusterer.metric),
            tree_type=tree_type,
            metric_kwargs=metric_kwargs,
        )
        cluster_tree = pdata.cluster_tree
        if cluster_tree.shape[0] == 0:
            empty_i = np.zeros(0, dtype=np.int64)
            empty_f = np.zeros(0, dtype=np.float64)
            return cls(
                point_cluster=np.zeros(n, dtype=np.int64),
                point_lambda=np.zeros(n, dtype=np.float64),
                cluster_parent=empty_i,
                cluster_birth=empty_f,
                cluster_label=empty_i,
                cluster_max_lambda=empty_f,
                has_clusters=False,
                **common,
            )

        raw_tree = clusterer.condensed_tree_._raw_tree
        parents = raw_tree["parent"].astype(np.int64)
        children = raw_tree["child"].astype(np.int64)
        lambdas = raw_tree["lambda_val"].astype(np.float64)
        root = int(cluster_tree["parent"].min())
        top = int(max(parents.max(), cluster_tree["child"].max(), root))
        n_clusters = top - root + 1

        # Row of each training point: the first row whose child is the point, else row 0
        # (get_tree_row_with_child).
        row = np.zeros(n, dtype=np.int64)
        is_point = (children >= 0) & (children < n)
        uniq, first = np.unique(children[is_point], return_index=True)
        row[uniq] = np.flatnonzero(is_point)[first]
        point_cluster = parents[row] - root
        point_lambda = lambdas[row]

        # child -> (parent, lambda) over the cluster rows; the last row wins, as in a dict.
        cluster_parent = np.full(n_clusters, -1, dtype=np.int64)
        cluster_birth = np.full(n_clusters, np.nan, dtype=np.float64)
        c_child = cluster_tree["child"].astype(np.int64) - root
        cluster_parent[c_child] = cluster_tree["parent"].astype(np.int64) - root
        cluster_birth[c_child] = cluster_tree["lambda_val"].astype(np.float64)

        cluster_label = np.full(n_clusters, NOISE, dtype=np.int64)
        cluster_max_lambda = np.full(n_clusters, np.nan, dtype=np.float64)
        for cid, label in pdata.cluster_map.items():
            if root <= int(cid) <= top:
                cluster_label[int(cid) - root] = int(label)
                cluster_max_lambda[int(cid) - root] = float(pdata.max_lambdas[cid])
        return cls(
            point_cluster=point_cluster,
            point_lambda=point_lambda,
            cluster_parent=cluster_parent,
            cluster_birth=cluster_birth,
            cluster_label=cluster_label,
            cluster_max_lambda=cluster_max_lambda,
            **common,
        )

    def predict(
        self, points: np.ndarray, batch_size: int = 65536, n_jobs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64, strengths float64) for each point, like approximate_predict.

        `batch_size` bounds the memory of one kNN query; `n_jobs` > 1 runs batches in
        threads (the tree query releases the GIL; the result does not depend on it).
        """
        pts = np.asarray(points)
        if pts.dtype not in (np.float32, np.float64):
            pts = pts.astype(np.float64)
        if pts.size == 0 and pts.ndim <= 1:
            pts = pts.reshape(0, self.n_features)
        if pts.ndim != 2 or pts.shape[1] != self.n_features:
            raise ValueError(
                f"points must have shape (m, {self.n_features}), got {np.shape(points)}"
            )
        m = pts.shape[0]
        labels = np.full(m, NOISE, dtype=np.int64)
        strengths = np.zeros(m, dtype=np.float64)
        if m == 0 or not self.has_clusters:
            return labels, strengths
        step = max(1, int(batch_size))
        jobs = max(1, int(n_jobs))
        if jobs > 1:
            step = max(1, min(step, -(-m // (4 * jobs))))
        starts = range(0, m, step)

        def run(start: int) -> None:
            stop = min(m, start + step)
            labels[start:stop], strengths[start:stop] = self._predict_batch(pts[start:stop])

        if jobs > 1 and len(starts) > 1:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(run, starts))
        else:
            for start in starts:
                run(start)
        return labels, strengths

    def _predict_batch(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self.neighbours(pts)
        return self.predict_from_neighbours(dist, idx)

    def predict_from_neighbours(
        self, dist: np.ndarray, idx: np.ndarray, mr: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`predict` given the output of `neighbours` (lets callers reuse the kNN query)
        and, if the caller has it, `mutual_reachability(dist, idx)`."""
        m = dist.shape[0]
        if m == 0 or not self.has_clusters:
            return np.full(m, NOISE, dtype=np.int64), np.zeros(m, dtype=np.float64)
        if mr is None:
            mr = self.mutual_reachability(dist, idx)
        best = mr.argmin(axis=1)
        rows = np.arange(m)
        nearest = idx[rows, best]
        mr_best = mr[rows, best]
        with np.errstate(divide="ignore"):
            lam = np.where(mr_best > 0.0, 1.0 / mr_best, np.finfo(np.float64).max)

        cluster = self.point_cluster[nearest].copy()
        active = np.flatnonzero(self.point_lambda[nearest] > lam)
        while active.size:
            c = cluster[active]
            # NaN birth (no row as a child) compares False: stop, like the dict miss.
            go = (c > 0) & (self.cluster_birth[c] >= lam[active])
            active = active[go]
            cluster[active] = self.cluster_parent[cluster[active]]

        labels = self.cluster_label[cluster]
        max_lambda = self.cluster_max_lambda[cluster]
        clustered = labels >= 0
        strengths = np.zeros(m, dtype=np.float64)
        ml = max_lambda[clustered]
        with np.errstate(divide="ignore", invalid="ignore"):
            prob = np.minimum(ml, lam[clustered]) / ml
        strengths[clustered] = np.where(ml > 0.0, prob, 1.0)
        return labels, strengths
