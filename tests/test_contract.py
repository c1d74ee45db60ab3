"""The contract's names and the alert exit-code rule (the CLI and score_nightly.py)."""

from __future__ import annotations

import pytest

from trafficsiam import contract, decide


def test_the_verdict_codes_index_the_verdicts():
    import numpy as np

    assert [contract.VERDICTS[c] for c in (contract.GOOD, contract.KNOWN, contract.NEW,
                                           contract.OUTLIER)] == list(contract.VERDICTS)
    explained = np.array([True, True, False, False])
    good = np.array([True, False, False, False])
    grouped = np.array([False, False, True, False])
    codes = decide.verdict_codes(explained, good, grouped)
    assert [contract.VERDICTS[c] for c in codes] == ["good", "known_error", "new_error",
                                                      "outlier"]


def test_ts_columns_are_unique_and_prefixed():
    assert len(set(contract.TS_COLUMNS)) == len(contract.TS_COLUMNS)
    assert all(c.startswith("ts_") for c in contract.TS_COLUMNS)


@pytest.mark.parametrize("code", [0, 3, 4, 74, 76, 125])
def test_usable_alert_codes(code):
    assert contract.alert_exit_code(code) == code


@pytest.mark.parametrize("code", [1, 2, 75, 126, 130, 143, -1, 256])
def test_ambiguous_alert_codes_are_refused(code):
    with pytest.raises(ValueError, match="3-125 other than 75"):
        contract.alert_exit_code(code)


def test_run_exit_code():
    assert contract.run_exit_code(True, 3) == 3
    assert contract.run_exit_code(False, 3) == 0
    assert contract.run_exit_code(True, None) == 0
    assert contract.run_exit_code(True, 0) == 0
