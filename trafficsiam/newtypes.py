"""New error types: group the records no known cluster explains.

The unexplained records of a run are clustered among themselves with HDBSCAN in the
embedding (on the sample data it separates unseen failure types cleanly, in 0.03 s for
1,500 points, where the 35-dimensional input space mixes them; see BENCHMARKS.md). Each
dense group is a *candidate new error type*; the scattered rest stay `outlier`. When the
records form one group, HDBSCAN finds no cluster (its tree's root never splits): the
group is then the records joined closer than scattered records would be (`_lone_group`).
Any candidate must be clearly denser than records spread uniformly over the embedding's
range (`_scatter_distance`), which keeps uniform noise from forming candidates.

At most `max_new_points` records are clustered: a bottom-k sample by a hash of (the
record's model inputs, its row number). That sample depends only on the records and their
order, never on how they were split into batches, partitions or workers, nor on the bytes
that held them, so the local and the Dask engines (and a rerun after a crash) cluster
exactly the same points, and so do a parquet file, a CSV file and a DataFrame of the same
records. Every other unexplained record is
assigned to the candidates as `hdbscan.approximate_predict` would (`assign.Assigner`).

Each candidate is described by the input features that set it apart from good traffic
(standardised mean difference against the held-out good records of the fit) and by its
most typical example records.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import hdbscan
import numpy as np
import pandas as pd

from trafficsiam.assign import NOISE, Assigner, core_distances
from trafficsiam.config import ScoreConfig
from trafficsiam.effects import effect_sizes
from trafficsiam.normalise import NEW_SUFFIX, OTHER_TOKEN, Normaliser

log = logging.getLogger("trafficsiam")

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# Dense: closer than this share of the distance between scattered records (uniform
# noise has few points and no cluster that close, an unseen failure type most records).
_SCATTER_SHARE = 0.7
# Parts of one group joined closer than this share of that distance are one candidate.
# 0.8-0.9 gave the same candidates between fit seeds more often than 0.7 on 5G, TON_IoT
# and NSL-KDD, the sample data's unchanged; from 1.2 its two unseen types merge
# (BENCHMARKS.md §6).
_MERGE_SHARE = 0.85
# A candidate must hold more than this many times the share of the run's records that
# the fit's held-out records say land there as false alarms: the decision leaves about
# score.false_alarm_rate of known traffic unexplained, and in a large clean batch those
# records form dense groups of their own (a clean 200,000-record batch of the sample data
# gave a candidate of 1,240 records, mostly good traffic; BENCHMARKS.md §6).
_FALSE_ALARM_MARGIN = 2.0
# A candidate's smallest size as a share of the sample (at least score.new_type_min_size).
_MIN_SHARE = 0.005
# Reference points that measure that distance (fixed, so discover stays deterministic).
_REFERENCE_POINTS = 2000
# A candidate's radius: this quantile of its sampled records' distances to their centroid,
# in the embedding and in the model's inputs (`track`).
TRACK_QUANTILE = 0.9
# The spaces in which a candidate must lie near an earlier one to keep its id (`track`);
# the bench compares the embedding alone (BENCHMARKS.md, "New types across runs").
TRACK_SPACES = ("embedding", "inputs")


def row_keys(file_key: str, rows: np.ndarray) -> np.ndarray:
    """A well-mixed uint64 per (file, row): splitmix64 of the row number seeded by the file."""
    return _splitmix(np.asarray(rows, dtype=np.uint64) + np.uint64(int(file_key[:16], 16)))


def content_keys(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A well-mixed uint64 per record from its model inputs `x` (a sum of their float32
    bits times fixed odd constants, wrapping) and its row number (splitmix64): the
    sample's keys. The row number keeps identical records apart, so a block of duplicates
    is sampled like any records."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    # einsum: one pass; the product and sum wrap modulo 2 ** 64 as uint64 does
    h = np.einsum("ij,j->i", bits, _odd_constants(bits.shape[1]))
    return _splitmix(np.asarray(rows, dtype=np.uint64) + h)


@functools.lru_cache(maxsize=8)
def _odd_constants(n: int) -> np.ndarray:
    c = np.random.default_rng(0x5A3F).integers(0, 2**63, size=n, dtype=np.uint64)
    return c * np.uint64(2) + np.uint64(1)


def _splitmix(z: np.ndarray) -> np.ndarray:
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
    # The run's records per voted scenario code and its unexplained records, all of them
    # (not only those kept): what the expected false alarms of a candidate are scaled by.
    voted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unexplained: int = 0

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

    def count(self, voted: np.ndarray, unexplained: int) -> None:
        """Count a batch: its records' voted scenario codes, its unexplained records."""
        self._add(np.bincount(np.asarray(voted, dtype=np.int64)), unexplained)

    def _add(self, voted: np.ndarray, unexplained: int) -> None:
        """Add records per voted code (arrays of any lengths) and unexplained records."""
        total = np.zeros(max(len(self.voted), len(voted)), dtype=np.int64)
        total[: len(self.voted)] += self.voted
        total[: len(voted)] += voted
        self.voted, self.unexplained = total, self.unexplained + int(unexplained)

    def in_embedding_order(self) -> Sample:
        """The same records sorted by their embedding (then key, file, row): clustering
        sees one order for one set of records, whatever their files and rows were."""
        if self.emb is None or self.x is None or len(self) == 0:
            return self
        order = np.lexsort((self.row, self.file, self.keys, *self.emb.T[::-1]))
        return Sample(self.capacity, self.keys[order], self.file[order], self.row[order],
                      self.emb[order], self.x[order], self.novelty[order], self.voted,
                      self.unexplained)

    def merge(self, other: Sample) -> None:
        if len(other) and other.emb is not None and other.x is not None:
            self.offer(other.keys, other.file, other.row, other.emb, other.x, other.novelty)
        self._add(other.voted, other.unexplained)


@dataclass
class Background:
    """The false alarms the decision makes on traffic like the training data: the fit's
    held-out records it leaves unexplained (each judged as if the calibration had not seen
    it), their scenario codes, and the held-out records per scenario code."""

    emb: np.ndarray
    codes: np.ndarray
    held: np.ndarray

    def share_in(self, labels: np.ndarray, cluster: int, voted: np.ndarray) -> float:
        """The share of a run's records expected among the false alarms in `cluster`
        (`labels`: each background record's cluster): each held-out scenario weighed by
        its share of the run's records (`voted`: the run's records per voted code)."""
        total = voted.sum()
        if total == 0:
            return 0.0
        at = self.codes[labels == cluster]
        run = np.zeros(len(self.held), dtype=np.float64)
        run[: min(len(voted), len(run))] = voted[: len(run)] / total
        return float((run[at] / np.maximum(self.held[at], 1)).sum())


@dataclass
class NewTypes:
    """Candidates found in one run; `assign` maps unexplained records to them."""

    names: list[str]  # candidate index -> "new-1", ...
    table: pd.DataFrame  # one row per candidate (sizes filled in by the caller)
    assigner: Assigner | None
    examples: dict[str, list[tuple[int, int]]]  # name -> [(file index, row)]
    # dense groups that are no candidate: no more than the rate's own false alarms there
    # (`_beyond_false_alarms`), each {"sample_records", "share", "expected_share"}
    set_aside: list[dict[str, float]] = field(default_factory=list)

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
    effect = effect_sizes(members, good_x)
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


def with_new_values(features: list[dict[str, Any]], new: dict[str, list[str]]
                    ) -> list[dict[str, Any]]:
    """`features` with the never-seen values `new` (per column, `Normaliser.new_values` of
    a candidate's example records) named on their column's "(other)" input."""
    out = []
    for row in features:
        col, _, value = str(row["feature"]).rpartition("=")
        if value == OTHER_TOKEN and new.get(col):
            row = {**row, "new_values": list(new[col])}
        out.append(row)
    return out


def feature_text(row: dict[str, Any]) -> str:
    """One feature of a candidate as the summary says it; a "(other)" input whose records
    hold values never seen at fit names them: `service=(other): RST (new)`."""
    if row.get("new_values"):
        named = ", ".join(f"{v}{NEW_SUFFIX}" for v in row["new_values"])
        row = {**row, "feature": f"{row['feature']}: {named}"}
    if "median" in row:
        return (f"{row['feature']} {row['effect']:+.1f} sd "
                f"(median {row['median']:.4g} vs {row['good_median']:.4g} in good)")
    return (f"{row['feature']} {row['effect']:+.1f} sd "
            f"({row['share']:.0%} vs {row['good_share']:.0%} in good)")


def _scatter_distance(points: np.ndarray, min_samples: int) -> float:
    """How far apart scattered records are: the median core distance of as many points
    spread uniformly over the embedding's range (the unit cube, widened to the sample's
    range). Measured on at most _REFERENCE_POINTS fixed pseudo-random points, scaled to
    the sample's size (such distances shrink as n ** (-1 / dims))."""
    n, dims = points.shape
    low = np.minimum(points.min(axis=0), 0.0)
    high = np.maximum(points.max(axis=0), 1.0)
    m = min(n, _REFERENCE_POINTS)
    reference = np.random.default_rng(0).uniform(low, high, size=(m, dims))
    core = core_distances(reference, min(min_samples, m))
    return float(np.median(core)) * (m / n) ** (1.0 / dims)


def _lone_group(clusterer: hdbscan.HDBSCAN, epsilon: float) -> np.ndarray | None:
    """Each point's lambda (1 / the mutual-reachability distance at which it left the
    root) when the sample forms one group: the root of the condensed tree never splits
    into two clusters, or splits closer than `epsilon` (its parts merge back, as hdbscan
    merges them with allow_single_cluster). None when it forms several.

    hdbscan without allow_single_cluster reports no cluster (or fragments) for one
    group; with it, it labels only the points joined within `epsilon` (a small part of
    a 300-record group), its prediction gives noise for a lone root cluster (as does
    `Assigner.from_clusterer`), and its EOM choice of the root could merge distinct
    types. `discover` takes as the group the points joined closer than scattered
    records would be (`_lone_assigner`)."""
    raw = clusterer.condensed_tree_._raw_tree
    root = int(raw["parent"].min())
    splits = raw["lambda_val"][(raw["parent"] == root) & (raw["child_size"] > 1)]
    if splits.size and 1.0 / float(splits.max()) >= epsilon:
        return None
    rows = raw[raw["child"] < root]  # points are numbered 0 .. root - 1
    lam = np.zeros(root, dtype=np.float64)
    lam[rows["child"]] = rows["lambda_val"]
    return lam


def _lone_assigner(
    points: np.ndarray, core: np.ndarray, min_samples: int, lam: np.ndarray,
    member: np.ndarray, birth: float,
) -> Assigner:
    """An Assigner for the lone group, as if the root had one child cluster born at
    distance `birth` holding the members: a record joins it when its nearest
    mutual-reachability neighbour is a member closer than `birth`, the rule that chose
    the members."""
    finite = lam[member & np.isfinite(lam)]
    max_lambda = float(finite.max()) if finite.size else 1.0
    return Assigner(
        raw_data=np.ascontiguousarray(points, dtype=np.float64),
        core_distances=np.asarray(core, dtype=np.float64),
        min_samples=min_samples,
        point_cluster=member.astype(np.int64),  # 1: the group, 0: the root (noise)
        point_lambda=lam,
        cluster_parent=np.array([-1, 0], dtype=np.int64),
        cluster_birth=np.array([np.nan, 1.0 / birth]),
        cluster_label=np.array([NOISE, 0], dtype=np.int64),
        cluster_max_lambda=np.array([np.nan, max_lambda]),
    )


def _beyond_false_alarms(found: list[int], labels: np.ndarray, assigner: Assigner,
                         background: Background | None, sample: Sample
                         ) -> tuple[list[int], list[dict[str, float]]]:
    """(the clusters of `found` that hold clearly more of the run's records than the
    decision's false alarms would put there (`_FALSE_ALARM_MARGIN`, `Background`), the
    others as `NewTypes.set_aside` describes them)."""
    if background is None or len(background.emb) == 0 or sample.voted.sum() == 0:
        return found, []
    placed, _ = assigner.predict(background.emb)
    total = float(sample.voted.sum())
    kept, set_aside = [], []
    for c in found:
        members = int((labels == c).sum())
        share = members / len(labels) * sample.unexplained / total
        expected = background.share_in(placed, c, sample.voted)
        if share > _FALSE_ALARM_MARGIN * expected:
            kept.append(c)
            continue
        set_aside.append({"sample_records": members, "share": round(share, 6),
                          "expected_share": round(expected, 6)})
        log.info("a group of %.2f%% of the records is not a candidate: the fit's held-out "
                 "records put %.2f%% there as false alarms at this rate", 100 * share,
                 100 * expected)
    return kept, set_aside


def discover(
    sample: Sample, cfg: ScoreConfig, good_x: np.ndarray, normaliser: Normaliser,
    background: Background | None = None,
) -> NewTypes:
    """Cluster the sample of unexplained records into candidate new error types; with
    `background`, a group no denser in the run than the decision's false alarms is none."""
    columns = ["new_type", "sample_records", "median_novelty", "top_features", "features",
               "centroid", "radius", "input_centroid", "input_radius"]
    empty = NewTypes([], pd.DataFrame(columns=columns), None, {})
    sample = sample.in_embedding_order()
    if len(sample) < max(cfg.new_type_min_size, 2) or sample.emb is None or sample.x is None:
        return empty
    points = sample.emb.astype(np.float64)
    # A fixed minimum split a large sample's unseen type into fragments and noise; a
    # share of the sample (the fit's rule) plus epsilon merging keeps it whole
    # (BENCHMARKS.md, scoring throughput).
    min_size = max(cfg.new_type_min_size, int(np.ceil(_MIN_SHARE * len(sample))))
    if len(sample) < min_size:
        return empty
    min_samples = min(cfg.new_type_min_samples, len(sample) - 1)
    # A candidate must be clearly denser than scattered records would be (uniform noise
    # forms loose clusters of its own): the median core distance of its records under
    # `dense`.
    spacing = _scatter_distance(points, min_samples)
    dense = _SCATTER_SHARE * spacing
    # Parts of a group joined closer than `_MERGE_SHARE` of the spacing are one
    # candidate: with the configured epsilon alone, one unseen type split in two on some
    # seeds and not others (BENCHMARKS.md §6, candidate stability).
    epsilon = max(cfg.new_type_epsilon, _MERGE_SHARE * spacing)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=min_size,
        min_samples=min_samples,
        cluster_selection_epsilon=epsilon,
        # hdbscan's default approximate spanning tree depends on the points' order: the
        # same unexplained records in another order (another file name, another row
        # order) gave another grouping (5G: one candidate or two over 8 orders).
        approx_min_span_tree=False,
        # Not allow_single_cluster: a lone group is taken apart below (`_lone_group`).
        core_dist_n_jobs=1,
    )
    # The assigner's core distances are queried while the clusterer is fitted (the fit
    # holds the GIL, the query does not), instead of by prediction_data=True after it:
    # the same assigner, sooner.
    with ThreadPoolExecutor(max_workers=1) as pool:
        core = pool.submit(core_distances, points, min_samples)
        clusterer.fit(points)
    lam = _lone_group(clusterer, epsilon)
    if lam is not None:
        birth = epsilon
        member = lam > 1.0 / birth
        own_core = core.result()
        if int(member.sum()) < min_size or np.median(own_core[member]) > dense:
            return empty
        labels = np.where(member, 0, NOISE)
        assigner = _lone_assigner(points, own_core, min_samples, lam, member, birth)
        top = float(assigner.cluster_max_lambda[1])
        strength = np.where(member, np.minimum(lam, top) / top, 0.0)
        found, set_aside = _beyond_false_alarms([0], labels, assigner, background, sample)
        if not found:
            return replace(empty, set_aside=set_aside)
    else:
        labels = clusterer.labels_
        own_core = core.result()
        found = sorted(
            (int(c) for c in np.unique(labels)
             if c != NOISE and np.median(own_core[labels == c]) <= dense),
            key=lambda c: (-int((labels == c).sum()), int(np.flatnonzero(labels == c)[0])),
        )
        if not found:
            return empty
        assigner = Assigner.from_clusterer(clusterer, own_core)
        strength = clusterer.probabilities_
        found, set_aside = _beyond_false_alarms(found, labels, assigner, background, sample)
        if not found:
            return replace(empty, set_aside=set_aside)
    # Relabel so that candidate i is the i-th largest; the assigner maps back through it
    # (a cluster that is no candidate to noise).
    rank = {c: i for i, c in enumerate(found)}
    names = [f"new-{i + 1}" for i in range(len(found))]
    remap = np.full(int(labels.max()) + 1, NOISE, dtype=np.int64)
    for c, i in rank.items():
        remap[c] = i
    assigner.cluster_label[assigner.cluster_label >= 0] = remap[
        assigner.cluster_label[assigner.cluster_label >= 0]
    ]
    rows, examples = [], {}
    for c in found:
        name = names[rank[c]]
        at = np.flatnonzero(labels == c)
        typical = at[np.lexsort((sample.keys[at], -strength[at]))][: cfg.examples]
        examples[name] = [(int(sample.file[i]), int(sample.row[i])) for i in typical]
        feats = describe_features(sample.x[at], good_x, normaliser, cfg.top_features)
        centroid, radius = _centre(points[at])
        input_centroid, input_radius = _centre(sample.x[at])
        rows.append({
            "new_type": name,
            "sample_records": int(len(at)),
            "median_novelty": float(np.median(sample.novelty[at])),
            "top_features": "; ".join(feature_text(f) for f in feats),
            "features": feats,
            "centroid": centroid, "radius": radius,
            "input_centroid": input_centroid, "input_radius": input_radius,
        })
    return NewTypes(names, pd.DataFrame(rows, columns=columns), assigner, examples, set_aside)


def _centre(points: np.ndarray) -> tuple[list[float], float]:
    """(centroid, radius) of a candidate's records: their mean, rounded for the summary,
    and the `TRACK_QUANTILE` of their distances to it."""
    centroid = points.astype(np.float64).mean(axis=0)
    spread = np.linalg.norm(points - centroid, axis=1)
    return ([round(float(v), 6) for v in centroid],
            float(np.quantile(spread, TRACK_QUANTILE)))


@dataclass
class Seen:
    """A candidate of an earlier run of the same model into the same folder."""

    name: str
    centroid: np.ndarray
    radius: float
    first_seen: str  # run id
    records: list[tuple[str, int]]  # (run id, records) per run it was found in
    # the same in the model's inputs; None for runs from before inputs were tracked
    input_centroid: np.ndarray | None = None
    input_radius: float = 0.0

    def near(self, space: str, centroid: np.ndarray, radius: float) -> float | None:
        """The distance between the centroids in `space` when within the larger of the two
        radii, else None; a space this candidate was not stored in does not decide."""
        mine = self.centroid if space == "embedding" else self.input_centroid
        if mine is None:
            return 0.0
        if mine.shape != centroid.shape:
            return None
        d = float(np.linalg.norm(mine - centroid))
        limit = max(self.radius if space == "embedding" else self.input_radius, radius)
        return d if d <= limit else None


def seen_before(summaries: list[dict[str, Any]], model_id: str) -> list[Seen]:
    """The candidates of earlier runs (summary.json contents, oldest first) of model
    `model_id`: each name with its latest centroid and radius and its history."""
    found: dict[str, Seen] = {}
    for summary in summaries:
        if (summary.get("model") or {}).get("id") != model_id:
            continue
        for t in summary.get("new_types", []):
            if "centroid" not in t:
                continue  # a run from before candidates were tracked
            name, run = str(t["new_type"]), str(summary["run_id"])
            seen = found.setdefault(name, Seen(name, np.zeros(0), 0.0, run, []))
            seen.centroid = np.asarray(t["centroid"], np.float64)
            seen.radius = float(t["radius"])
            if t.get("input_centroid") is not None:
                seen.input_centroid = np.asarray(t["input_centroid"], np.float64)
                seen.input_radius = float(t["input_radius"])
            seen.records.append((run, int(t["records"])))
    return list(found.values())


def track(found: NewTypes, earlier: list[Seen]) -> NewTypes:
    """`found` with each candidate renamed after the earlier one it matches: the closest
    earlier centroid in the embedding that lies within the larger of the two radii in
    every space of `TRACK_SPACES` (one earlier candidate per candidate, the largest
    candidates first); a candidate matching none gets the next number never used.
    Without earlier candidates, `found` as it is."""
    if not earlier or not len(found.names):
        return found
    used = {int(s.name.split("-")[-1]) for s in earlier if s.name.split("-")[-1].isdigit()}
    taken: set[str] = set()
    names: list[str] = []
    table = found.table
    for row in table.itertuples():
        here = {"embedding": (np.asarray(row.centroid, np.float64), float(row.radius)),
                "inputs": (np.asarray(row.input_centroid, np.float64),
                           float(row.input_radius))}
        best, best_d = None, np.inf
        for seen in earlier:
            if seen.name in taken:
                continue
            near = [seen.near(space, *here[space]) for space in TRACK_SPACES]
            d = seen.near("embedding", *here["embedding"])
            if all(n is not None for n in near) and d is not None and d < best_d:
                best, best_d = seen.name, d
        if best is None:
            number = max(used | {0}) + 1
            used.add(number)
            best = f"new-{number}"
        taken.add(best)
        names.append(best)
    rename = dict(zip(found.names, names, strict=True))
    table = table.assign(new_type=[rename[n] for n in table["new_type"]])
    examples = {rename[k]: v for k, v in found.examples.items()}
    return NewTypes(names, table, found.assigner, examples, found.set_aside)

