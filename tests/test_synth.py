"""Tests for the sample traffic generator (trafficsiam.synth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trafficsiam import synth
from trafficsiam.errors import InputError

ROWS = 5_000

FLOAT_COLUMNS = ("duration_ms", "latency_ms", "jitter_ms", "retransmissions", "error_rate")
INT_COLUMNS = ("bytes_in", "bytes_out", "packets_in", "packets_out")
STRING_COLUMNS = ("id", "scenario", "protocol", "service", "tcp_state")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synth.generate(ROWS, seed=3)


@pytest.fixture(scope="module")
def novel_frame() -> pd.DataFrame:
    return synth.generate(ROWS, seed=3, novel=True)


def test_same_arguments_give_the_same_frame(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(synth.generate(ROWS, seed=3), frame)


def test_another_seed_gives_another_frame(frame: pd.DataFrame) -> None:
    other = synth.generate(ROWS, seed=4)
    assert not other["bytes_in"].equals(frame["bytes_in"])
    assert not other["scenario"].equals(frame["scenario"])


@pytest.mark.parametrize("rows", [10, 11, 37, 1_234])
@pytest.mark.parametrize("novel", [False, True])
def test_exact_row_count_and_at_least_two_per_scenario(rows: int, novel: bool) -> None:
    df = synth.generate(rows, seed=1, novel=novel)
    assert len(df) == rows
    assert list(df.index) == list(range(rows))
    expected = set(synth.SCENARIOS) | (set(synth.NOVEL_SCENARIOS) if novel else set())
    counts = df["scenario"].value_counts()
    assert set(counts.index) == expected
    assert counts.min() >= 2


def test_columns_and_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(synth.COLUMNS)
    assert set(FLOAT_COLUMNS + INT_COLUMNS + STRING_COLUMNS + ("timestamp",)) == set(frame.columns)
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    for column in FLOAT_COLUMNS:
        assert frame[column].dtype == np.float64, column
    for column in INT_COLUMNS:
        assert frame[column].dtype == np.int64, column
    for column in STRING_COLUMNS:
        assert pd.api.types.is_string_dtype(frame[column]), column
        assert frame[column].map(type).eq(str).all(), column


def test_value_ranges_and_categories(frame: pd.DataFrame) -> None:
    assert frame["error_rate"].between(0.0, 1.0).all()
    for column in INT_COLUMNS:
        assert (frame[column] >= 0).all(), column
    assert (frame["packets_out"] >= 1).all()
    assert (frame["duration_ms"] > 0).all()
    assert set(frame["protocol"]) == {"tcp", "udp", "icmp"}
    assert {"http", "https", "dns", "streaming", "ssh", "smtp", "ntp"} <= set(frame["service"])
    assert {"SF", "S0", "REJ", "RSTO"} <= set(frame["tcp_state"])
    not_tcp = frame["protocol"] != "tcp"
    assert (frame.loc[not_tcp, "tcp_state"] == "none").all()
    assert (frame.loc[~not_tcp, "tcp_state"] != "none").all()


def test_timestamps_span_one_day_and_mostly_increase(frame: pd.DataFrame) -> None:
    ts = frame["timestamp"]
    start = pd.Timestamp("2026-11-01", tz="UTC")
    assert ts.min() >= start
    assert ts.max() < start + pd.Timedelta(days=1)
    assert ts.max() - ts.min() > pd.Timedelta(hours=20)
    assert not ts.is_monotonic_increasing  # jittered ...
    assert np.corrcoef(np.arange(len(ts)), ts.astype("int64"))[0, 1] > 0.99  # ... but in order


def test_shares(novel_frame: pd.DataFrame) -> None:
    plain = synth.generate(20_000, seed=0)["scenario"].value_counts(normalize=True)
    assert plain["good"] == pytest.approx(0.70, abs=0.01)
    assert plain["error_type_1"] == pytest.approx(0.15, abs=0.01)
    assert plain["error_type_2"] == pytest.approx(0.15, abs=0.01)
    novel_share = novel_frame["scenario"].isin(synth.NOVEL_SCENARIOS).mean()
    assert 0.07 <= novel_share <= 0.11


def test_novel_names_only_with_novel(frame: pd.DataFrame, novel_frame: pd.DataFrame) -> None:
    assert not set(frame["scenario"]) & set(synth.NOVEL_SCENARIOS)
    assert set(synth.NOVEL_SCENARIOS) <= set(novel_frame["scenario"])
    assert len(synth.NOVEL_SCENARIOS) >= 1
    assert not set(synth.SCENARIOS) & set(synth.NOVEL_SCENARIOS)


def test_rows_are_shuffled(frame: pd.DataFrame) -> None:
    labels = frame["scenario"].to_numpy()
    changes = int((labels[1:] != labels[:-1]).sum())
    assert changes > len(frame) // 4  # scenarios interleave, not one block after another
    assert frame["scenario"].iloc[: len(frame) // 2].nunique() == len(synth.SCENARIOS)


def test_heavy_tails(frame: pd.DataFrame) -> None:
    for column in ("bytes_in", "bytes_out", "duration_ms"):
        values = frame[column].astype(float)
        assert values.quantile(0.99) / values.quantile(0.5) > 50, column
    assert frame["bytes_in"].max() / frame["bytes_in"].median() > 1_000


def test_features_are_correlated(frame: pd.DataFrame) -> None:
    logs = np.log1p(frame[["bytes_in", "packets_in", "latency_ms", "jitter_ms"]])
    assert logs["bytes_in"].corr(logs["packets_in"]) > 0.8
    assert logs["latency_ms"].corr(logs["jitter_ms"]) > 0.7
    tcp = frame[frame["protocol"] == "tcp"]
    assert tcp["retransmissions"].corr(tcp["error_rate"], method="spearman") > 0.3
    streams = frame[frame["service"].isin(["streaming", "rtsp"])]
    assert np.log(streams["duration_ms"]).corr(np.log1p(streams["bytes_in"])) > 0.5


def test_scenario_profiles_differ(novel_frame: pd.DataFrame) -> None:
    med = novel_frame.groupby("scenario")[["latency_ms", "error_rate", "bytes_in"]].median()
    assert med.loc["error_type_1", "latency_ms"] > 4 * med.loc["good", "latency_ms"]
    assert med.loc["error_type_2", "error_rate"] > 0.5 > 0.01 > med.loc["good", "error_rate"]
    assert med.loc["error_type_2", "bytes_in"] < 200
    failed = novel_frame[novel_frame["scenario"] == "error_type_2"]
    assert failed["tcp_state"].isin(["S0", "REJ", "RSTO", "RSTR", "SH"]).mean() > 0.9
    amplified = novel_frame[novel_frame["scenario"] == "error_type_3"]
    ratio = (amplified["bytes_in"] / amplified["bytes_out"]).median()
    good_dns = novel_frame[(novel_frame["scenario"] == "good") & (novel_frame["service"] == "dns")]
    assert ratio > 20 * (good_dns["bytes_in"] / good_dns["bytes_out"]).median()


def test_error_records_overlap_good_a_little(frame: pd.DataFrame) -> None:
    def looks_good(df: pd.DataFrame) -> pd.Series:
        return (
            (df["error_rate"] < 0.02)
            & (df["latency_ms"].fillna(0) < 80)
            & df["tcp_state"].isin(["SF", "RSTR", "OTH", "none"])
        )

    is_good = frame["scenario"] == "good"
    assert looks_good(frame[is_good]).mean() > 0.95
    assert 0.015 < looks_good(frame[~is_good]).mean() < 0.07  # a few, not none, not many


def test_missing_values(frame: pd.DataFrame) -> None:
    missing = frame.isna().mean()
    assert 0.01 <= missing["latency_ms"] <= 0.03
    assert 0.01 <= missing["jitter_ms"] <= 0.035
    assert 0.0 < missing["retransmissions"] <= 0.03
    for column in ("id", "timestamp", "scenario", "protocol", "service", "tcp_state"):
        assert missing[column] == 0, column
    for column in INT_COLUMNS + ("duration_ms", "error_rate"):
        assert missing[column] == 0, column


def test_ids_unique_and_shaped(frame: pd.DataFrame) -> None:
    assert frame["id"].is_unique
    assert frame["id"].str.fullmatch(r"f\d{7}").all()
    assert frame["id"].iloc[0] == "f0000001"


def test_write_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "traffic.parquet"
    written = synth.write(path, rows=300, seed=5, novel=True)
    pd.testing.assert_frame_equal(written, synth.generate(300, seed=5, novel=True))
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, written, check_dtype=False)
    assert str(back["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert [p.name for p in path.parent.iterdir()] == ["traffic.parquet"]  # no temp left


def test_write_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "traffic.csv"
    written = synth.write(path, rows=300, seed=5)
    assert path.read_text().splitlines()[0] == ",".join(synth.COLUMNS)
    back = pd.read_csv(path)
    back["timestamp"] = pd.to_datetime(back["timestamp"], utc=True)
    pd.testing.assert_frame_equal(back, written, check_dtype=False)
    assert [p.name for p in tmp_path.iterdir()] == ["traffic.csv"]


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "traffic.parquet"
    synth.write(path, rows=50, seed=1)
    synth.write(path, rows=80, seed=2)
    assert len(pd.read_parquet(path)) == 80


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rows": 3}, "--rows must be at least 10, got 3"),
        ({"rows": 9}, "--rows must be at least 10, got 9"),
        ({"rows": -5}, "--rows must be at least 10, got -5"),
        ({"rows": 12.5}, "--rows must be a whole number"),
        ({"seed": -1}, "--seed must be 0 or more, got -1"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs: dict, needle: str) -> None:
    with pytest.raises(InputError) as info:
        synth.generate(**kwargs)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert "pass --" in message


def test_write_rejects_bad_rows_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "traffic.parquet"
    with pytest.raises(InputError):
        synth.write(path, rows=2)
    assert not path.exists()
