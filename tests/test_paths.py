"""Path safety (`trafficsiam.paths`, issue 18 item 1): no run writes over, into or
around what it reads, or into a model folder; --force replaces only what fit wrote."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner

from trafficsiam import synth
from trafficsiam.cli import main
from trafficsiam.errors import OutputError
from trafficsiam.paths import check_outputs, input_roots


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(res, *words):
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in res.output
    for word in words:
        assert str(word) in line, line


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    synth.generate(rows=800, seed=3, novel=True).to_parquet(folder / "a.parquet", index=False)
    return folder


def test_score_never_writes_over_around_or_into_what_it_reads(fitted, data, tmp_path):
    model = fitted[0].path
    before, model_before = _digest(data), _digest(model)
    # --out the input's folder: the scored file would replace the input
    _refused(_cli("score", model, data / "a.parquet", "--out", data, "-q"),
             data, "holds the input")
    # --out inside the input folder: later runs would read their own outputs
    _refused(_cli("score", model, data, "--out", data / "scored", "-q"),
             "would be written inside the input")
    _refused(_cli("score", model, f"{data}/*.parquet", "--out", data / "scored", "-q"),
             "inside the input")
    # into the model folder, or the state there
    _refused(_cli("score", model, data, "--out", model, "-q"), "model folder")
    _refused(_cli("score", model, data, "--out", tmp_path / "o", "--state",
                  model / "state.db", "-q"), "--state", "model folder")
    # the same place under another spelling (a link to the data folder)
    link = tmp_path / "link"
    link.symlink_to(data)
    _refused(_cli("score", model, data / "a.parquet", "--out", link, "-q"), "holds the input")
    assert _digest(data) == before and _digest(model) == model_before
    assert not (tmp_path / "o").exists()


def test_fit_never_deletes_the_data_or_a_folder_it_did_not_write(data, tmp_path):
    before = _digest(data)
    fast = ("--ignore", "id", "--ignore", "timestamp", "--epochs", "1", "-q")
    _refused(_cli("fit", data, "--out", data, "--force", *fast), "written over the input")
    _refused(_cli("fit", data, "--out", data / "model", *fast), "inside the input")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    _refused(_cli("fit", data / "a.parquet", "--out", mine, "--force", *fast),
             "not a trafficsiam model folder")
    assert (mine / "notes.txt").read_text() == "keep me"
    assert _digest(data) == before


def test_report_and_derived_models_stay_out_of_model_folders(fitted, data, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(fitted[0].path, model)
    before = _digest(model)
    _refused(_cli("report", model, "--out", model / "page.html", "-q"), "model folder")
    _refused(_cli("calibrate", model, data, "--out", model / "child", "-q"), "model folder")
    _refused(_cli("calibrate", model, data, "--out", data / "child", "-q"), "inside the input")
    assert _digest(model) == before


def test_the_rule_itself(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(OutputError, match="would be written over the input"):
        check_outputs([("--out", tmp_path / "in")], [("input", tmp_path / "in")])
    check_outputs([("--out", tmp_path / "out")], [("input", tmp_path / "in")])
    # an input below an output folder is fine where outputs have names of their own
    check_outputs([("--out", tmp_path)], [("input", tmp_path / "in")], around=False)
    assert input_roots([f"{tmp_path}/in/**/*.parquet", tmp_path / "in"]) == [
        tmp_path / "in", tmp_path / "in"]


def test_force_replaces_a_model_folder_fit_wrote(fitted, tmp_path):
    from trafficsiam.paths import is_model_folder, replaceable

    model = tmp_path / "model"
    shutil.copytree(fitted[0].path, model)
    assert is_model_folder(model)
    replaceable(model)  # no error: it is ours to replace
    res = _cli("fit", fitted[1], "--out", model, "--force", "--ignore", "id", "--ignore",
               "timestamp", "--epochs", "1", "--set", "train.steps_per_epoch=3", "-q",
               "--no-report")
    assert res.exit_code == 0, res.output
    assert is_model_folder(model)


def test_a_comparisons_out_takes_what_an_earlier_comparison_wrote_and_refuses_the_rest(
        tmp_path):
    from trafficsiam.contract import MODEL_FORMAT
    from trafficsiam.paths import comparison_out

    out = tmp_path / "bt"
    (out / "split").mkdir(parents=True)
    (out / "split" / "train.parquet").write_bytes(b"x")
    (out / "models" / "triplet-seed1").mkdir(parents=True)
    (out / "models" / "triplet-seed1" / "manifest.json").write_text(
        json.dumps({"format": MODEL_FORMAT}))
    (out / "runs" / "triplet-seed1").mkdir(parents=True)
    (out / "runs" / "triplet-seed1" / "metrics.json").write_text("{}")
    # a run that failed before its tables: taken, and nothing removed without the marker
    comparison_out(out, [], "comparison.json")
    assert (out / "models" / "triplet-seed1").is_dir() and (out / "runs" / "triplet-seed1").is_dir()
    # a finished one: its model and run folders are replaced by the rerun
    (out / "comparison.json").write_text("{}")
    comparison_out(out, [], "comparison.json", clear=False)
    assert (out / "models" / "triplet-seed1").is_dir()
    comparison_out(out, [], "comparison.json")
    assert not any((out / "models").iterdir()) and not any((out / "runs").iterdir())
    assert (out / "split" / "train.parquet").is_file()
    # a models/ folder that holds something else is the user's
    mine = tmp_path / "mine"
    (mine / "models" / "notes").mkdir(parents=True)
    with pytest.raises(OutputError, match="holds 'models', which no earlier comparison wrote"):
        comparison_out(mine, [], "comparison.json")
    assert (mine / "models" / "notes").is_dir()
