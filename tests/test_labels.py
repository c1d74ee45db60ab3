"""Label hygiene (`trafficsiam.labels`, issue 18 item 7): one spelling rule for fit,
evaluate, backtest and the configured good label."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trafficsiam.config import DataConfig, build_config
from trafficsiam.errors import ConfigError, InputError
from trafficsiam.labels import clean_label, clean_labels
from trafficsiam.read import read_records
from trafficsiam.validate import check_labels

NFC, NFD = "caf\u00e9", "cafe\u0301"


@pytest.mark.parametrize("value, plain, folded", [
    (NFD, NFC, NFC),
    ("", None, None),
    ("  \t", None, None),
    (None, None, None),
    (float("nan"), None, None),
    (pd.NA, None, None),
    (3, "3", "3"),
    ("  Port  Scan ", "  Port  Scan ", "port scan"),
    ("NORMAL", "NORMAL", "normal"),
])
def test_one_label(value, plain, folded):
    assert clean_label(value) == plain
    assert clean_label(value, normalise=True) == folded


def test_labels_are_cleaned_once_per_distinct_value_keeping_order_and_index():
    values = pd.Series([NFD, "", "good", None, NFC, "good"], index=[5, 4, 3, 2, 1, 0])
    out = clean_labels(values)
    assert out.index.tolist() == [5, 4, 3, 2, 1, 0]
    assert out.tolist() == [NFC, None, "good", None, NFC, "good"]


def _records(tmp_path, labels, suffix=".parquet"):
    frame = pd.DataFrame({"scenario": labels, "bytes": np.arange(len(labels), dtype=float)})
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return read_records([path])


def test_nfc_and_nfd_spellings_are_one_scenario(tmp_path):
    records = _records(tmp_path, ["good"] * 4 + [NFC, NFC, NFD, NFD])
    labels = check_labels(records, DataConfig())
    assert labels.value_counts().to_dict() == {"good": 4, NFC: 4}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_an_empty_label_is_missing_in_parquet_as_in_csv(tmp_path, suffix):
    records = _records(tmp_path, ["good", "good", "", "bad", "bad"], suffix)
    with pytest.raises(InputError) as err:
        check_labels(records, DataConfig())
    assert str(err.value).startswith(
        f"{tmp_path / ('data' + suffix)} row 2: column 'scenario' is missing a label (1 rows "
        "without one; empty and blank labels count as missing)")


def test_case_variants_are_refused_by_default_and_merged_when_asked(tmp_path):
    records = _records(tmp_path, ["good", "good", "Scan ", "scan", "scan"])
    with pytest.raises(InputError, match=r"data.label_normalise=true"):
        check_labels(records, DataConfig())
    labels = check_labels(records, DataConfig(label_normalise=True))
    assert labels.value_counts().to_dict() == {"scan": 3, "good": 2}


def test_the_good_label_is_spelled_as_the_labels_are():
    assert DataConfig(good_label=NFD).good_label == NFC
    assert DataConfig(good_label=" Normal ", label_normalise=True).good_label == "normal"
    assert DataConfig(good_label=" Normal ").good_label == " Normal "
    with pytest.raises(ConfigError, match=r"data.good_label is empty"):
        build_config({"data": {"good_label": "  "}})
