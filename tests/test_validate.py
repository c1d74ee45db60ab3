"""One test per bad input: each message names file, column, value and fix."""

import numpy as np
import pandas as pd
import pytest

from trafficsiam.config import DataConfig
from trafficsiam.errors import InputError
from trafficsiam.read import read_records
from trafficsiam.validate import check_labels, infer_schema


def records_of(frame, write_parquet, name="data.parquet"):
    path = write_parquet(frame, name)
    return read_records([path]), path


def test_labels_ok(tiny_frame, write_parquet):
    records, _ = records_of(tiny_frame, write_parquet)
    labels = check_labels(records, DataConfig())
    assert labels.value_counts().to_dict() == {"good": 6, "error_type_1": 4, "rare": 2}


def test_missing_label_column(tiny_frame, write_parquet):
    records, path = records_of(tiny_frame, write_parquet)
    with pytest.raises(InputError) as err:
        check_labels(records, DataConfig(label_column="kind"))
    assert str(err.value) == (
        f"{path}: label column 'kind' not found (columns: id, scenario, bytes, latency, const, "
        "protocol); name the scenario column with --label-column"
    )


def test_one_scenario_only(tiny_frame, write_parquet):
    records, path = records_of(tiny_frame.assign(scenario="good"), write_parquet)
    with pytest.raises(InputError) as err:
        check_labels(records, DataConfig())
    assert str(err.value) == (
        f"{path}: column 'scenario' holds one scenario only ('good'); training needs at least "
        "two scenarios, e.g. good traffic and one error type"
    )


def test_scenario_with_single_record(tiny_frame, write_parquet):
    frame = tiny_frame.copy()
    frame.loc[0, "scenario"] = "lonely"
    records, path = records_of(frame, write_parquet)
    with pytest.raises(InputError) as err:
        check_labels(records, DataConfig())
    assert str(err.value) == (
        f"{path}: scenario 'lonely' in column 'scenario' has a single record, so it has no "
        "positive pair; add records of it, filter it out, or set data.rare_scenarios=drop"
    )


def test_rare_scenarios_drop_is_warned_and_masks_rows(tiny_frame, write_parquet, caplog):
    from trafficsiam.validate import usable

    frame = tiny_frame.copy()
    frame.loc[0, "scenario"] = "lonely"
    records, _ = records_of(frame, write_parquet)
    labels = check_labels(records, DataConfig(rare_scenarios="drop"))
    assert usable(labels).tolist() == [False] + [True] * 11
    assert "left out 1 records of 1 scenarios with a single record ('lonely')" in caplog.text


def test_good_label_absent(tiny_frame, write_parquet):
    records, path = records_of(tiny_frame, write_parquet)
    with pytest.raises(InputError, match=r"good-traffic label 'normal' not found .* --good-label"):
        check_labels(records, DataConfig(good_label="normal"))


def test_labels_differing_by_case_are_reported(tiny_frame, write_parquet):
    frame = tiny_frame.copy()
    frame.loc[[0, 1], "scenario"] = "Good "
    records, _ = records_of(frame, write_parquet)
    with pytest.raises(InputError, match=r"labels 'good' and 'Good ' that differ only by case"):
        check_labels(records, DataConfig())


def test_missing_label_value(tiny_frame, write_parquet):
    frame = tiny_frame.copy()
    frame["scenario"] = frame["scenario"].astype(object)
    frame.loc[4, "scenario"] = None
    records, path = records_of(frame, write_parquet)
    with pytest.raises(InputError) as err:
        check_labels(records, DataConfig())
    assert str(err.value).startswith(f"{path} row 4: column 'scenario' is missing a label")


def test_infer_schema_kinds_and_exclusions(tiny_frame, write_parquet, caplog):
    records, _ = records_of(tiny_frame, write_parquet)
    schema = infer_schema(records, DataConfig(ignore=("id",)))
    assert schema.numeric == ("bytes", "latency")
    assert schema.categorical == ("protocol",)
    assert schema.excluded == {"const": "constant"}
    assert "column 'const' is constant (7 on every row) and is dropped" in caplog.text


def test_identifier_and_datetime_columns_excluded_with_warning(write_parquet, caplog):
    n = 60
    frame = pd.DataFrame({
        "flow": [f"f{i}" for i in range(n)],
        "ts": pd.date_range("2026-11-01", periods=n, freq="min", tz="UTC"),
        "scenario": ["good", "bad"] * (n // 2),
        "x": np.arange(n, dtype=float),
    })
    records, _ = records_of(frame, write_parquet)
    schema = infer_schema(records, DataConfig())
    assert schema.excluded == {"flow": "identifier", "ts": "datetime"}
    assert "add --ignore flow" in caplog.text and "add --ignore ts" in caplog.text


def test_text_in_numeric_column(tiny_frame, write_parquet):
    frame = tiny_frame.copy()
    frame["bytes"] = frame["bytes"].astype(str)
    frame.loc[7, "bytes"] = "12kB"
    records, path = records_of(frame, write_parquet, "data.csv")
    with pytest.raises(InputError) as err:
        infer_schema(records, DataConfig(ignore=("id",)))
    assert str(err.value) == (
        f"{path} row 7: column 'bytes' has value '12kB' in a numeric column (1 such values); "
        "fix or blank those values, or list the column under data.categorical"
    )


def test_all_missing_column(tiny_frame, write_parquet):
    frame = tiny_frame.assign(empty=np.nan)
    records, path = records_of(frame, write_parquet)
    with pytest.raises(InputError) as err:
        infer_schema(records, DataConfig(ignore=("id",)))
    assert str(err.value) == (
        f"{path}: column 'empty' is entirely missing; fill it or leave it out with --ignore empty"
    )


def test_inf_value(tiny_frame, write_parquet):
    frame = tiny_frame.copy()
    frame.loc[2, "latency"] = np.inf
    records, path = records_of(frame, write_parquet)
    with pytest.raises(InputError) as err:
        infer_schema(records, DataConfig(ignore=("id",)))
    assert str(err.value) == (
        f"{path} row 2: column 'latency' has value inf (1 infinite values); replace them with "
        "finite numbers or leave them empty (missing)"
    )


def test_configured_columns_only(tiny_frame, write_parquet):
    records, _ = records_of(tiny_frame, write_parquet)
    schema = infer_schema(records, DataConfig(numeric=("latency",), categorical=("protocol",)))
    assert schema.columns == ("latency", "protocol")


def test_configured_column_missing(tiny_frame, write_parquet):
    records, _ = records_of(tiny_frame, write_parquet)
    with pytest.raises(InputError, match="configured feature column 'rtt' not found"):
        infer_schema(records, DataConfig(numeric=("rtt",)))


def test_operations_exports_timestamps_addresses_and_counters_are_left_out(write_parquet,
                                                                            caplog):
    # issue 19, item 5: an export as it comes, text timestamps and addresses included
    n = 120
    frame = pd.DataFrame({
        "seq": np.arange(n, dtype=np.int64),
        "iso": pd.date_range("2026-11-01", periods=n, freq="s").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "clf": [f"10/Oct/2026:13:{i % 60:02d}:36 -0700" for i in range(n)],
        "syslog": [f"Nov  5 12:{i % 60:02d}:01" for i in range(n)],
        "src_ip": [f"10.0.{i % 4}.{i % 7}" for i in range(n)],
        "dst_ip6": [f"2001:db8::{i % 9:x}" for i in range(n)],
        "uri": [f"/api/item/{i}" for i in range(n)],
        "proto": ["tcp", "udp", "icmp"] * (n // 3),
        "resp": ["200", "404", "RST", "-"] * (n // 4),
        "bytes": np.random.default_rng(0).lognormal(size=n),
        "packets": np.random.default_rng(1).integers(0, 50, size=n),
        "scenario": ["good", "bad"] * (n // 2),
    })
    records, _ = records_of(frame, write_parquet)
    schema = infer_schema(records, DataConfig())
    assert schema.excluded == {"seq": "identifier", "iso": "timestamp", "clf": "timestamp",
                               "syslog": "timestamp", "src_ip": "ip address",
                               "dst_ip6": "ip address", "uri": "identifier"}
    assert schema.numeric == ("bytes", "packets")
    assert schema.categorical == ("proto", "resp")
    assert "column 'src_ip' holds IP addresses and is not used as a feature (add --ignore " \
           "src_ip to silence this)" in caplog.text
    assert "column 'iso' holds timestamps as text" in caplog.text
    # listed as a feature, a column is what the user says it is
    forced = infer_schema(records, DataConfig(categorical=("src_ip",), numeric=("seq",)))
    assert forced.categorical == ("src_ip",) and forced.numeric == ("seq",)


def test_columns_scoring_adds_are_never_features(write_parquet, caplog):
    # issue 18: fit took ts_verdict as a feature of records scored before
    n = 60
    frame = pd.DataFrame({
        "scenario": ["good", "bad"] * (n // 2),
        "x": np.random.default_rng(0).normal(size=n),
        "ts_verdict": ["good", "known_error"] * (n // 2),
        "ts_anomaly": np.random.default_rng(1).random(n),
    })
    records, _ = records_of(frame, write_parquet)
    schema = infer_schema(records, DataConfig())
    assert schema.columns == ("x",)
    assert schema.excluded == {"ts_verdict": "scored", "ts_anomaly": "scored"}
    assert "column 'ts_verdict' is one that trafficsiam score adds and is not used as a " \
           "feature (add --ignore ts_verdict to silence this)" in caplog.text


def test_text_that_only_spells_missing_is_an_entirely_missing_column(tmp_path):
    """'' and NA are missing (as CSV reads them): a parquet text column of nothing else
    is refused like an empty one (the normaliser met an empty column: IndexError)."""
    frame = pd.DataFrame({"scenario": ["good", "bad"] * 10,
                          "rtt": [None, "", "NA", "null"] * 5, "x": range(20)})
    path = tmp_path / "spelt.parquet"
    frame.to_parquet(path, index=False)
    records = read_records([path])
    with pytest.raises(InputError, match=r"column 'rtt' is entirely missing; fill it or "
                                         r"leave it out with --ignore rtt"):
        infer_schema(records, DataConfig())


def test_a_counter_in_a_csv_is_an_identifier_as_in_parquet(tmp_path):
    """CSV is text: row numbers written there are left out as they are from parquet."""
    frame = pd.DataFrame({"scenario": ["good", "bad"] * 300, "row": range(600),
                          "x": np.tile([1.0, 2.0, 3.0], 200)})
    kinds = {}
    for suffix in (".csv", ".parquet"):
        path = tmp_path / f"data{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
        kinds[suffix] = infer_schema(read_records([path]), DataConfig()).excluded.get("row")
    assert kinds == {".csv": "identifier", ".parquet": "identifier"}


def test_a_feature_that_restates_good_or_failure_is_warned_about(caplog):
    # TON_IoT's 'label' (0/1 beside 'type') was a feature, and decided the verdict
    from trafficsiam import synth
    from trafficsiam.config import DataConfig
    from trafficsiam.validate import FeatureSchema, warn_label_like

    frame = synth.generate(rows=2000, seed=3)
    frame["is_failure"] = (frame["scenario"] != "good").astype(int)
    frame.loc[5, "is_failure"] = None  # a missing value does not hide it
    schema = FeatureSchema(numeric=("bytes_in", "is_failure"), categorical=("protocol",))
    caplog.set_level("WARNING")
    warn_label_like(frame, frame["scenario"], schema, DataConfig())
    assert ("column 'is_failure' separates good traffic from the failures exactly (each of "
            "its 2 values occurs on one side only): if it is a label exported beside "
            "'scenario', leave it out with --ignore is_failure") in caplog.text
    assert "'bytes_in'" not in caplog.text and "'protocol'" not in caplog.text
    caplog.clear()
    frame.loc[frame.index[frame["scenario"] == "good"][:1], "is_failure"] = 1  # one crossing
    warn_label_like(frame, frame["scenario"], schema, DataConfig())
    assert "separates good traffic" not in caplog.text
