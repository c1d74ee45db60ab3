"""trafficsiam.prototypes: the saturated distance against its definition, and the
choice between it and the Euclidean one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest


def _saturated_brute(q: np.ndarray, protos: np.ndarray, c: float, m: int) -> np.ndarray:
    """The saturated distance by its definition, in float64: over the m Euclidean-nearest
    prototypes, the least sqrt(sum_j min((q_j - p_j)^2, c^2))."""
    diff2 = (q[:, None, :].astype(np.float64) - protos[None].astype(np.float64)) ** 2
    near = np.argsort(diff2.sum(-1), axis=1)[:, :m]
    sat = np.minimum(diff2, c * c).sum(-1)
    return np.sqrt(np.take_along_axis(sat, near, axis=1).min(axis=1))


@pytest.mark.parametrize("candidates", [1, 2, 3, 5])
def test_saturated_distance_matches_its_definition(candidates: int) -> None:
    """prototypes.saturated_distance against the brute-force definition, across the
    product's row blocks; None is the Euclidean nearest distance; no prototypes: inf."""
    from trafficsiam.prototypes import NEAREST_BLOCK, nearest_distance, saturated_distance

    rng = np.random.default_rng(3)
    protos = rng.normal(size=(40, 7)).astype(np.float32)
    q = rng.normal(size=(NEAREST_BLOCK + 77, 7)).astype(np.float32)
    q[:50, 0] += 30.0  # one input far off
    got = saturated_distance(q, protos, 0.5, candidates)
    np.testing.assert_allclose(got, _saturated_brute(q, protos, 0.5, candidates),
                               rtol=1e-5, atol=1e-5)
    assert (got <= np.sqrt(7 * 0.25) + 1e-6).all()
    np.testing.assert_array_equal(saturated_distance(q, protos, None), nearest_distance(q, protos))
    assert np.isinf(saturated_distance(q, protos[:0], 0.5)).all()
    # the same rows give the same bits alone or inside a larger batch
    np.testing.assert_array_equal(saturated_distance(q[600:610], protos, 0.5, candidates),
                                  got[600:610])


def test_one_far_input_weighs_less_than_many_inputs_off() -> None:
    """The point of saturating: a record with one input 40 scales off (a counter good
    traffic never set) is nearer good traffic than one with five inputs 1 scale off,
    where the Euclidean distance says the opposite."""
    from trafficsiam.prototypes import saturated_distance

    protos = np.zeros((1, 10), np.float32)
    one_far = np.zeros((1, 10), np.float32)
    one_far[0, 0] = 40.0
    many_off = np.zeros((1, 10), np.float32)
    many_off[0, :5] = 1.0
    assert saturated_distance(one_far, protos, 0.25) < saturated_distance(many_off, protos, 0.25)
    assert saturated_distance(one_far, protos, None) > saturated_distance(many_off, protos, None)


def _failures_moving(inputs: int, shift: float, n: int, seed: int):
    """Held-out records for `choose_saturation`: good traffic (Gaussian, 20 inputs), its
    k-means prototypes, and n failures that move `inputs` inputs by `shift`."""
    from trafficsiam.prototypes import build_prototypes

    rng = np.random.default_rng(seed)
    good = rng.normal(size=(4000, 20)).astype(np.float32)
    protos, _ = build_prototypes(good[:3000], np.zeros(3000, np.int64), 32)
    bad = rng.normal(size=(n, 20)).astype(np.float32)
    bad[:, :inputs] += shift
    x = np.concatenate([good[3000:], bad])
    return x, np.r_[np.ones(1000, bool), np.zeros(n, bool)], protos


@pytest.mark.parametrize("inputs, shift, want", [(1, 8.0, None), (2, 5.0, None),
                                                 (10, 2.0, 0.25), (20, 1.5, 0.25)])
def test_auto_saturation_follows_how_many_inputs_the_failures_move(inputs, shift, want) -> None:
    """score.anomaly_saturation auto: failures that move one or two inputs far keep the
    Euclidean distance; failures that move many inputs at once get the saturated one."""
    from trafficsiam.prototypes import AUTO_INPUT_DROPOUT, choose_input_dropout, choose_saturation

    x, is_good, protos = _failures_moving(inputs, shift, 300, inputs)
    choice = choose_saturation(x, is_good, protos, 0.99)
    assert choice.saturation == want
    assert choice.failure_records > 250
    assert (choice.failure_inputs > choice.good_inputs) == (want is not None)
    assert ("saturated" in choice.describe()) == (want is not None)
    # train.input_dropout auto follows the same rule: blanking where failures move many
    rate, why = choose_input_dropout(choice)
    assert rate == (AUTO_INPUT_DROPOUT if want is not None else 0.0)
    assert why.startswith("none" if want is None else f"{AUTO_INPUT_DROPOUT:g}")


def test_auto_saturation_without_evidence_stays_euclidean() -> None:
    """Too few failure records outside good traffic's radius, or no good records: the
    Euclidean distance, with the count that was too small."""
    from trafficsiam.prototypes import AUTO_MIN_RECORDS, choose_input_dropout, choose_saturation

    x, is_good, protos = _failures_moving(20, 1.5, AUTO_MIN_RECORDS - 5, 1)
    choice = choose_saturation(x, is_good, protos, 0.99)
    assert choice.saturation is None and choice.failure_inputs is None
    assert 0 < choice.failure_records < AUTO_MIN_RECORDS
    assert str(AUTO_MIN_RECORDS) in choice.describe()
    assert choose_saturation(x, np.zeros(len(x), bool), protos, 0.99).saturation is None
    rate, why = choose_input_dropout(choice)  # no evidence: no blanking either
    assert rate == 0.0 and str(AUTO_MIN_RECORDS) in why


def test_repeated_records_give_one_prototype_per_distinct_record() -> None:
    """Exports repeat records: 3,000 records with 40 distinct rows asked k-means for 256
    centres. sklearn warned on stderr (even under --quiet) and put the centres it could
    not fill anywhere, one at 65 robust units from every record (a new record near it
    would have looked like good traffic). Now k is at most the distinct rows."""
    from trafficsiam.prototypes import build_prototypes, nearest_distance

    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(40, 6)).astype(np.float32)
    x = distinct[rng.integers(0, 40, size=3000)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        protos, owner = build_prototypes(x, np.zeros(len(x), np.int64), per_cluster=256)
    assert len(protos) == 40 and (owner == 0).all()
    # each centre is one of the distinct records, and each of them has a centre
    gap = np.linalg.norm(protos[:, None, :].astype(np.float64) - distinct[None], axis=-1)
    assert gap.min(axis=1).max() < 1e-4 and gap.min(axis=0).max() < 1e-4
    # 0 up to the float32 rounding of |p|^2 - 2 p.x + |x|^2
    assert np.allclose(nearest_distance(x, protos), 0.0, atol=1e-2)


def test_near_duplicate_records_leave_no_empty_centre_and_no_warning() -> None:
    """Records equal up to float rounding are distinct rows, so the cap above lets k-means
    put two centres on one of them; one then owns no record and sklearn warned
    (ConvergenceWarning) on stderr, even under --quiet, at every TON_IoT fit. Every kept
    centre owns a record now, and the distances are those of the full k-means."""
    from sklearn.cluster import KMeans

    from trafficsiam.prototypes import build_prototypes, nearest_distance

    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 6)).astype(np.float32)
    near = base[:100] + np.float32(1e-6) * rng.normal(size=(100, 6)).astype(np.float32)
    x = np.repeat(np.concatenate([base, near]), 10, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        protos, owner = build_prototypes(x, np.zeros(len(x), np.int64), per_cluster=256)
    with warnings.catch_warnings():  # the full k-means, as sklearn gives it, warns
        warnings.simplefilter("ignore")
        full = KMeans(256, n_init=1, random_state=0).fit(x)
    assert len(protos) == len(np.unique(full.labels_)) < 256
    nearest = np.argmin(((x[:, None, :] - protos[None]) ** 2).sum(-1), axis=1)
    assert len(np.unique(nearest)) == len(protos)  # each centre owns a record
    assert np.allclose(nearest_distance(x, protos),
                       nearest_distance(x, full.cluster_centers_.astype(np.float32)),
                       atol=1e-3)
