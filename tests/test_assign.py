"""trafficsiam.assign.Assigner agrees with hdbscan.approximate_predict."""

from __future__ import annotations

import warnings

import hdbscan
import numpy as np
import pytest

from trafficsiam.assign import Assigner, core_distances

MIN_AGREEMENT = 0.995


def _blobs(dim: int, n: int, seed: int, n_noise: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, (5, dim))
    stds = np.array([0.3, 0.6, 1.0, 1.5, 0.8])
    which = rng.integers(0, len(centers), n)
    x = centers[which] + rng.normal(0, 1, (n, dim)) * stds[which, None]
    noise = rng.uniform(x.min(0) - 2, x.max(0) + 2, (n_noise, dim))
    return np.vstack([x, noise])


def _queries(x: np.ndarray, seed: int, n_near: int = 1500, n_far: int = 500) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    dim = x.shape[1]
    near = x[rng.integers(0, len(x), n_near)] + rng.normal(0, 0.4, (n_near, dim))
    spread = x.max(0) - x.min(0)
    mid = rng.uniform(x.min(0) - spread, x.max(0) + spread, (n_far, dim))
    exact = x[rng.integers(0, len(x), 200)]  # training points themselves (distance-0 ties)
    return np.vstack([near, mid, exact])


def _fit(x: np.ndarray, **params: object) -> hdbscan.HDBSCAN:
    return hdbscan.HDBSCAN(prediction_data=True, **params).fit(x)


def _compare(clusterer: hdbscan.HDBSCAN, q: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_labels, ref_strengths = hdbscan.approximate_predict(clusterer, q)
    labels, strengths = Assigner.from_clusterer(clusterer).predict(q, batch_size=700)
    assert labels.shape == (len(q),) and strengths.shape == (len(q),)
    assert labels.dtype == np.int64 and strengths.dtype == np.float64
    same = labels == ref_labels
    agreement = float(same.mean())
    print(f"agreement {agreement:.6f} on {len(q)} points")
    assert agreement >= MIN_AGREEMENT
    np.testing.assert_allclose(strengths[same], ref_strengths[same], rtol=0, atol=1e-6)
    assert np.all((strengths >= 0) & (strengths <= 1))
    assert np.all(strengths[labels < 0] == 0)
    return agreement


CASES = [
    # dim, seed, n_noise, HDBSCAN parameters
    (3, 0, 100, {"min_cluster_size": 15, "min_samples": 5}),
    (3, 1, 200, {"min_cluster_size": 25, "min_samples": None, "cluster_selection_method": "leaf"}),
    (3, 2, 100, {"min_cluster_size": 10, "min_samples": 3, "cluster_selection_epsilon": 0.1}),
    (8, 3, 150, {"min_cluster_size": 20, "min_samples": 5, "cluster_selection_epsilon": 0.1,
                 "cluster_selection_method": "leaf"}),
    (8, 4, 100, {"min_cluster_size": 30, "min_samples": 10}),
    (8, 5, 300, {"min_cluster_size": 5, "min_samples": 1}),
    (2, 6, 50, {"min_cluster_size": 8, "min_samples": 2, "cluster_selection_epsilon": 1.0}),
    (3, 7, 100, {"min_cluster_size": 40, "min_samples": 5, "allow_single_cluster": True}),
]


@pytest.mark.parametrize(("dim", "seed", "n_noise", "params"), CASES)
def test_agrees_with_approximate_predict(dim: int, seed: int, n_noise: int, params: dict) -> None:
    x = _blobs(dim, 1500, seed, n_noise)
    clusterer = _fit(x, **params)
    assert clusterer.labels_.max() >= 0
    _compare(clusterer, _queries(x, seed))


def test_fine_tree_many_clusters_and_duplicates() -> None:
    """Many small clusters (deep condensed tree) and duplicated training rows."""
    rng = np.random.default_rng(11)
    x = _blobs(3, 1200, 11, 200)
    x = np.vstack([x, x[rng.integers(0, len(x), 300)]])  # exact duplicates: zero distances
    clusterer = _fit(x, min_cluster_size=5, min_samples=1)
    assert clusterer.labels_.max() >= 10
    _compare(clusterer, _queries(x, 11))


def test_far_points_are_noise() -> None:
    x = _blobs(8, 1500, 21, 0)
    clusterer = _fit(x, min_cluster_size=20, min_samples=5)
    rng = np.random.default_rng(22)
    direction = rng.normal(size=(200, 8))
    far = x.mean(0) + 1e3 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    labels, strengths = Assigner.from_clusterer(clusterer).predict(far)
    assert np.all(labels == -1)
    assert np.all(strengths == 0.0)
    ref_labels, _ = hdbscan.approximate_predict(clusterer, far)
    assert np.all(ref_labels == -1)


def test_cluster_centres_get_their_cluster() -> None:
    x = _blobs(3, 1500, 31, 0)
    clusterer = _fit(x, min_cluster_size=15, min_samples=5)
    assigner = Assigner.from_clusterer(clusterer)
    labels, strengths = assigner.predict(x)
    clustered = clusterer.labels_ >= 0
    assert (labels[clustered] == clusterer.labels_[clustered]).mean() > 0.95
    assert strengths[clustered].mean() > 0.3


def test_shapes_dtypes_and_empty_input() -> None:
    x = _blobs(3, 600, 41, 30)
    assigner = Assigner.from_clusterer(_fit(x, min_cluster_size=15, min_samples=5))
    for empty in (np.zeros((0, 3)), np.zeros(0), []):
        labels, strengths = assigner.predict(empty)
        assert labels.shape == (0,) and labels.dtype == np.int64
        assert strengths.shape == (0,) and strengths.dtype == np.float64
    labels, strengths = assigner.predict(x[:5].astype(np.float32).tolist())
    assert labels.shape == (5,) and strengths.dtype == np.float64
    with pytest.raises(ValueError):
        assigner.predict(np.zeros((4, 2)))


def test_batches_and_threads_do_not_change_the_result() -> None:
    x = _blobs(3, 1000, 51, 100)
    assigner = Assigner.from_clusterer(_fit(x, min_cluster_size=15, min_samples=5))
    q = _queries(x, 51)
    labels, strengths = assigner.predict(q)
    for batch_size, n_jobs in ((1, 1), (97, 1), (300, 3)):
        other_labels, other_strengths = assigner.predict(q, batch_size=batch_size, n_jobs=n_jobs)
        np.testing.assert_array_equal(other_labels, labels)
        np.testing.assert_array_equal(other_strengths, strengths)


def test_refitted_clusterer_gives_the_same_assigner() -> None:
    """The product restores the clusterer by refitting: the assignment must come back."""
    x = _blobs(3, 1000, 61, 100)
    q = _queries(x, 61)
    first = Assigner.from_clusterer(_fit(x, min_cluster_size=15, min_samples=5)).predict(q)
    second = Assigner.from_clusterer(_fit(x, min_cluster_size=15, min_samples=5)).predict(q)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_no_clusters_means_all_noise() -> None:
    rng = np.random.default_rng(71)
    x = rng.uniform(0, 1, (60, 3))
    clusterer = _fit(x, min_cluster_size=40, min_samples=5)
    assert clusterer.prediction_data_.cluster_tree.shape[0] == 0
    labels, strengths = Assigner.from_clusterer(clusterer).predict(rng.uniform(0, 1, (10, 3)))
    assert np.all(labels == -1) and np.all(strengths == 0.0)


def test_requires_prediction_data() -> None:
    x = _blobs(3, 300, 81, 0)
    clusterer = hdbscan.HDBSCAN(min_cluster_size=15).fit(x)
    with pytest.raises(ValueError):
        Assigner.from_clusterer(clusterer)


@pytest.mark.parametrize(("seed", "params"), [
    (91, {"min_cluster_size": 15, "min_samples": 5}),
    (92, {"min_cluster_size": 10, "min_samples": 3, "cluster_selection_epsilon": 1.0}),
    (93, {"min_cluster_size": 40, "min_samples": 3, "cluster_selection_epsilon": 0.3}),
    (94, {"min_cluster_size": 300, "min_samples": 5}),  # few or no clusters
])
def test_core_distances_stand_in_for_prediction_data(seed: int, params: dict) -> None:
    """A clusterer fitted without prediction data plus `core_distances` gives the
    assigner of the same fit with prediction data, array for array (new-type discovery
    relies on it)."""
    x = _blobs(8, 2000, seed, 300)
    reference = Assigner.from_clusterer(_fit(x, **params))
    bare = hdbscan.HDBSCAN(**params).fit(x)
    built = Assigner.from_clusterer(bare, core_distances(x, params["min_samples"]))
    ref_arrays, ref_spec = reference.to_arrays()
    arrays, spec = built.to_arrays()
    assert spec == ref_spec and arrays.keys() == ref_arrays.keys()
    for name, values in ref_arrays.items():
        np.testing.assert_array_equal(arrays[name], values, err_msg=name)
    np.testing.assert_array_equal(built.raw_data, reference.raw_data)


def test_changed_hdbscan_internals_fall_back_to_its_prediction_data(monkeypatch) -> None:
    """Where the derivation from hdbscan's private layout fails (another hdbscan
    version), the library's own prediction data is generated: the same assigner."""
    from trafficsiam import assign

    x = _blobs(8, 2000, 95, 300)
    params = {"min_cluster_size": 15, "min_samples": 5}
    reference = Assigner.from_clusterer(_fit(x, **params))

    def changed(*args: object) -> None:
        raise AttributeError("'CondensedTree' object has no attribute '_raw_tree'")

    monkeypatch.setattr(assign._Prediction, "_derived", classmethod(changed))
    bare = hdbscan.HDBSCAN(**params).fit(x)
    built = Assigner.from_clusterer(bare, core_distances(x, params["min_samples"]))
    assert getattr(bare, "prediction_data_", None) is not None
    for name, values in reference.to_arrays()[0].items():
        np.testing.assert_array_equal(built.to_arrays()[0][name], values, err_msg=name)


@pytest.mark.parametrize("seed", [0, 1])
def test_allow_single_cluster(seed: int) -> None:
    """One blob and a satellite, allow_single_cluster: the library's cluster_map then holds
    only the segment with the lowest id among the labelled points (seed 1: a child of the
    root, so the other child predicts as noise) or the condensed tree has no cluster rows
    at all (seed 0: everything predicts as noise). The assigner follows it either way."""
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.normal(0, 1, (800, 3)), rng.normal(2.0, 0.5, (60, 3)),
                   rng.uniform(-6, 6, (80, 3))])
    clusterer = _fit(x, min_cluster_size=50, min_samples=5, allow_single_cluster=True)
    assert clusterer.labels_.max() == 0
    _compare(clusterer, np.vstack([x, _queries(x, seed)]))


def _float32_case(seed: int) -> tuple[hdbscan.HDBSCAN, np.ndarray]:
    """Training points and queries holding float32 values, as embeddings do, and more
    queries than `_SORT_MIN`, so that scoring's float32 tree and query order are used."""
    x = _blobs(8, 3000, seed, 150).astype(np.float32).astype(np.float64)
    q = _queries(x, seed, n_near=4000, n_far=800).astype(np.float32)
    return _fit(x, min_cluster_size=20, min_samples=5), q


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_points_agree_with_approximate_predict(seed: int) -> None:
    from trafficsiam.assign import _SORT_MIN

    clusterer, q = _float32_case(seed)
    assigner = Assigner.from_clusterer(clusterer)
    assert assigner._tree32 is not None and len(q) > _SORT_MIN
    _compare(clusterer, q.astype(np.float64))
    # float32 values give the same answer whatever the dtype they come in
    as32 = assigner.predict(q)
    as64 = assigner.predict(q.astype(np.float64))
    np.testing.assert_array_equal(as32[0], as64[0])
    np.testing.assert_array_equal(as32[1], as64[1])


def test_query_order_does_not_change_the_neighbours() -> None:
    """A batch is queried in Z-order and put back: each row's neighbours are those it
    gets when queried in a batch too small to be ordered."""
    from trafficsiam.assign import _SORT_MIN

    clusterer, q = _float32_case(2)
    assigner = Assigner.from_clusterer(clusterer)
    assert assigner._query_order(q) is not None
    dist, idx = assigner.neighbours(q)
    step = _SORT_MIN // 4
    parts = [assigner.neighbours(q[s : s + step]) for s in range(0, len(q), step)]
    np.testing.assert_array_equal(idx, np.concatenate([p[1] for p in parts]))
    np.testing.assert_array_equal(dist, np.concatenate([p[0] for p in parts]))
    # float32 distances: the float64 tree's to their precision (+1e-12: not float32
    # values any more, so the float64 tree answers)
    ref = assigner.neighbours(q.astype(np.float64) + 1e-12)[0]
    np.testing.assert_allclose(dist, ref, rtol=1e-6, atol=1e-6)


def test_points_beyond_float32_keep_a_float64_tree() -> None:
    """Training points or queries that float32 would round are queried in float64, with
    the distances sklearn's tree gives."""
    from sklearn.neighbors import KDTree

    x = _blobs(3, 1000, 71, 50) + 1e-9  # not float32 values
    assigner = Assigner.from_clusterer(_fit(x, min_cluster_size=15, min_samples=5))
    assert assigner._tree32 is None
    q = _queries(x, 71)
    dist, idx = assigner.neighbours(q)
    want = KDTree(x).query(q, k=assigner.k)[0]
    np.testing.assert_allclose(dist, want, rtol=0, atol=1e-12)
    # float32-valued training points, queries that are not float32 values: float64 too
    x32 = x.astype(np.float32).astype(np.float64)
    assigner = Assigner.from_clusterer(_fit(x32, min_cluster_size=15, min_samples=5))
    assert assigner._tree32 is not None
    q64 = q + 1e-9
    dist, _ = assigner.neighbours(q64)
    np.testing.assert_allclose(dist, KDTree(x32).query(q64, k=assigner.k)[0], rtol=0,
                               atol=1e-12)
