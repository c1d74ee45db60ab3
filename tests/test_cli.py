"""CLI: exit codes and the exact one-line messages a user sees."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from trafficsiam.cli import main

FAST = ["--ignore", "id", "--ignore", "timestamp", "--epochs", "2",
        "--set", "train.steps_per_epoch=10", "--quiet"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_synth_writes_records(tmp_path):
    out = tmp_path / "s.parquet"
    res = run("synth", out, "--rows", 500, "--seed", 4, "--novel")
    assert res.exit_code == 0, res.output
    frame = pd.read_parquet(out)
    assert len(frame) == 500 and "error_type_3" in set(frame["scenario"])
    assert res.output.startswith(f"wrote 500 records to {out} (")


def test_synth_bad_rows(tmp_path):
    res = run("synth", tmp_path / "s.parquet", "--rows", 3)
    assert res.exit_code == 2
    assert res.output == "error: synth: --rows must be at least 10, got 3; pass --rows 10 or more\n"


def test_fit_prints_summary_and_writes_model(tmp_path, synth_small):
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    res = run("fit", data, "--out", tmp_path / "m", "--ignore", "id", "--ignore", "timestamp",
              "--epochs", 2, "--set", "train.steps_per_epoch=10")
    assert res.exit_code == 0, res.output
    assert "read 3000 records, 3 scenarios, 12 feature columns" in res.output
    assert f"saved to {tmp_path / 'm'}" in res.output
    assert (tmp_path / "m" / "manifest.json").is_file()
    # the sample data's failures move one or two KPIs: auto keeps the Euclidean anomaly
    assert "ts_anomaly: Euclidean: the known failures differ from good traffic in" in res.output


def test_fit_prints_a_configured_anomaly_saturation(tmp_path, synth_small):
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    res = run("fit", data, "--out", tmp_path / "m", *FAST[:-1],
              "--set", "score.anomaly_saturation=0.5")
    assert res.exit_code == 0, res.output
    assert "ts_anomaly: saturated at 0.5 (score.anomaly_saturation)" in res.output
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["anomaly"]["rule"] == "configured"
    assert manifest["anomaly"]["saturation"] == 0.5


def test_fit_missing_label_column_is_one_line_exit_2_and_no_output(tmp_path, synth_small):
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    res = run("fit", data, "--out", tmp_path / "m", "--label-column", "kind", *FAST)
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "Traceback" not in res.output
    assert res.output.startswith(f"error: {data}: label column 'kind' not found")
    assert res.output.endswith("name the scenario column with --label-column\n")
    assert not (tmp_path / "m").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


def test_fit_unknown_config_key(tmp_path, synth_small):
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  layers: 3\n")
    res = run("fit", data, "--out", tmp_path / "m", "--config", cfg, *FAST)
    assert res.exit_code == 2
    assert res.output == (f"error: {cfg}: unknown config key 'model.layers'; remove it or check "
                          "its spelling against configs/default.yaml\n")


def test_fit_beta_below_n(tmp_path, synth_small):
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    res = run("fit", data, "--out", tmp_path / "m", "--set", "loss.beta=2", *FAST)
    assert res.exit_code == 2
    assert "loss.beta must be at least the embedding dimension 8" in res.output


def test_fit_missing_input(tmp_path):
    res = run("fit", tmp_path / "none.parquet", "--out", tmp_path / "m", "--quiet")
    assert res.exit_code == 2
    missing = tmp_path / "none.parquet"
    assert res.output == f"error: {missing}: no such file or folder; check the path\n"


def test_fit_existing_output_needs_force(tmp_path, synth_small):
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    (tmp_path / "m").mkdir()
    res = run("fit", data, "--out", tmp_path / "m", *FAST)
    assert res.exit_code == 2
    assert "already exists; choose another --out or pass --force to replace it" in res.output
    res = run("fit", data, "--out", tmp_path / "m", "--force", *FAST)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "manifest.json").is_file()


@pytest.mark.parametrize("existing", ["folder with a file", "model without --force"])
def test_fit_refuses_its_out_before_reading_the_inputs(existing, tmp_path, synth_small):
    # the refusal came after the whole training; a label column that does not exist would
    # be the first error once the inputs are read
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    force = ["--force"] if existing == "folder with a file" else []
    if existing == "model without --force":
        (out / "notes.txt").unlink()
        (out / "manifest.json").write_text('{"format": "trafficsiam-model"}')
    res = run("fit", data, "--out", out, "--label-column", "nope", *force, *FAST)
    assert res.exit_code == 2
    assert ("already exists" in res.output if not force
            else "is not a trafficsiam model folder, so --force will not" in res.output)
    assert "nope" not in res.output


def test_fit_quiet_prints_nothing(tmp_path, synth_small):
    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    res = run("fit", data, "--out", tmp_path / "m", *FAST)
    assert res.exit_code == 0
    assert res.output == ""


def test_unexpected_error_is_one_line_exit_1(tmp_path, monkeypatch, synth_small):
    from trafficsiam import api

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire\nmore detail")

    monkeypatch.setattr(api, "fit", boom)
    res = run("fit", tmp_path / "x.parquet", "--out", tmp_path / "m", "--quiet")
    assert res.exit_code == 1
    assert res.output == ("error: unexpected RuntimeError: disk on fire (rerun with --debug for "
                          "the traceback and report it)\n")


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "trafficsiam", "--version"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0
    assert res.stdout.startswith("trafficsiam, version ")


def test_usage_errors_are_one_line_with_exit_2(tmp_path):
    """click's usage errors as every other error: one line naming the option and the value,
    where to read more, exit 2 (click printed usage, a hint and the message on three)."""
    (tmp_path / "f.parquet").touch()
    cases = {
        ("score", tmp_path, tmp_path, "--out", tmp_path / "f.parquet"):
            "error: Invalid value for '--out' / '-o': Directory",
        ("score", tmp_path, tmp_path, "--out", tmp_path, "--bogus", "1"):
            "error: No such option '--bogus'",
        ("scor",): "error: No such command 'scor'. Did you mean 'score'?; see '",
        ("--bogus",): "error: No such option '--bogus'; see '",
    }
    for args, expected in cases.items():
        res = run(*args)
        assert res.exit_code == 2, res.output
        assert res.output.count("\n") == 1 and res.output.startswith(expected), res.output
        assert "--help'" in res.output
    # `trafficsiam` alone still prints the help
    assert run().output.startswith("Usage: ")
