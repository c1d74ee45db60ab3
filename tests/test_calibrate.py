"""The evidence of each record and the decision's calibration (trafficsiam/calibrate.py):
the neighbours' vote, the three scores, HDBSCAN sub-modes, the good-traffic distance."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_assign import _blobs, _fit, _queries
from tests.test_prototypes import _saturated_brute
from trafficsiam.assign import NOISE, Assigner
from trafficsiam.calibrate import ANOMALY_QUANTILE, VOTE_NEIGHBOURS, KnownScorer
from trafficsiam.prototypes import ANOMALY_CANDIDATES, build_prototypes, nearest_distance


def _scorer(seed: int, saturation: float | None = None, **kw):  # type: ignore[no-untyped-def]
    """Blobs clustered by HDBSCAN; scenario 0 (good) is the first two clusters, scenario
    1 the third, scenario 2 a scattered minority drawn from the rest (no cluster of its
    own); held-out records are a second draw. (scorer, x, codes, held x, held codes)."""
    x = _blobs(4, 3000, seed, 200)
    clusterer = _fit(x, min_cluster_size=40, min_samples=5)
    labels = clusterer.labels_
    ids = np.unique(labels[labels >= 0])
    codes = np.where(np.isin(labels, ids[:2]), 0, np.where(labels == ids[2], 1, 2))
    good = codes == 0
    protos, owner = build_prototypes(x.astype(np.float32), np.where(good, -1, codes), 16)
    good_protos, _ = build_prototypes(x[good].astype(np.float32),
                                      np.zeros(int(good.sum()), np.int64), 24)
    scorer = KnownScorer(Assigner.from_clusterer(clusterer), labels, codes,
                         ["good", "e1", "e2"], 0, protos, owner, good_protos,
                         saturation=saturation, **kw)
    rng = np.random.default_rng(seed + 100)
    pick = rng.choice(len(x), 1500, replace=False)
    held = x[pick] + rng.normal(0, 0.01, (1500, 4))
    return scorer, x, codes, held, codes[pick]


def test_vote_shares_follow_the_weighted_neighbours() -> None:
    scorer, x, codes, held, held_codes = _scorer(0)
    dist, idx = scorer.neighbours(held)
    share = scorer.vote(dist, idx)
    np.testing.assert_allclose(share.sum(axis=1), 1.0)
    # brute force: 1 / (d + eps) weights of the VOTE_NEIGHBOURS nearest
    d = np.sqrt(((held[:, None, :] - x[None]) ** 2).sum(-1))
    near = np.argsort(d, axis=1, kind="stable")[:, :VOTE_NEIGHBOURS]
    w = 1.0 / (np.take_along_axis(d, near, 1) + 1e-6)
    want = np.stack([(w * (codes[near] == s)).sum(1) for s in range(3)], 1) / w.sum(1,
                                                                                  keepdims=True)
    np.testing.assert_allclose(share, want, rtol=1e-4, atol=1e-6)
    # most held-out records are voted their own scenario, rare one included
    voted = share.argmax(axis=1)
    assert (voted == held_codes).mean() > 0.9
    assert (voted[held_codes == 2] == 2).mean() > 0.5


def test_clusters_follow_approximate_predict_and_noise_goes_home() -> None:
    scorer, x, codes, held, _ = _scorer(1)
    dist, idx = scorer.neighbours(held)
    label, strength, home = scorer.clusters(dist, idx)
    want_label, want_strength = scorer.assigner.predict(held)
    np.testing.assert_array_equal(label, want_label)
    np.testing.assert_allclose(strength, want_strength)
    assert ((home >= 0) | (label == NOISE)).all() and (home[label >= 0] == label[label >= 0]).all()


def test_a_short_query_gives_the_full_querys_clusters() -> None:
    """Fewer neighbours than HDBSCAN's assignment asks for: the undecided and the noise
    records are queried again, and every record gets the full query's result."""
    scorer, x, codes, held, _ = _scorer(1)
    rng = np.random.default_rng(9)
    held = np.vstack([held, rng.uniform(x.min(0) - 5, x.max(0) + 5, (500, 4))])
    k_short = scorer.assigner.k_short
    assert k_short < scorer.assigner.k
    dist, idx = scorer.assigner.neighbours(held, k_short)
    got = scorer.clusters(dist, idx, held)
    want = scorer.clusters(*scorer.assigner.neighbours(held, scorer.assigner.k))
    assert (got[0] == NOISE).any() and (got[0] >= 0).any()
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    # without the embeddings to query again, the short query's own answer
    alone = scorer.clusters(dist, idx)
    assert not all(np.array_equal(a, w) for a, w in zip(alone, want, strict=True))


def test_calibrated_held_out_records_are_rarely_rejected_new_ones_are() -> None:
    scorer, x, codes, held, held_codes = _scorer(2)
    scorer.calibrate(held, held.astype(np.float32), held_codes)
    rng = np.random.default_rng(5)
    pick = rng.choice(len(x), 2000, replace=False)
    fresh = x[pick] + rng.normal(0, 0.01, (2000, 4))
    a = scorer.assess(fresh, fresh.astype(np.float32), 0.01)
    assert (~a.explained).mean() < 0.03
    good = codes[pick] == 0
    assert 0.0 < (~a.good[good]).mean() < 0.03
    # records far from everything: not good, not known
    far = x.max(0) + 30 + rng.normal(0, 1, (200, 4))
    b = scorer.assess(far, far.astype(np.float32), 0.01)
    assert not b.explained.any() and not b.good.any() and (b.p_good < 0.01).all()
    np.testing.assert_allclose(b.novelty, 0.01 / np.maximum(b.p_voted, np.finfo(float).tiny))


def test_good_embedding_with_inputs_unlike_good_traffic_is_flagged() -> None:
    """The neighbours vote good (embedding among good records) but the inputs are far
    from good traffic: ts_p_good flags the record, its anomaly says why."""
    scorer, x, codes, held, held_codes = _scorer(3)
    scorer.calibrate(held, held.astype(np.float32), held_codes)
    good_x = x[codes == 0][:300]
    odd = good_x.astype(np.float32).copy()
    odd[:, 0] += 25.0
    plain = scorer.assess(good_x, good_x.astype(np.float32), 0.01)
    moved = scorer.assess(good_x, odd, 0.01)
    assert (plain.voted == 0).all() and (moved.voted == 0).all()
    assert plain.good.mean() > 0.95 and not moved.good.any()
    assert (moved.anomaly > 2).all()


def test_anomaly_unit_is_the_held_out_good_quantile() -> None:
    scorer, x, codes, held, held_codes = _scorer(4, saturation=0.5)
    scorer.calibrate(held, held.astype(np.float32), held_codes)
    good = held_codes == 0
    want = np.quantile(scorer.good_distance(held[good].astype(np.float32)), ANOMALY_QUANTILE)
    assert scorer.anomaly_scale == pytest.approx(want)
    q = _queries(x, 4).astype(np.float32)
    np.testing.assert_allclose(scorer.good_distance(q),
                               _saturated_brute(q, scorer.good_prototypes, 0.5,
                                                ANOMALY_CANDIDATES), rtol=1e-5, atol=1e-5)
    euclid, *_ = _scorer(4)
    np.testing.assert_array_equal(euclid.good_distance(q),
                                  nearest_distance(q, euclid.good_prototypes))


def test_saturated_anomaly_is_the_mean_over_the_fits() -> None:
    """With the anomaly's k-means fits, the saturated distance is the mean over the fits
    of the brute-force saturated distance to each fit's `ANOMALY_CANDIDATES` nearest."""
    rng = np.random.default_rng(6)
    base, x, codes, *_ = _scorer(6)
    good = x[codes == 0]
    fits = [good[rng.choice(len(good), 12, replace=False)] for _ in range(3)]
    stacked = np.concatenate(fits).astype(np.float32)
    sat, *_ = _scorer(6, saturation=0.5, anomaly_prototypes=stacked,
                      anomaly_set=np.repeat(np.arange(3), 12))
    q = _queries(x, 6).astype(np.float32)
    want = np.mean([_saturated_brute(q, f.astype(np.float32), 0.5, ANOMALY_CANDIDATES)
                    for f in fits], axis=0)
    np.testing.assert_allclose(sat.good_distance(q), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(sat.good_distance(q), _saturated_brute(
        q, stacked, 0.5, ANOMALY_CANDIDATES), atol=1e-3)


def test_measure_once_judge_at_any_rate_equals_assess() -> None:
    scorer, x, codes, held, held_codes = _scorer(7)
    scorer.calibrate(held, held.astype(np.float32), held_codes)
    rng = np.random.default_rng(7)
    q = np.vstack([x[rng.choice(len(x), 1800)] + rng.normal(0, 0.05, (1800, 4)),
                   _queries(x, 7)[-200:]])
    measured = scorer.measure(q, q.astype(np.float32), batch_size=700)
    flagged = []
    for rate in (0.001, 0.01, 0.1):
        got = scorer.judge(measured, rate)
        want = scorer.assess(q, q.astype(np.float32), rate)
        for name in ("cluster", "voted", "p_voted", "p_good", "explained", "good", "anomaly"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), name)
        flagged.append(int((~got.explained).sum()))
    assert flagged[0] < flagged[1] < flagged[2]


def test_held_out_rates_measure_the_fits_false_alarm() -> None:
    scorer, x, codes, held, held_codes = _scorer(8)
    scorer.calibrate(held, held.astype(np.float32), held_codes)
    rows = scorer.held_out_rates(held, held.astype(np.float32), held_codes, (0.01, 0.1))
    assert [r["rate"] for r in rows] == [0.01, 0.1]
    assert rows[0]["flagged"] <= rows[1]["flagged"]
    assert rows[1]["unlike_good"] == pytest.approx(0.1, abs=0.03)
