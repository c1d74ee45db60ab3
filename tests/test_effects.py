"""The effect size: a standardised mean difference with a floored pooled deviation."""

from __future__ import annotations

import numpy as np

from trafficsiam.effects import SD_FLOOR, effect_sizes


def test_hand_computed():
    members = np.array([[1.0, 0.0], [3.0, 0.0]])
    good = np.array([[0.0, 0.0], [0.0, 0.0]])
    # column 0: means 2 vs 0, variances 1 and 0 -> pooled sqrt(0.5); column 1: constant
    np.testing.assert_allclose(effect_sizes(members, good), [2 / np.sqrt(0.5), 0.0])


def test_a_constant_input_is_divided_by_the_floor_not_by_zero():
    members, good = np.ones((3, 1)), np.zeros((3, 1))
    assert effect_sizes(members, good)[0] == 1 / SD_FLOOR


def test_no_records_is_nan():
    assert np.isnan(effect_sizes(np.zeros((0, 2)), np.ones((3, 2)))).all()
    assert np.isnan(effect_sizes(np.ones((3, 2)), np.zeros((0, 2)))).all()
