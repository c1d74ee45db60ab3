"""The library over DataFrames: trafficsiam.fit / load / Model.score / Model.save."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import trafficsiam
from trafficsiam import synth
from trafficsiam.cli import main
from trafficsiam.contract import TS_COLUMNS
from trafficsiam.errors import ConfigError, InputError

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = {"train": {"epochs": 4, "steps_per_epoch": 20, "patience": 10},
        "cluster": {"max_points": 3000}}


@pytest.fixture(scope="module")
def frame_model(tmp_path_factory):
    """A model fitted from a DataFrame into a folder, and the frame."""
    folder = tmp_path_factory.mktemp("library")
    train = synth.generate(rows=3000, seed=7)
    model = trafficsiam.fit(train, folder / "model", ignore=["id", "timestamp"], **FAST)
    return model, train


def test_score_equals_what_the_command_writes(frame_model, tmp_path):
    model, _ = frame_model
    batch = synth.generate(rows=3000, seed=8, novel=True)
    batch.to_parquet(tmp_path / "batch.parquet", index=False)
    res = CliRunner().invoke(main, ["score", str(model.path), str(tmp_path / "batch.parquet"),
                                    "--out", str(tmp_path / "out"), "--quiet", "--no-report"])
    assert res.exit_code == 0, res.output
    written = pd.read_parquet(tmp_path / "out" / "batch.parquet")
    scored = model.score(batch)
    assert (scored["ts_verdict"] == "new_error").any()  # new types found alike
    pd.testing.assert_frame_equal(scored[list(TS_COLUMNS)], written[list(TS_COLUMNS)],
                                  check_exact=True)
    pd.testing.assert_frame_equal(scored, written, check_exact=True)


def test_a_sampled_discovery_is_the_same_for_a_frame_a_parquet_and_a_csv(frame_model,
                                                                        tmp_path):
    # more unexplained records than max_new_points: the sample was keyed by the file's
    # bytes, so a frame (and a CSV of the same records) grouped another sample
    model, _ = frame_model
    batch = synth.generate(rows=10_000, seed=8, novel=True)
    batch.to_parquet(tmp_path / "batch.parquet", index=False)
    batch.to_csv(tmp_path / "batch.csv", index=False)
    keys = ["--set", "score.max_new_points=100", "--set", "score.new_type_min_size=10"]
    written = {}
    for name in ("batch.parquet", "batch.csv"):
        res = CliRunner().invoke(main, ["score", str(model.path), str(tmp_path / name),
                                        "--out", str(tmp_path / name.replace(".", "-")),
                                        "--quiet", "--no-report", *keys])
        assert res.exit_code == 0, res.output
        written[name] = pd.read_parquet(tmp_path / name.replace(".", "-") / "batch.parquet")
    scored = model.score(batch, max_new_points=100, new_type_min_size=10)
    unexplained = scored["ts_verdict"].isin(["new_error", "outlier"])
    assert unexplained.sum() > 3 * 100 and scored["ts_new_type"].notna().any()
    for frame in written.values():
        pd.testing.assert_series_equal(frame["ts_new_type"], scored["ts_new_type"])


def test_score_keeps_rows_order_index_and_the_input_untouched(frame_model):
    model, _ = frame_model
    batch = synth.generate(rows=400, seed=9).sample(frac=1.0, random_state=1)
    batch.index = batch.index + 1000
    before = batch.copy()
    scored = model.score(batch)
    pd.testing.assert_frame_equal(batch, before)
    assert list(scored.columns) == list(batch.columns) + list(TS_COLUMNS)
    assert scored.index.equals(batch.index)
    pd.testing.assert_frame_equal(scored[list(batch.columns)], batch)


def test_score_overrides_a_score_key(frame_model):
    model, _ = frame_model
    batch = synth.generate(rows=400, seed=9)
    strict = model.score(batch, false_alarm_rate=0.2)
    loose = model.score(batch, false_alarm_rate=0.001)
    assert (strict["ts_verdict"] == "good").sum() <= (loose["ts_verdict"] == "good").sum()
    with pytest.raises(ConfigError, match="no_such_key"):
        model.score(batch, no_such_key=1)


def test_score_refuses_what_a_file_would_be_refused_for(frame_model):
    model, _ = frame_model
    batch = synth.generate(rows=50, seed=9)
    with pytest.raises(InputError, match="feature column 'bytes_in' .* is missing"):
        model.score(batch.drop(columns=["bytes_in"]))
    with pytest.raises(InputError, match="column 'ts_verdict' is one that scoring adds"):
        model.score(batch.assign(ts_verdict="mine"))
    bad = batch.assign(bytes_in=batch["bytes_in"].astype(object))
    bad.loc[3, "bytes_in"] = "lots"
    with pytest.raises(InputError, match=r"DataFrame row 3: column 'bytes_in' has value 'lots'"):
        model.score(bad)


def test_an_empty_frame_gets_the_columns(frame_model):
    model, _ = frame_model
    empty = synth.generate(rows=50, seed=9).iloc[:0]
    scored = model.score(empty)
    assert len(scored) == 0 and list(scored.columns) == list(empty.columns) + list(TS_COLUMNS)


def test_fit_from_a_frame_records_it_in_the_manifest(frame_model):
    model, train = frame_model
    data = model.manifest["data"]
    assert data["inputs"] == [{"path": "DataFrame", "bytes": None}]
    assert data["rows"] == len(train)
    assert model.fitted is not None and model.fitted.weighted_purity > 0.5


def test_fit_without_out_lives_in_a_temporary_folder_until_saved(tmp_path):
    train = synth.generate(rows=1500, seed=3)
    model = trafficsiam.fit(train, ignore=["id", "timestamp"], **FAST)
    temporary = model.path
    assert temporary.is_dir() and "unsaved" in repr(model)
    saved = model.save(tmp_path / "kept")
    assert saved == (tmp_path / "kept").resolve() or saved == tmp_path / "kept"
    assert not temporary.exists()
    assert trafficsiam.load(tmp_path / "kept").model_id == model.model_id
    with pytest.raises(Exception, match="already exists"):
        model.save(tmp_path / "kept")


def test_fit_refuses_an_unknown_section():
    with pytest.raises(ConfigError):
        trafficsiam.fit(synth.generate(rows=100, seed=1), trains={"epochs": 1})


def test_the_readme_example_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- example: tests/test_library.py runs this block -->\n```python\n"
                      r"(.*?)```", text, re.S)
    assert block, "README lost its library example"
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md", "exec"), {})
    assert (tmp_path / "models" / "sample" / "manifest.json").is_file()
