"""The catalogue of bad inputs (docs/errors.md): one test per case.

Each refused case gives one line on stderr naming the file, the column or row, the value
and the fix, exit code 2, no traceback, no output written and, for `score`, nothing
recorded as scored in the state. The cases that are not errors (NaN, huge values,
negative counts, non-ASCII names, many categorical values, zero rows and unknown
categories at scoring) are tested to give a result and the documented warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from trafficsiam import api, synth
from trafficsiam.cli import main
from trafficsiam.config import DataConfig, NormaliseConfig
from trafficsiam.contract import TS_COLUMNS
from trafficsiam.normalise import Normaliser
from trafficsiam.read import read_records
from trafficsiam.state import StateStore
from trafficsiam.validate import check_labels, infer_schema

FAST = ["--ignore", "id", "--ignore", "timestamp", "--epochs", "1",
        "--set", "train.steps_per_epoch=2", "--quiet"]


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(res: Result, expected: str, exit_code: int = 2) -> None:
    """Exit code 2, exactly one error line on stderr (after any warnings) that contains
    `expected`, no traceback."""
    assert res.exit_code == exit_code, res.output
    assert res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert res.stderr.endswith("\n") and "Traceback" not in res.output
    assert expected in lines[0], res.stderr


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synth.generate(rows=400, seed=1)


def _parquet(tmp: Path, frame: pd.DataFrame, name: str = "data.parquet") -> Path:
    path = tmp / name
    frame.to_parquet(path, index=False)
    return path


# --- fit: each case builds its input in tmp_path; returns (inputs, extra args, message) ----

Case = Callable[[Path, pd.DataFrame], tuple[list[str], list[str], str]]


def missing_path(tmp, frame):
    p = tmp / "none.parquet"
    return [str(p)], [], f"{p}: no such file or folder; check the path"


def folder_without_parquet(tmp, frame):
    (tmp / "landing").mkdir()
    (tmp / "landing" / "notes.txt").write_text("x")
    return [str(tmp / "landing")], [], (
        f"{tmp / 'landing'}: folder holds no .parquet or .csv files; point at the folder "
        "that holds the exported records")


def glob_matching_nothing(tmp, frame):
    spec = str(tmp / "2026-*.parquet")
    return [spec], [], f"{spec}: the pattern matches no files; check the pattern and quote it"


def unsupported_suffix(tmp, frame):
    p = tmp / "data.json"
    p.write_text("{}")
    return [str(p)], [], f"{p}: unsupported file type '.json'; export the records as .parquet"


def zero_byte_parquet(tmp, frame):
    p = tmp / "empty.parquet"
    p.write_bytes(b"")
    return [str(p)], [], (f"{p}: not a readable parquet file (Parquet file size is 0 bytes); "
                          "re-export it or remove it from the input")


def zero_byte_csv(tmp, frame):
    p = tmp / "empty.csv"
    p.write_bytes(b"")
    return [str(p)], [], f"{p}: the file is empty; re-export it or remove it"


def zero_rows(tmp, frame):
    p = _parquet(tmp, frame.iloc[:0])
    return [str(p)], [], f"{p}: no rows to read; export a non-empty set of records"


def not_parquet(tmp, frame):
    p = tmp / "data.parquet"
    p.write_text("scenario,bytes\ngood,1\n")
    return [str(p)], [], f"{p}: not a readable parquet file ("


def truncated_parquet(tmp, frame):
    p = _parquet(tmp, frame)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return [str(p)], [], (f"{p}: not a readable parquet file (Parquet magic bytes not found in "
                          "footer.")


def csv_broken_quote(tmp, frame):
    p = tmp / "data.csv"
    p.write_text('scenario,service\ngood,"http\nbad,dns\n' + "good,x\n" * 5)
    return [str(p)], [], f"{p}: not a readable CSV file ("


def csv_separated_by_semicolons(tmp, frame):
    p = tmp / "data.csv"
    frame.to_csv(p, sep=";", index=False)
    return [str(p)], [], f"{p}: the header is one column that holds ';' ('id;timestamp;"


def column_name_too_long(tmp, frame):
    p = _parquet(tmp, frame.rename(columns={"jitter_ms": "j" * 20_000}))
    return [str(p)], [], (f"{p}: column '{'j' * 60}... (19,940 more characters)' has a name "
                          "of 20,000 characters (a model holds at most 10,000); rename it")


def label_too_long(tmp, frame):
    p = _parquet(tmp, frame.assign(scenario=frame["scenario"].replace("error_type_1",
                                                                      "e" * 12_000)))
    return [str(p)], [], (f"{p}: column 'scenario' has a label of 12,000 characters "
                          f"('{'e' * 60}... (11,940 more characters)'; a model holds at most "
                          "10,000); shorten the scenario names")


def csv_not_utf8(tmp, frame):
    p = tmp / "data.csv"
    p.write_bytes(b"scenario,x\n" + "caf\xe9,1\n".encode("latin-1") * 5)
    return [str(p)], [], f"{p}: not a readable CSV file ('utf-8' codec can't decode"


def missing_label_column(tmp, frame):
    p = _parquet(tmp, frame.drop(columns=["scenario"]))
    return [str(p)], [], (f"{p}: label column 'scenario' not found (columns: duration_ms, "
                          "bytes_in,")


def one_scenario_only(tmp, frame):
    p = _parquet(tmp, frame.assign(scenario="good"))
    return [str(p)], [], (f"{p}: column 'scenario' holds one scenario only ('good'); training "
                          "needs at least two scenarios")


def scenario_with_one_record(tmp, frame):
    f = frame.copy()
    f.loc[5, "scenario"] = "probe"
    p = _parquet(tmp, f)
    return [str(p)], [], (f"{p}: scenario 'probe' in column 'scenario' has a single record, so "
                          "it has no positive pair; add records of it, filter it out, or set "
                          "data.rare_scenarios=drop")


def good_label_absent(tmp, frame):
    p = _parquet(tmp, frame)
    return [str(p)], ["--good-label", "normal"], (
        f"{p}: good-traffic label 'normal' not found in column 'scenario' (values: ")


def labels_differing_by_case(tmp, frame):
    f = frame.copy()
    f.loc[f.index[:3], "scenario"] = "Good "
    p = _parquet(tmp, f)
    return [str(p)], [], (f"{p}: column 'scenario' has labels 'good' and 'Good ' that differ "
                          "only by case or spaces; make them identical if they are one scenario")


def text_in_numeric_column(tmp, frame):
    f = frame.copy()
    f["bytes_in"] = f["bytes_in"].astype(str)
    f.loc[7, "bytes_in"] = "12kB"
    p = tmp / "data.csv"
    f.to_csv(p, index=False)
    return [str(p)], [], (f"{p} row 7: column 'bytes_in' has value '12kB' in a numeric column "
                          "(1 such values); fix or blank those values, or list the column under "
                          "data.categorical")


def infinite_value(tmp, frame):
    f = frame.copy()
    f.loc[2, "latency_ms"] = np.inf
    p = _parquet(tmp, f)
    return [str(p)], [], (f"{p} row 2: column 'latency_ms' has value inf (1 infinite values); "
                          "replace them with finite numbers or leave them empty (missing)")


def column_entirely_missing(tmp, frame):
    p = _parquet(tmp, frame.assign(rtt=np.nan))
    return [str(p)], [], (f"{p}: column 'rtt' is entirely missing; fill it or leave it out "
                          "with --ignore rtt")


def csv_header_with_a_trailing_comma(tmp, frame):
    # every line ends in ',': a last column with no name and no values; the fix must be
    # typeable (--ignore '' , not '--ignore ' with nothing after it)
    p = tmp / "data.csv"
    lines = frame.drop(columns=["id", "timestamp"]).to_csv(index=False).splitlines()
    p.write_text("\n".join(line + "," for line in lines) + "\n")
    return [str(p)], [], (f"{p}: column '' is entirely missing; fill it or leave it out with "
                          "--ignore ''")


def duplicate_columns_parquet(tmp, frame):
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column(pa.field("bytes_in", pa.int64()), table.column("bytes_in"))
    p = tmp / "data.parquet"
    pq.write_table(table, p)
    return [str(p)], [], (f"{p}: column 'bytes_in' appears more than once; give every column "
                          "a unique name")


def duplicate_columns_csv(tmp, frame):
    p = tmp / "data.csv"
    p.write_text("scenario,bytes,bytes\ngood,1,2\nbad,3,4\n")
    return [str(p)], [], f"{p}: column 'bytes' appears more than once"


def files_with_different_columns(tmp, frame):
    (tmp / "d").mkdir()
    _parquet(tmp / "d", frame, "a.parquet")
    b = _parquet(tmp / "d", frame.drop(columns=["jitter_ms"]), "b.parquet")
    return [str(tmp / "d")], [], (f"{b}: column 'jitter_ms' is missing but present in "
                                  f"{tmp / 'd' / 'a.parquet'}; give every input file the same")


def nested_values(tmp, frame):
    p = _parquet(tmp, frame.assign(tags=[[1, 2]] * len(frame)))
    return [str(p)], [], (f"{p} row 0: column 'tags' has value '[1 2]' of type ndarray (a nested "
                          f"value, {len(frame)} such rows); a feature holds one number or one "
                          "text per record, so flatten it into columns or leave it out with "
                          "--ignore tags")


def line_break_in_column_name(tmp, frame):
    p = _parquet(tmp, frame.assign(**{"lat\nency": np.inf}))
    return [str(p)], [], f"{p} row 0: column 'lat\\nency' has value inf"


def unknown_config_key(tmp, frame):
    cfg = tmp / "my.yaml"
    cfg.write_text("train:\n  epochz: 3\n")
    return [str(_parquet(tmp, frame))], ["--config", str(cfg)], (
        f"{cfg}: unknown config key 'train.epochz'; remove it or check its spelling against "
        "configs/default.yaml")


def wrong_config_type(tmp, frame):
    cfg = tmp / "my.yaml"
    cfg.write_text("train:\n  epochs: many\n")
    return [str(_parquet(tmp, frame))], ["--config", str(cfg)], (
        f"{cfg}: config key 'train.epochs' has value 'many': input should be a valid integer")


def beta_below_n(tmp, frame):
    return [str(_parquet(tmp, frame))], ["--set", "loss.beta=2"], (
        "command line: loss.beta must be at least the embedding dimension 8 (beta >= N keeps "
        "the log argument positive), got 2; set loss.beta to 8 or more")


def negative_epochs(tmp, frame):
    return [str(_parquet(tmp, frame))], ["--set", "train.epochs=-3"], (
        "command line: config key 'train.epochs' has value -3: input should be greater than "
        "or equal to 1")


def min_cluster_size_above_data(tmp, frame):
    return [str(_parquet(tmp, frame))], ["--set", "cluster.min_cluster_size=5000"], (
        "cluster.min_cluster_size 5000 is larger than the 400 training records to cluster, so "
        "no cluster could form; set it below that")


FIT_CASES: list[Case] = [
    missing_path, folder_without_parquet, glob_matching_nothing, unsupported_suffix,
    zero_byte_parquet, zero_byte_csv, zero_rows, not_parquet, truncated_parquet,
    csv_broken_quote, csv_not_utf8, csv_separated_by_semicolons, column_name_too_long,
    label_too_long, missing_label_column, one_scenario_only,
    scenario_with_one_record, good_label_absent, labels_differing_by_case,
    text_in_numeric_column, infinite_value, column_entirely_missing,
    csv_header_with_a_trailing_comma, duplicate_columns_parquet,
    duplicate_columns_csv, files_with_different_columns, nested_values,
    line_break_in_column_name, unknown_config_key, wrong_config_type, beta_below_n,
    negative_epochs, min_cluster_size_above_data,
]


@pytest.mark.parametrize("case", FIT_CASES, ids=lambda c: c.__name__)
def test_fit_refuses_with_one_line_exit_2_and_writes_nothing(case, tmp_path, frame):
    data = tmp_path / "in"
    data.mkdir()
    inputs, extra, expected = case(data, frame)
    before = sorted(tmp_path.rglob("*"))
    res = invoke("fit", *inputs, "--out", tmp_path / "model", *FAST, *extra)
    assert_refused(res, expected)
    assert sorted(tmp_path.rglob("*")) == before  # no model folder, no .partial leftovers


def test_debug_shows_the_traceback(tmp_path):
    res = invoke("--debug", "fit", tmp_path / "none.parquet", "--out", tmp_path / "m")
    assert res.exit_code != 0 and isinstance(res.exception, Exception)
    assert "no such file or folder" in str(res.exception)


# --- not errors: a result, and what was cleaned is counted -------------------------------


def _fit_normaliser(tmp_path: Path, frame: pd.DataFrame, data: DataConfig | None = None):
    records = read_records([_parquet(tmp_path, frame)])
    data = data or DataConfig(ignore=("id", "timestamp"))
    check_labels(records, data)
    schema = infer_schema(records, data)
    features = records.frame[list(schema.columns)]
    norm = Normaliser.fit(features, schema, NormaliseConfig())
    x, counts = norm.transform(features)
    return schema, norm, x, counts


def test_nan_is_imputed_with_an_indicator_and_counted(tmp_path, frame):
    f = frame.copy()
    f["latency_ms"] = f["latency_ms"].astype(float)
    f.loc[[3, 9], "latency_ms"] = np.nan
    _, norm, x, counts = _fit_normaliser(tmp_path, f)
    assert np.isfinite(x).all()
    assert counts.missing["latency_ms"] >= 2
    assert "latency_ms=missing" in norm.feature_names


def test_values_of_1e308_are_clipped_and_counted(tmp_path, frame):
    f = frame.copy()
    for col in ("bytes_in", "bytes_out"):
        f[col] = f[col].astype(float)
    f.loc[3, "bytes_in"], f.loc[4, "bytes_out"] = 1e308, -1e308
    _, norm, x, counts = _fit_normaliser(tmp_path, f)
    assert np.isfinite(x).all() and np.abs(x).max() <= norm.clip
    assert counts.clipped.get("bytes_in", 0) >= 1 and counts.clipped.get("bytes_out", 0) >= 1


def test_negative_counts_are_accepted_by_the_signed_log(tmp_path, frame):
    f = frame.assign(packets_in=-frame["packets_in"], retransmissions=-5)
    f.loc[0, "retransmissions"] = 0
    schema, _, x, _ = _fit_normaliser(tmp_path, f)
    assert "packets_in" in schema.numeric and "retransmissions" in schema.numeric
    assert np.isfinite(x).all()


def test_non_ascii_column_names_work_and_are_named_in_messages(tmp_path, frame):
    f = frame.rename(columns={"latency_ms": "latência_ms", "service": "服务"})
    schema, norm, x, _ = _fit_normaliser(tmp_path, f)
    assert "latência_ms" in schema.numeric and "服务" in schema.categorical
    assert any(n.startswith("服务=") for n in norm.feature_names)
    f.loc[1, "latência_ms"] = np.inf
    path = tmp_path / "bad.parquet"
    f.to_parquet(path, index=False)
    res = invoke("fit", path, "--out", tmp_path / "m", *FAST)
    assert_refused(res, f"{path} row 1: column 'latência_ms' has value inf")


def test_features_named_like_the_examples_own_columns_keep_their_values(tmp_path, frame):
    # examples.csv starts with the cluster, its name and the training row: a feature of one
    # of those names overwrote them (and a text one crashed the fit after training)
    f = frame.assign(cluster=frame["protocol"], name=frame["service"],
                     row=frame["bytes_out"] + 1)
    path = _parquet(tmp_path, f)
    res = invoke("fit", path, "--out", tmp_path / "m", *FAST)
    assert res.exit_code == 0, res.output
    examples = pd.read_csv(tmp_path / "m" / "examples.csv", keep_default_na=False)
    assert list(examples.columns[:4]) == ["cluster_", "name_", "row_", "scenario"]
    at = examples["row_"].to_numpy()
    for col in ("cluster", "name", "row"):
        assert examples[col].astype(str).tolist() == f[col].iloc[at].astype(str).tolist()


def test_a_million_distinct_categorical_values_are_capped_with_a_warning(caplog):
    from trafficsiam.validate import FeatureSchema

    unique = 999_999
    rng = np.random.default_rng(0)
    users = np.concatenate([np.char.add("u", rng.permutation(unique).astype(str)),
                            np.full(200_000, "frequent")])
    frame = pd.DataFrame({"user": users, "x": rng.normal(size=len(users))})
    schema = FeatureSchema(numeric=("x",), categorical=("user",))
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="trafficsiam"):
        norm = Normaliser.fit(frame, schema, NormaliseConfig())
        x, counts = norm.transform(frame.iloc[:10_000])
    seconds = time.perf_counter() - start
    assert norm.categories["user"] == ["frequent"]  # the rest is rarer than 0.1 %
    assert x.shape == (10_000, 1 + 1 + 1) and counts.other["user"] > 0
    assert ("column 'user' has 1000000 distinct values; one-hot encoding keeps the 1 most "
            "frequent and puts the other 999999 (83.3% of the records) in '(other)' "
            "(normalise.min_category_share: lower it to keep more, or --ignore user)"
            ) in caplog.text
    assert seconds < 20, seconds


# --- score -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(fitted):
    return api.load(fitted[0].path)


@pytest.fixture
def batch(frame) -> pd.DataFrame:
    return frame.copy()


def _outputs_and_state(out: Path) -> tuple[list[str], list[dict]]:
    made = sorted(p.name for p in out.rglob("*") if p.suffix in (".parquet", ".json", ".csv")
                  or p.name.endswith(".tmp"))
    state = out / "trafficsiam-state.db"
    processed = StateStore(state).processed() if state.exists() else []
    return made, processed


def score_missing_feature(tmp, f):
    return f.drop(columns=["latency_ms"]), (
        "feature column 'latency_ms' of model {model} is missing; export it again with that "
        "column, or score with a model fitted without it")


def score_ts_column(tmp, f):
    return f.assign(ts_verdict="mine"), (
        "column 'ts_verdict' is one that scoring adds; rename or drop it before scoring")


def score_numeric_became_timestamp(tmp, f):
    return f.assign(latency_ms=pd.Timestamp("2026-11-01", tz="UTC")), (
        "feature column 'latency_ms' of model {model} is numeric but has type timestamp[")


def score_categorical_became_numbers(tmp, f):
    return f.assign(protocol=6), (
        "feature column 'protocol' of model {model} held text at fit (values such as 'tcp'")


def score_categorical_became_nested(tmp, f):
    return f.assign(service=[["http"]] * len(f)), (
        "feature column 'service' of model {model} held text at fit")


def score_text_in_numeric(tmp, f):
    f["bytes_in"] = f["bytes_in"].astype(str)
    f.loc[123, "bytes_in"] = "lots"
    return f, ("row 123: column 'bytes_in' has value 'lots' in a numeric feature (1 such "
               "values in this batch); fix or blank those values")


def score_infinite(tmp, f):
    f.loc[42, "latency_ms"] = -np.inf
    return f, ("row 42: column 'latency_ms' has value -inf (1 infinite values in this batch); "
               "replace them with finite numbers or leave them empty (missing)")


SCORE_CASES = [score_missing_feature, score_ts_column, score_numeric_became_timestamp,
               score_categorical_became_numbers, score_categorical_became_nested,
               score_text_in_numeric, score_infinite]


@pytest.mark.parametrize("case", SCORE_CASES, ids=lambda c: c.__name__)
def test_score_refuses_with_one_line_exit_2_and_records_nothing(case, model, batch, tmp_path):
    good = tmp_path / "in" / "a.parquet"
    good.parent.mkdir()
    batch.to_parquet(good, index=False)
    bad_frame, expected = case(tmp_path, batch.copy())
    bad = tmp_path / "in" / "b.parquet"
    bad_frame.to_parquet(bad, index=False)
    out = tmp_path / "out"
    res = invoke("score", model.path, tmp_path / "in", "--out", out, "--quiet")
    assert_refused(res, str(bad.resolve()))
    assert expected.format(model=model.model_id) in res.stderr
    made, processed = _outputs_and_state(out)
    assert made == [] and processed == []
    assert not (out / "trafficsiam-state.db").exists()  # a refused first run leaves none


@pytest.mark.parametrize("column", ["bytes_in", "note"])  # a feature, a column the model ignores
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_score_refuses_a_column_named_twice(column, kind, model, batch, tmp_path):
    table = pa.Table.from_pandas(batch.assign(note="x"), preserve_index=False)
    table = table.append_column(pa.field(column, table.schema.field(column).type),
                                table.column(column))
    bad = tmp_path / f"b.{kind}"
    if kind == "csv":
        pa.csv.write_csv(table, bad)
    else:
        pq.write_table(table, bad)
    out = tmp_path / "out"
    res = invoke("score", model.path, bad, "--out", out, "--quiet")
    assert_refused(res, f"{bad.resolve()}: column '{column}' appears more than once; give "
                        "every column a unique name")
    assert not out.exists()


@pytest.mark.parametrize("what", ["empty folder", "newer format", "changed file", "no folder"])
def test_score_with_a_bad_model_folder_exits_2_before_creating_anything(what, fitted, tmp_path,
                                                                         batch):
    import json
    import shutil

    data = _parquet(tmp_path, batch)
    folder = tmp_path / "model"
    if what == "empty folder":
        folder.mkdir()
        expected = f"{folder / 'manifest.json'}: missing, so {folder} is not a trafficsiam model"
    elif what == "no folder":
        expected = f"{folder}: no such model folder; pass the --out folder of a fit"
    else:
        shutil.copytree(fitted[0].path, folder)
        if what == "newer format":
            m = json.loads((folder / "manifest.json").read_text())
            m["format_version"] = 99
            (folder / "manifest.json").write_text(json.dumps(m))
            expected = "manifest.json: format version 99 is not supported by trafficsiam"
        else:
            with (folder / "history.csv").open("a") as fh:
                fh.write("1,2,3\n")
            expected = (f"{folder / 'history.csv'}: SHA-256 does not match the manifest "
                        "(changed after fit); restore the original file or refit the model")
    res = invoke("score", folder, data, "--out", tmp_path / "out", "--quiet")
    assert_refused(res, expected)
    assert not (tmp_path / "out").exists()


def test_score_input_with_zero_rows_gets_an_empty_output(model, batch, tmp_path):
    path = _parquet(tmp_path, batch.iloc[:0], "empty.parquet")
    out = tmp_path / "out"
    res = invoke("score", model.path, path, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(out / "empty.parquet")
    assert len(got) == 0 and list(got.columns) == list(batch.columns) + list(TS_COLUMNS)
    assert StateStore(out / "trafficsiam-state.db").processed()[0]["rows"] == 0


def test_score_with_a_numeric_feature_empty_everywhere_warns(model, batch, tmp_path):
    # a categorical feature with no known value warned; an empty numeric one was imputed
    # in silence
    path = _parquet(tmp_path, batch.assign(latency_ms=np.nan))
    res = invoke("score", model.path, path, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 0, res.output
    assert (f"warning: {path}: numeric column 'latency_ms' is empty in all {len(batch)} "
            "records; each is scored as if it held the fit's typical value") in res.stderr
    res = invoke("score", model.path, _parquet(tmp_path, batch, "full.parquet"), "--out",
                 tmp_path / "out2", "--quiet")
    assert "is empty in all" not in res.stderr


def test_score_with_all_categorical_values_new_warns_and_scores_them_as_other(model, batch,
                                                                               tmp_path):
    path = _parquet(tmp_path, batch.assign(service=batch["service"].str.upper() + "-v2"))
    out = tmp_path / "out"
    res = invoke("score", model.path, path, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert (f"warning: {path}: column 'service' has no value the model knows in any of the "
            f"{len(batch)} records (known: ") in res.stderr
    assert "all are scored as '(other)', so check that the column is exported as at fit" \
        in res.stderr
    assert len(pd.read_parquet(out / "data.parquet")) == len(batch)


# --- files fit accepts, score takes as fit read them (issue 18, item 2) -------------------


def csv_true_false(tmp: Path, frame: pd.DataFrame) -> list[Path]:
    path = tmp / "flags.csv"
    frame.assign(flag=np.arange(len(frame)) % 3 == 0).to_csv(path, index=False)
    return [path]


def csv_with_bom(tmp: Path, frame: pd.DataFrame) -> list[Path]:
    path = tmp / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode())
    return [path]


def parquet_duration(tmp: Path, frame: pd.DataFrame) -> list[Path]:
    seconds = np.arange(len(frame)) % 7
    return [_parquet(tmp, frame.assign(hold=pd.to_timedelta(seconds, unit="s")))]


def mixed_string_widths(tmp: Path, frame: pd.DataFrame) -> list[Path]:
    """Three tools' exports of one data set: string, large_string and CSV."""
    narrow = pa.Table.from_pandas(frame.iloc[:150], preserve_index=False)
    wide = pa.Table.from_pandas(frame.iloc[150:300], preserve_index=False)
    wide = wide.cast(pa.schema([pa.field(f.name, pa.large_string()) if pa.types.is_string(f.type)
                                else f for f in wide.schema]))
    pq.write_table(narrow, tmp / "a.parquet")
    pq.write_table(wide, tmp / "b.parquet")
    frame.iloc[300:].to_csv(tmp / "c.csv", index=False)
    return [tmp]


def dictionary_columns(tmp: Path, frame: pd.DataFrame) -> list[Path]:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.cast(pa.schema([
        pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if pa.types.is_string(f.type)
        else f for f in table.schema]))
    pq.write_table(table, tmp / "dict.parquet")
    return [tmp / "dict.parquet"]


ACCEPTED = [csv_true_false, csv_with_bom, parquet_duration, mixed_string_widths,
            dictionary_columns]


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.__name__)
def test_score_takes_the_file_fit_was_trained_on(case, tmp_path, frame):
    data = tmp_path / "in"
    data.mkdir()
    inputs = case(data, frame)
    res = invoke("fit", *inputs, "--out", tmp_path / "model", *FAST)
    assert res.exit_code == 0, res.output
    numeric = api.load(tmp_path / "model").schema.numeric
    if case in (csv_true_false, parquet_duration):  # the new column is a numeric feature
        assert {"flag", "hold"} & set(numeric), numeric
    res = invoke("score", tmp_path / "model", *inputs, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 0, res.output
    outputs = sorted((tmp_path / "out").glob("*.parquet"))
    scored = pd.concat([pd.read_parquet(p) for p in outputs], ignore_index=True)
    assert len(scored) == len(frame) and scored["ts_verdict"].notna().all()
    assert sorted(scored["id"].astype(str)) == sorted(frame["id"].astype(str))


# --- names the file system allows: long, not UTF-8 ---------------------------------------


def test_an_input_with_a_240_character_name_is_scored(model, batch, tmp_path):
    path = _parquet(tmp_path, batch, "x" * 240 + ".parquet")  # staged as 255+ bytes
    res = invoke("score", model.path, path, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(tmp_path / "out" / path.name)) == len(batch)
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_file_name_that_is_not_utf8_is_read_scored_and_remembered(model, batch, tmp_path,
                                                                     suffix):
    name = "caf\udce9" + suffix  # b"caf\xe9": a Latin-1 name, as Python holds it
    path = tmp_path / name
    with open(path, "wb") as fh:  # pyarrow cannot encode the name, Python can
        batch.to_parquet(fh, index=False) if suffix == ".parquet" else batch.to_csv(
            fh, index=False)
    out = tmp_path / "out"
    res = invoke("score", model.path, path, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    with open(out / "caf\udce9.parquet", "rb") as fh:
        assert len(pd.read_parquet(fh)) == len(batch)
    again = invoke("score", model.path, path, "--out", out)
    assert again.exit_code == 0 and "already scored" in again.stderr, again.output
