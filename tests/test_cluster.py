import json
import logging

import numpy as np
import pytest

from trafficsiam.cluster import (
    EPSILON_CANDIDATES,
    NOISE,
    explained_share,
    fit_clusters,
    name_clusters,
    resolve_params,
    restore_clusterer,
    stratified_sample,
)
from trafficsiam.config import ClusterConfig
from trafficsiam.errors import ArtifactError


def blobs(rng, sizes, centres, scale=0.02):
    pts = [rng.normal(c, scale, size=(n, len(c))) for n, c in zip(sizes, centres, strict=True)]
    return np.clip(np.vstack(pts), 0, 1)


def test_stratified_sample_keeps_small_classes_whole():
    labels = np.array(["good"] * 9000 + ["e1"] * 900 + ["rare"] * 40)
    idx = stratified_sample(labels, 1000, np.random.default_rng(0))
    assert len(idx) == 1000 and len(np.unique(idx)) == 1000
    picked = dict(zip(*np.unique(labels[idx], return_counts=True), strict=True))
    assert picked["rare"] == 40
    assert picked["e1"] == 480 and picked["good"] == 480


def test_stratified_sample_takes_everything_under_the_cap():
    labels = np.array(["a"] * 10 + ["b"] * 5)
    assert stratified_sample(labels, 100, np.random.default_rng(0)).tolist() == list(range(15))


def test_auto_min_cluster_size():
    assert resolve_params(ClusterConfig(), 20_000)["min_cluster_size"] == 100
    assert resolve_params(ClusterConfig(), 500)["min_cluster_size"] == 10
    assert resolve_params(ClusterConfig(min_cluster_size=50), 60)["min_cluster_size"] == 30


def test_name_clusters_majority_purity_and_split_names():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, -1])
    scen = np.array(["good", "good", "good", "e1", "good", "good", "good", "e1", "e1", "e1"])
    table = name_clusters(labels, scen, np.linspace(0.5, 1, 10), "good")
    rows = table.set_index("cluster")
    assert rows.loc[0, "name"] == "good" and rows.loc[1, "name"] == "good-2"
    assert rows.loc[2, "name"] == "e1" and rows.loc[NOISE, "name"] == "noise"
    assert rows.loc[0, "purity"] == 0.75
    assert json.loads(rows.loc[0, "mix"]) == {"good": 3, "e1": 1}
    assert bool(rows.loc[1, "is_good"]) and not bool(rows.loc[2, "is_good"])
    # one of the four e1 records fell into noise
    assert rows.loc[2, "scenario_noise_share"] == 0.25


def test_fit_clusters_finds_and_names_each_scenario(caplog):
    rng = np.random.default_rng(0)
    emb = blobs(rng, [600, 300, 200], [[0.1] * 4, [0.9] * 4, [0.1, 0.9, 0.1, 0.9]])
    scen = np.array(["good"] * 600 + ["e1"] * 300 + ["e2"] * 200)
    result = fit_clusters(emb, scen, ClusterConfig(), "good", np.random.default_rng(0))
    named = set(result.table.loc[result.table["cluster"] != NOISE, "scenario"])
    assert named == {"good", "e1", "e2"}
    assert result.weighted_purity == pytest.approx(1.0)
    assert "has no cluster" not in caplog.text


def test_scenario_without_cluster_is_reported(caplog):
    caplog.set_level(logging.INFO, logger="trafficsiam")
    rng = np.random.default_rng(0)
    emb = blobs(rng, [600, 300, 5], [[0.1] * 4, [0.9] * 4, [0.5] * 4], scale=0.02)
    scen = np.array(["good"] * 600 + ["e1"] * 300 + ["tiny"] * 5)
    fit_clusters(emb, scen, ClusterConfig(), "good", np.random.default_rng(0))
    (record,) = [r for r in caplog.records if "no cluster of their own" in r.getMessage()]
    # not a warning: the vote of labelled neighbours still recognises the scenario
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("1 scenario(s) have no cluster of their own; "
                                          "their records are still recognised by their "
                                          "labelled neighbours")
    assert record.getMessage().endswith(": 'tiny'")


def test_restore_reproduces_labels_and_refuses_mismatch():
    rng = np.random.default_rng(1)
    emb = blobs(rng, [300, 300], [[0.2] * 3, [0.8] * 3])
    scen = np.array(["good"] * 300 + ["e1"] * 300)
    result = fit_clusters(emb, scen, ClusterConfig(), "good", np.random.default_rng(0))
    restored = restore_clusterer(emb[result.sample_idx], result.labels, result.params)
    np.testing.assert_array_equal(restored.labels_, result.labels)
    tampered = result.labels.copy()
    tampered[:5] = 1 - np.maximum(tampered[:5], 0)
    with pytest.raises(ArtifactError, match="refitting HDBSCAN gave different labels for 5"):
        restore_clusterer(emb[result.sample_idx], tampered, result.params)


def test_explained_share_counts_majority_members_only():
    labels = np.array([0, 0, 0, 1, 1, -1])
    scen = np.array(["a", "a", "b", "b", "b", "a"])
    assert explained_share(labels, scen) == pytest.approx(4 / 6)


def test_auto_epsilon_merges_knots_that_leave_records_as_noise():
    # One scenario made of two dense knots joined by a sparse bridge, and a far
    # second scenario: with epsilon 0 the bridge is noise; a selected epsilon keeps it.
    rng = np.random.default_rng(3)
    knots = blobs(rng, [400, 400, 400], [[0.1, 0.1], [0.2, 0.1], [0.9, 0.9]], scale=0.004)
    bridge = np.column_stack([np.linspace(0.1, 0.2, 120), np.full(120, 0.1)])
    emb = np.vstack([knots, bridge + rng.normal(0, 0.01, bridge.shape)])
    scen = np.array(["good"] * 800 + ["e1"] * 400 + ["good"] * 120)
    fixed = fit_clusters(emb, scen, ClusterConfig(cluster_selection_epsilon=0.0), "good",
                         np.random.default_rng(0))
    auto = fit_clusters(emb, scen, ClusterConfig(), "good", np.random.default_rng(0))
    assert [t["cluster_selection_epsilon"] for t in auto.selection] == list(EPSILON_CANDIDATES)
    assert auto.params["cluster_selection_epsilon"] > 0
    assert auto.explained_share > fixed.explained_share
    assert auto.explained_share == max(t["explained_share"] for t in auto.selection)
    # refit from stored parameters reproduces the selected labels
    restored = restore_clusterer(emb[auto.sample_idx], auto.labels, auto.params)
    np.testing.assert_array_equal(restored.labels_, auto.labels)
