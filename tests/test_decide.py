"""The verdict rule and its conformal p-values (trafficsiam/decide.py)."""

from __future__ import annotations

import numpy as np

from trafficsiam.contract import GOOD, KNOWN, NEW, OUTLIER, VERDICTS
from trafficsiam.decide import Calibration, decide, rate_table, verdict_codes


def test_good_needs_the_vote_and_the_p_value() -> None:
    voted_good = np.array([True, True, False, False])
    p_voted = np.array([0.5, 0.005, 0.5, 0.005])
    p_good = np.array([0.5, 0.005, 0.9, 0.9])
    explained, good = decide(voted_good, p_voted, p_good, 0.01)
    # voted good and typical: good; voted good but unlike good traffic: flagged;
    # voted a failure and typical of it: known error (whatever p_good says); voted a
    # failure unlike it: flagged, never good
    assert good.tolist() == [True, False, False, False]
    assert explained.tolist() == [True, False, True, False]


def test_verdict_codes_name_the_four_verdicts() -> None:
    explained = np.array([True, True, False, False])
    good = np.array([True, False, False, False])
    grouped = np.array([True, True, True, False])  # ignored for explained records
    codes = verdict_codes(explained, good, grouped)
    assert codes.tolist() == [GOOD, KNOWN, NEW, OUTLIER]
    assert [VERDICTS[c] for c in codes] == ["good", "known_error", "new_error", "outlier"]


def test_p_value_is_the_share_of_held_out_records_at_least_as_extreme() -> None:
    held = np.arange(1.0, 100.0)[:, None]  # 99 held-out records, one score: 1..99
    cal = Calibration.fit(held, np.zeros(99, np.int64))
    p = cal.p_values(np.array([[0.5], [50.0], [99.0]]), np.zeros(3, np.int64))
    # one score: the combined p-value is that score's, (1 + records >= value) / (n + 1)
    np.testing.assert_allclose(p, [100 / 100, 51 / 100, 2 / 100])


def test_beyond_every_held_out_record_the_p_value_keeps_falling() -> None:
    """With 60 held-out records the conformal floor is 1/61, above a rate of 0.01: a
    record beyond them all goes below it along the tail, farther is smaller."""
    held = np.linspace(0.0, 1.0, 60)[:, None]
    cal = Calibration.fit(held, np.zeros(60, np.int64))
    p = cal.p_values(np.array([[0.99], [1.01], [1.5], [5.0], [np.inf]]), np.zeros(5, np.int64))
    assert p[0] == 2 / 61 and 0.01 < p[1] < 1 / 61
    assert p[1] > p[2] > p[3] > p[4] and p[3] < 0.01 and p[4] == 0.0


def test_a_scenario_without_held_out_records_is_never_rejected() -> None:
    cal = Calibration.fit(np.ones((5, 2)), np.zeros(5, np.int64))
    assert cal.records(1) == 0
    np.testing.assert_array_equal(cal.p_values(np.full((3, 2), 1e9), np.ones(3, np.int64)), 1.0)


def test_held_out_records_are_flagged_at_the_rate() -> None:
    """Exchangeable records (new draws of the held-out distribution) are flagged at about
    the rate, for every rate; so are the held-out records themselves, leave-one-out."""
    rng = np.random.default_rng(0)
    held = rng.normal(size=(4000, 3))
    cal = Calibration.fit(held, np.zeros(len(held), np.int64))
    new = rng.normal(size=(40000, 3))
    p_new = cal.p_values(new, np.zeros(len(new), np.int64))
    p_held = cal.held_out_p_values(held, np.zeros(len(held), np.int64))
    for rate in (0.01, 0.05, 0.1):
        assert abs((p_new <= rate).mean() - rate) < 0.25 * rate + 0.002
        assert abs((p_held <= rate).mean() - rate) < 0.25 * rate + 0.002


def test_any_score_can_flag_a_record() -> None:
    """The smallest of the scores' p-values decides: a record extreme in one score only is
    flagged, one typical in all is not."""
    rng = np.random.default_rng(1)
    held = rng.normal(size=(2000, 3))
    cal = Calibration.fit(held, np.zeros(len(held), np.int64))
    records = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]])
    p = cal.p_values(records, np.zeros(4, np.int64))
    assert p[0] > 0.3 and (p[1:] < 0.01).all()


def test_rate_table_counts_both_kinds_of_false_alarm() -> None:
    voted_good = np.array([True, True, True, False])
    p = np.array([0.5, 0.02, 0.001, 0.9])
    rows = {r["rate"]: r for r in rate_table((0.01, 0.05), voted_good, p, p)}
    assert rows[0.01] == {"rate": 0.01, "flagged": 0.5, "unlike_good": 0.25,
                          "voted_failure": 0.25}
    assert rows[0.05]["flagged"] == 0.75 and rows[0.05]["unlike_good"] == 0.5


def test_held_out_p_values_of_a_subset_are_those_of_the_whole():
    # a subset (the good records a held-out set votes a failure) got p-values scaled by its
    # own size, not the calibration's: the discovery's background came out too small
    rng = np.random.default_rng(4)
    scores = rng.exponential(size=(300, 3))
    codes = np.repeat([0, 1], 150)
    cal = Calibration.fit(scores, codes)
    whole = cal.held_out_p_values(scores, codes)
    part = np.flatnonzero(rng.random(300) < 0.2)
    assert np.array_equal(cal.held_out_p_values(scores[part], codes[part]), whole[part])
