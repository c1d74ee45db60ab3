"""Derived models (`trafficsiam.derive`, `trafficsiam calibrate` / `promote`, issue 19):
a new site's good traffic taught to a model, an analyst's name for a candidate."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from click.testing import CliRunner

from trafficsiam import api, artifact, synth
from trafficsiam.cli import main
from trafficsiam.config import build_config
from trafficsiam.derive import MIN_RECORDS, promote, recalibrate
from trafficsiam.errors import ArtifactError, InputError


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("derive")
    cfg = build_config({"data": {"ignore": ["id", "timestamp"]},
                        "train": {"epochs": 6, "steps_per_epoch": 40, "patience": 10}})
    api.fit(synth.generate(rows=8000, seed=1), folder / "m", cfg, quiet=True, report=False)
    return artifact.load(folder / "m")


def _score(model_path, frame, folder):
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "batch.parquet", index=False)
    api.score(model_path, folder / "batch.parquet", folder / "out", quiet=True, report=False)
    return pd.read_parquet(folder / "out" / "batch.parquet"), folder / "out"


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _other_site(seed):
    """Good traffic of another site: latency and jitter 4 times the fit's."""
    frame = synth.generate(rows=6000, seed=seed)
    good = frame[frame["scenario"] == "good"].copy()
    for col in ("latency_ms", "jitter_ms"):
        good[col] = good[col] * 4
    return good


def test_calibrate_on_another_sites_good_traffic_brings_its_false_alarms_to_the_rate(
        model, tmp_path, caplog):
    before = _files(model.path)
    site = _other_site(21)
    failures = synth.generate(rows=6000, seed=22)
    failures = failures[failures["scenario"] != "good"]
    test = pd.concat([_other_site(23), failures], ignore_index=True)
    parent, _ = _score(model.path, test, tmp_path / "parent")
    # the label column names two scenarios: only good traffic is taken, with a count
    with caplog.at_level(logging.WARNING, logger="trafficsiam"):
        derived = recalibrate(model.path, pd.concat([site, failures.head(50)]),
                              tmp_path / "m2")
    assert "left out 50 records whose 'scenario' is not 'good'" in caplog.text
    child, _ = _score(derived.path, test, tmp_path / "child")
    good = test["scenario"].to_numpy() == "good"
    alarm = lambda s: float((s["ts_verdict"].to_numpy()[good] != "good").mean())  # noqa: E731
    assert alarm(parent) >= 0.10  # the other site looks unlike the fit's good traffic
    assert alarm(child) <= 0.03
    # known failures stay known under the recalibrated model
    known = ~good
    same = (child["ts_verdict"] == "known_error") & (child["ts_scenario"] == test["scenario"])
    assert same.to_numpy()[known].mean() >= 0.8
    # the parent is untouched; the child says where it came from and has its own id
    assert _files(model.path) == before
    step = derived.manifest["lineage"][-1]
    assert step["kind"] == "calibrate" and step["parent"] == model.model_id
    assert step["records"] == len(site) and step["replaced_calibration"]
    assert derived.manifest["model_id"] != model.model_id
    assert artifact.load(derived.path).model_id == derived.manifest["model_id"]


def test_a_promoted_candidate_is_a_known_scenario_of_the_new_model(model, tmp_path):
    batch = synth.generate(rows=20_000, seed=31, novel=True)
    batch = batch[batch["scenario"].isin(["good", "error_type_1", "error_type_3"])]
    scored, run = _score(model.path, batch, tmp_path / "first")
    summary = json.loads((run / "summary.json").read_text())
    grouped = scored["ts_new_type"].notna()
    # the candidate that holds most of the new failure type
    top = scored.loc[grouped & (scored["scenario"] == "error_type_3"), "ts_new_type"].mode()[0]
    assert top in [t["new_type"] for t in summary["new_types"]]
    res = CliRunner().invoke(main, ["promote", str(run), top, "--as", "dns-amplification",
                                    "--out", str(tmp_path / "m3")])
    assert res.exit_code == 0, res.output
    assert "(promote, parent " in res.output and "'dns-amplification' (new scenario)" in res.output
    child = artifact.load(tmp_path / "m3")
    assert child.manifest["scenarios"][-1] == "dns-amplification"
    assert child.manifest["scenarios"][:-1] == model.manifest["scenarios"]
    step = child.manifest["lineage"][-1]
    assert step["candidate"] == top and step["run_id"] == summary["run_id"]
    nxt = synth.generate(rows=20_000, seed=32, novel=True)
    nxt = nxt[nxt["scenario"].isin(["good", "error_type_3"])]
    again, _ = _score(tmp_path / "m3", nxt, tmp_path / "next")
    new_type = again[again["scenario"] == "error_type_3"]
    named = (new_type["ts_verdict"] == "known_error") & (
        new_type["ts_scenario"] == "dns-amplification")
    assert named.mean() >= 0.6
    good = again[again["scenario"] == "good"]
    assert (good["ts_verdict"] == "good").mean() >= 0.9


def test_promote_refuses_what_it_cannot_do(model, tmp_path):
    batch = synth.generate(rows=6000, seed=41, novel=True)
    _, run = _score(model.path, batch, tmp_path / "run")
    with pytest.raises(InputError, match=r"the run has no candidate 'new-99' \(candidates: "):
        promote(model.path, run, "new-99", "x", tmp_path / "m4")
    with pytest.raises(InputError, match=r"--as '  ' is empty"):
        promote(model.path, run, "new-1", "  ", tmp_path / "m4")
    with pytest.raises(InputError, match=r"summary.json: not found; pass the --out folder"):
        promote(model.path, tmp_path, "new-1", "x", tmp_path / "m4")
    other = recalibrate(model.path, _other_site(42), tmp_path / "other")
    with pytest.raises(ArtifactError, match=r"the run was scored by model "):
        promote(other.path, run, "new-1", "x", tmp_path / "m4")
    assert not (tmp_path / "m4").exists()


def test_calibrate_refuses_too_few_records_and_missing_columns(model, tmp_path):
    good = _other_site(51)
    res = CliRunner().invoke(main, ["calibrate", str(model.path), "--out",
                                    str(tmp_path / "m5"), str(_write(good.head(10), tmp_path))])
    assert res.exit_code == 2
    assert f"10 records; a derived model needs at least {MIN_RECORDS}" in res.output
    path = _write(good.drop(columns=["latency_ms"]), tmp_path, "nolat.parquet")
    with pytest.raises(InputError, match=r"feature column 'latency_ms' of model .* is missing"):
        recalibrate(model.path, path, tmp_path / "m5")
    assert not (tmp_path / "m5").exists()


def test_an_edited_model_id_is_refused(model, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(model.path, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model_id"] = "0123456789ab"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"model_id '0123456789ab' does not match the "
                                            r"model's files"):
        artifact.load(folder)


def _write(frame, folder, name="good.parquet"):
    path = folder / name
    frame.to_parquet(path, index=False)
    return path


def test_promote_refuses_a_run_whose_scored_files_were_scored_again(model, tmp_path):
    batch = synth.generate(rows=6000, seed=41, novel=True)
    _, out = _score(model.path, batch, tmp_path / "run")
    first = json.loads((out / "summary.json").read_text())
    assert first["new_types"], "the batch must hold a candidate"
    # the same input path with other records: its scored file is replaced
    _score(model.path, batch[batch["scenario"] == "good"], tmp_path / "run")
    with pytest.raises(InputError, match=r"its scored files now hold .* \(scored again since\)"):
        promote(model.path, out, "new-1", "x", tmp_path / "m5", run_id=first["run_id"])
    assert not (tmp_path / "m5").exists()
