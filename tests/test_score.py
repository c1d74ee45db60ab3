"""trafficsiam score: per-record results, reruns, locking, schema drift, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import hdbscan
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import run_independent
from trafficsiam import api, synth
from trafficsiam.cli import main
from trafficsiam.config import ScoreConfig
from trafficsiam.contract import TS_COLUMNS, VERDICTS
from trafficsiam.errors import ConfigError, InputError, OutputError
from trafficsiam.scoring import score
from trafficsiam.scoring.plan import output_names
from trafficsiam.state import StateLocked, StateStore

REPO = Path(__file__).resolve().parents[1]
# Small batches so that a few thousand rows span several of them.
CFG = ScoreConfig(batch_size=700)


@pytest.fixture(scope="module")
def model(fitted):
    return api.load(fitted[0].path)


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "batch.parquet"
    synth.generate(rows=3000, seed=11, novel=True).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def scored(model, batch, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored")
    result = score(model, batch, out, config=CFG, quiet=True)
    return result, pd.read_parquet(out / "batch.parquet")


def test_every_input_row_and_column_is_kept_and_ts_columns_added(batch, scored):
    result, frame = scored
    original = pd.read_parquet(batch)
    assert list(frame.columns) == list(original.columns) + list(TS_COLUMNS)
    pd.testing.assert_frame_equal(frame[original.columns], original)
    assert result.outputs[0][2] == len(original) == result.summary["records"]


def test_ts_columns_are_consistent(model, scored):
    _, f = scored
    assert f["ts_cluster"].dtype == np.int64
    assert set(f["ts_verdict"]) <= set(VERDICTS)
    assert f["ts_strength"].between(0, 1).all() and (f["ts_novelty"] >= 0).all()
    assert set(f["ts_scenario"]) <= set(model.manifest["scenarios"])  # the vote, always
    assert f["ts_p_good"].between(0, 1).all()
    explained = f["ts_verdict"].isin(["good", "known_error"])
    rate = model.config.score.false_alarm_rate
    assert (f.loc[explained, "ts_novelty"] <= 1).all()
    assert (f.loc[~explained, "ts_novelty"] > 1).all()
    good = f["ts_verdict"] == "good"
    assert (f.loc[good, "ts_p_good"] > rate).all()
    voted_good = f["ts_scenario"] == "good"
    assert (f.loc[voted_good & ~good, "ts_p_good"] <= rate).all()
    assert (f.loc[f["ts_verdict"] == "good", "ts_scenario"] == "good").all()
    assert (f.loc[f["ts_verdict"] == "known_error", "ts_scenario"] != "good").all()
    assert (f["ts_new_type"].notna() == (f["ts_verdict"] == "new_error")).all()


def test_ts_anomaly_ranks_unseen_failures_above_good_traffic(model, scored):
    """ts_anomaly: how unlike good traffic, calibrated on held-out good records (1.0 is
    what 99 % of them stay under), whatever the vote: the novel scenarios rank above good
    traffic, and good records rarely exceed 1."""
    from sklearn.metrics import roc_auc_score

    _, f = scored
    anomaly = f["ts_anomaly"].to_numpy()
    assert np.isfinite(anomaly).all() and (anomaly >= 0).all()
    assert model.scorer().anomaly_scale > 0
    good = (f["scenario"] == "good").to_numpy()
    novel = f["scenario"].isin(synth.NOVEL_SCENARIOS).to_numpy()
    auroc = roc_auc_score(np.r_[np.ones(novel.sum()), np.zeros(good.sum())],
                          np.r_[anomaly[novel], anomaly[good]])
    assert auroc > 0.95, auroc
    assert (anomaly[good] > 1).mean() < 0.05
    # a known error sits in its own cluster (low novelty) yet far from good traffic
    known_error = (f["ts_verdict"] == "known_error").to_numpy()
    assert np.median(anomaly[known_error]) > 1 > np.median(f["ts_novelty"][known_error])


def test_summary_counts_add_up(scored):
    result, f = scored
    s = result.summary
    assert s["verdicts"] == {v: int((f["ts_verdict"] == v).sum()) for v in VERDICTS}
    per_cluster = {row["cluster"]: row["records"] for row in s["clusters"]}
    assert per_cluster == {
        c: n for c, n in f["ts_cluster"].value_counts().items()
    } | {c: 0 for c in per_cluster if c not in set(f["ts_cluster"])}
    sizes = f["ts_new_type"].value_counts()
    for row in s["new_types"]:
        assert row["records"] == sizes[row["new_type"]]
        assert len(row["examples"]) >= 1 and row["features"]
    table = pd.read_csv(result.out / "new_types.csv")
    assert list(table["new_type"]) == [r["new_type"] for r in s["new_types"]]
    assert s["model"]["id"] == scored[0].summary["model"]["id"]


def test_assignment_agrees_with_hdbscan_approximate_predict(model, batch):
    frame = pd.read_parquet(batch)
    emb = model.embed(frame).astype(np.float64)
    expected, _ = hdbscan.approximate_predict(model.clusterer, emb)
    labels, _ = model.scorer().assigner.predict(emb)
    assert (labels == expected).mean() >= 0.995


def _outputs(out: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(out).as_posix(): pd.read_parquet(p)
            for p in sorted(out.rglob("*.parquet"))}


def test_rerun_scores_only_new_or_changed_inputs(model, tmp_path):
    src = tmp_path / "landing"
    src.mkdir()
    synth.generate(rows=800, seed=1, novel=True).to_parquet(src / "a.parquet", index=False)
    out = tmp_path / "out"
    first = score(model, src, out, config=CFG, quiet=True)
    assert [p.name for p, _, _ in first.outputs] == ["a.parquet"]
    stamp = (out / "a.parquet").stat().st_mtime_ns

    again = score(model, src, out, config=CFG, quiet=True)
    assert again.run_id is None and len(again.skipped) == 1
    assert (out / "a.parquet").stat().st_mtime_ns == stamp

    synth.generate(rows=500, seed=2, novel=True).to_parquet(src / "b.parquet", index=False)
    third = score(model, src, out, config=CFG, quiet=True)
    assert [p.name for p, _, _ in third.outputs] == ["b.parquet"]
    assert (out / "a.parquet").stat().st_mtime_ns == stamp

    synth.generate(rows=600, seed=3, novel=True).to_parquet(src / "a.parquet", index=False)
    fourth = score(model, src, out, config=CFG, quiet=True)
    assert [p.name for p, _, _ in fourth.outputs] == ["a.parquet"]
    assert len(pd.read_parquet(out / "a.parquet")) == 600

    runs = StateStore(out / "trafficsiam-state.db").runs()
    assert [r["status"] for r in runs] == ["ok", "ok", "ok"]


def test_second_run_on_the_same_state_is_refused_while_one_holds_it(model, batch, tmp_path):
    state = tmp_path / "runs.db"
    with StateStore(state) as store, store.lock():
        with pytest.raises(StateLocked, match="another trafficsiam score run"):
            score(model, batch, tmp_path / "out", state=state, config=CFG, quiet=True)
        result = CliRunner().invoke(main, ["score", str(model.path), str(batch), "-o",
                                           str(tmp_path / "out"), "--state", str(state)])
        assert result.exit_code == 75
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_missing_feature_column_is_a_clear_error_and_writes_nothing(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    frame = synth.generate(rows=300, seed=4)
    frame.to_parquet(src / "a.parquet", index=False)
    frame.drop(columns=["latency_ms"]).to_parquet(src / "b.parquet", index=False)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"b\.parquet: feature column 'latency_ms'.*missing"):
        score(model, src, out, config=CFG, quiet=True)
    # a refused first run leaves no state, and no --out folder it created
    assert not out.exists()
    out.mkdir()  # a folder of the user's keeps only the (empty) lock files
    with pytest.raises(InputError, match=r"b\.parquet: feature column 'latency_ms'.*missing"):
        score(model, src, out, config=CFG, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == [
        ".trafficsiam-out.lock", "trafficsiam-state.db.lock"
    ]
    # where the state was there before, it keeps the failed run
    (src / "b.parquet").unlink()
    score(model, src, out, config=CFG, quiet=True)
    frame.drop(columns=["latency_ms"]).to_parquet(src / "b.parquet", index=False)
    with pytest.raises(InputError, match=r"b\.parquet: feature column 'latency_ms'.*missing"):
        score(model, src, out, config=CFG, quiet=True)
    assert [r["status"] for r in StateStore(out / "trafficsiam-state.db").runs()] == [
        "failed", "ok"]


def test_bad_value_in_a_later_file_leaves_no_output_at_all(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    synth.generate(rows=300, seed=4).to_parquet(src / "a.parquet", index=False)
    bad = synth.generate(rows=300, seed=5)
    bad["bytes_in"] = bad["bytes_in"].astype(str)
    bad.loc[123, "bytes_in"] = "lots"
    bad.to_parquet(src / "b.parquet", index=False)
    with pytest.raises(InputError, match=r"b\.parquet row 123: column 'bytes_in' has value "
                                         r"'lots'"):
        score(model, src, tmp_path / "out", config=CFG, quiet=True)
    assert not list((tmp_path / "out").rglob("*.parquet"))
    assert not (tmp_path / "out" / "summary.json").exists()


def test_input_rewritten_during_scoring_is_refused_and_not_recorded(
    model, tmp_path, monkeypatch
):
    from trafficsiam.scoring import passes as score_module

    path = tmp_path / "a.parquet"
    synth.generate(rows=300, seed=4).to_parquet(path, index=False)
    discover = score_module.discover

    def rewrite_then_discover(*args, **kwargs):  # between the two passes
        synth.generate(rows=300, seed=5).to_parquet(path, index=False)
        return discover(*args, **kwargs)

    monkeypatch.setattr(score_module, "discover", rewrite_then_discover)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match=r"a\.parquet: changed while it was being scored"):
        score(model, path, out, config=CFG, quiet=True)
    assert not any((out / name).exists()
                   for name in ("summary.json", "clusters.csv", "report.html"))
    assert not (out / "trafficsiam-state.db").exists()  # a refused first run leaves none


def test_extra_columns_pass_through_and_ts_names_are_refused(model, tmp_path):
    frame = synth.generate(rows=300, seed=6)
    frame["site"] = "ams-1"
    frame.to_parquet(tmp_path / "x.parquet", index=False)
    score(model, tmp_path / "x.parquet", tmp_path / "out", config=CFG, quiet=True)
    assert (pd.read_parquet(tmp_path / "out" / "x.parquet")["site"] == "ams-1").all()

    frame["ts_verdict"] = "mine"
    frame.to_parquet(tmp_path / "y.parquet", index=False)
    with pytest.raises(InputError, match="column 'ts_verdict' is one that scoring adds"):
        score(model, tmp_path / "y.parquet", tmp_path / "out2", config=CFG, quiet=True)


def test_csv_input_keeps_text_columns_as_written(model, tmp_path):
    frame = synth.generate(rows=400, seed=8)
    frame["id"] = [f"{i:06d}" for i in range(len(frame))]
    frame.to_csv(tmp_path / "x.csv", index=False)
    score(model, tmp_path / "x.csv", tmp_path / "out", config=CFG, quiet=True)
    got = pd.read_parquet(tmp_path / "out" / "x.parquet")
    assert list(got["id"][:2]) == ["000000", "000001"]
    np.testing.assert_allclose(got["bytes_in"], frame["bytes_in"])


def test_output_names_mirror_the_folder_and_refuse_collisions(tmp_path):
    for part in ("d=1", "d=2"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "part-0.parquet").write_bytes(b"")
    paths = sorted(tmp_path.rglob("*.parquet"))
    names = output_names([str(tmp_path)], paths)
    assert sorted(names.values()) == ["d=1/part-0.parquet", "d=2/part-0.parquet"]
    with pytest.raises(InputError, match="same output 'part-0.parquet'"):
        output_names([str(p) for p in paths], paths)


def test_another_rate_needs_no_refit(model, batch, tmp_path):
    """score.false_alarm_rate at scoring: the same evidence judged at another rate; a
    higher rate calls fewer records good, never more, and the vote does not move."""
    base = api.score(model, [batch], tmp_path / "plain", config=CFG, quiet=True, report=False)
    cfg = CFG.model_copy(update={"false_alarm_rate": 0.2})
    loose = api.score(model, [batch], tmp_path / "loose", config=cfg, quiet=True, report=False)
    a = pd.read_parquet(base.outputs[0][1])
    b = pd.read_parquet(loose.outputs[0][1])
    for col in ("ts_scenario", "ts_cluster", "ts_p_good", "ts_anomaly"):
        pd.testing.assert_series_equal(a[col], b[col])
    assert ((b["ts_verdict"] == "good") <= (a["ts_verdict"] == "good")).all()
    assert (b["ts_verdict"] == "good").sum() < (a["ts_verdict"] == "good").sum()
    assert (b.loc[b["ts_verdict"] == "good", "ts_p_good"] > 0.2).all()


def test_another_anomaly_saturation_recalibrates_the_anomaly(model, batch, tmp_path):
    """score.anomaly_saturation at scoring: the anomaly's unit is recalibrated on the
    stored held-out good records with that saturation (1.0 stays the same quantile of
    them); the vote does not move."""
    from trafficsiam.calibrate import ANOMALY_QUANTILE
    from trafficsiam.prototypes import saturated_anomaly

    # the sample data's failures move one or two KPIs: auto chose the Euclidean distance
    stored = model.scorer()
    assert stored.saturation is None
    assert model.manifest["anomaly"]["rule"] == "auto"
    assert model.manifest["anomaly"]["saturation"] is None
    sat = model.scorer(saturation=0.5)
    assert sat.saturation == 0.5
    held_good = (model.holdout["scenario"] == model.manifest["good_label"]).to_numpy()
    want = np.quantile(saturated_anomaly(model.inputs["holdout"][held_good],
                                         model.inputs["anomaly_prototypes"],
                                         model.inputs["anomaly_set"], 0.5), ANOMALY_QUANTILE)
    assert sat.anomaly_scale == pytest.approx(want)

    base = api.score(model, [batch], tmp_path / "plain", quiet=True, report=False)
    cfg = ScoreConfig(**{**model.config.score.model_dump(), "anomaly_saturation": 0.5})
    other = api.score(model, [batch], tmp_path / "sat", config=cfg, quiet=True, report=False)
    a = pd.read_parquet(base.outputs[0][1])
    b = pd.read_parquet(other.outputs[0][1])
    assert (a["ts_scenario"] == b["ts_scenario"]).all()
    assert not np.allclose(a["ts_anomaly"], b["ts_anomaly"])


def test_cli_score_exit_codes_and_summary(model, batch, tmp_path):
    runner = CliRunner()
    args = ["score", str(model.path), str(batch), "-o", str(tmp_path / "out"),
            "--set", "score.batch_size=700"]
    first = runner.invoke(main, [*args, "--alert-exit-code", "3"])
    found = json.loads((tmp_path / "out" / "summary.json").read_text())["new_types"]
    assert first.exit_code == (3 if found else 0), first.output
    assert "scored 3000 records" in first.output
    second = runner.invoke(main, [*args, "--alert-exit-code", "3"])
    assert second.exit_code == 0 and "nothing new to score" in second.output

    bad = runner.invoke(main, ["score", str(tmp_path / "nope"), str(batch), "-o", "x"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "no such model" in bad.output
    refused = runner.invoke(main, [*args, "--set", "train.epochs=3"])
    assert refused.exit_code == 2 and "only score.* keys" in refused.output


def test_an_earlier_runs_output_of_the_same_name_is_refused_not_replaced(model, tmp_path):
    # siteA/day.parquet, then siteB/day.parquet into one --out: B replaced A's scored
    # records, and A was then "already scored"
    for site, seed in (("siteA", 21), ("siteB", 22)):
        (tmp_path / site).mkdir()
        synth.generate(rows=400, seed=seed).to_parquet(tmp_path / site / "day.parquet",
                                                       index=False)
    out = tmp_path / "out"
    score(model, tmp_path / "siteA" / "day.parquet", out, config=CFG, quiet=True)
    before = (out / "day.parquet").read_bytes()
    with pytest.raises(InputError, match=(
            r"siteB/day.parquet: its output .*day.parquet holds the scored records of "
            r".*siteA/day.parquet, scored earlier into this folder; score it into another "
            r"--out folder")):
        score(model, tmp_path / "siteB" / "day.parquet", out, config=CFG, quiet=True)
    assert (out / "day.parquet").read_bytes() == before
    score(model, tmp_path / "siteB" / "day.parquet", tmp_path / "out2", config=CFG, quiet=True)


def test_inputs_scored_by_another_model_are_named_when_skipped(model, batch, tmp_path, caplog):
    from trafficsiam.derive import recalibrate

    other = api.load(recalibrate(
        model.path, synth.generate(rows=600, seed=5).query("scenario == 'good'"),
        tmp_path / "other").path)
    out = tmp_path / "out"
    score(model, batch, out, config=CFG, quiet=True)
    before = (out / "batch.parquet").read_bytes()
    caplog.set_level("WARNING")
    again = score(other, batch, out, config=CFG)
    assert again.run_id is None and (out / "batch.parquet").read_bytes() == before
    assert (f"1 input(s) skipped as already scored were scored by model {model.model_id}, "
            f"not {other.model_id}; their outputs keep its verdicts (pass --rescore to score "
            f"them with {other.model_id})") in caplog.text
    rescored = score(other, batch, out, config=CFG, quiet=True, rescore=True)
    assert rescored.summary["model"]["id"] == other.model_id


def test_score_config_layers(model, tmp_path):
    from trafficsiam.config import score_config

    path = tmp_path / "c.yaml"
    path.write_text("score:\n  false_alarm_rate: 0.005\n  examples: 2\n")
    cfg = score_config(model.config.score, path, [{"score": {"examples": 7}}])
    assert (cfg.false_alarm_rate, cfg.examples) == (0.005, 7)
    path.write_text("model:\n  embedding_dim: 3\n")
    with pytest.raises(ConfigError, match="section 'model' cannot change when scoring"):
        score_config(model.config.score, path)


# --- crash safety: a run killed at any point, run again, equals an uninterrupted run -----

_RUN = """
import sys
from trafficsiam import api
from trafficsiam.config import ScoreConfig
api.score(sys.argv[1], sys.argv[2], sys.argv[3], config=ScoreConfig(batch_size=500), quiet=True)
"""


def _comparable(out: Path) -> tuple[dict[str, pd.DataFrame], dict, str]:
    return (_outputs(out), *run_independent(out))


@pytest.fixture(scope="module")
def landing(model, tmp_path_factory) -> tuple[Path, Path]:
    """Input files big enough to kill a run in the middle, and their uninterrupted output."""
    root = tmp_path_factory.mktemp("crash")
    src = root / "landing"
    src.mkdir()
    for i in range(3):
        synth.generate(rows=5000, seed=20 + i, novel=True).to_parquet(
            src / f"day-{i}.parquet", index=False)
    reference = root / "reference"
    # in a process of its own, as the killed run and its rerun: torch's thread settings
    # of this test process (other tests change them) must not move the embeddings
    subprocess.run([sys.executable, "-c", _RUN, str(model.path), str(src), str(reference)],
                   check=True, cwd=REPO)
    return src, reference


@pytest.mark.parametrize("kill_when", ["spooling", "writing"])
def test_killed_run_rerun_gives_exactly_the_uninterrupted_output(
    model, landing, tmp_path, kill_when
):
    src, reference = landing
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(model.path), str(src), str(out)],
                            cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        spooling = any((out / ".trafficsiam-work").glob("*.spool"))
        writing = any(out.glob(".day-*.tmp")) or any(out.glob("day-*.parquet"))
        if (kill_when == "spooling" and spooling) or (kill_when == "writing" and writing):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed; give it more data"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    for partial in out.rglob("*.parquet"):  # whatever is there is complete, never partial
        pd.read_parquet(partial)

    subprocess.run([sys.executable, "-c", _RUN, str(model.path), str(src), str(out)],
                   check=True, cwd=REPO)
    got, want = _comparable(out), _comparable(reference)
    assert got[0].keys() == want[0].keys()
    for name in want[0]:
        pd.testing.assert_frame_equal(got[0][name], want[0][name])
    assert got[1] == want[1] and got[2] == want[2]
    assert not list(out.glob(".*.tmp")) and not (out / ".trafficsiam-work").exists()
    runs = StateStore(out / "trafficsiam-state.db").runs()
    assert [r["status"] for r in runs] == ["ok", "interrupted"]


def test_infinite_value_is_refused_with_file_row_and_column(model, tmp_path):
    frame = synth.generate(rows=300, seed=9)
    frame.loc[42, "latency_ms"] = np.inf
    frame.to_parquet(tmp_path / "x.parquet", index=False)
    with pytest.raises(InputError, match=r"x\.parquet row 42: column 'latency_ms' has value "
                                         r"inf \(1 infinite values"):
        score(model, tmp_path / "x.parquet", tmp_path / "out", config=CFG, quiet=True)


def test_a_run_failing_on_its_second_output_leaves_no_output_at_all(model, tmp_path,
                                                                     monkeypatch):
    # issue 18: all or nothing, a full disk on the 2nd of 2 outputs left the 1st in place
    import errno

    from trafficsiam.scoring import local

    src = tmp_path / "landing"
    src.mkdir()
    for i in range(2):
        synth.generate(rows=400, seed=30 + i).to_parquet(src / f"d{i}.parquet", index=False)
    real = local.write_output

    def full_disk_on_the_second(tmp, scoring, job, *args, **kwargs):
        if job.index == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tmp, scoring, job, *args, **kwargs)

    monkeypatch.setattr(local, "write_output", full_disk_on_the_second)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="No space left on device"):
        score(model, src, out, config=CFG, quiet=True)
    # no scored file, no temporary file, no state and no folder: they were this run's
    assert not out.exists()
    monkeypatch.setattr(local, "write_output", real)
    again = score(model, src, out, config=CFG, quiet=True)  # nothing was recorded as scored
    assert sorted(p.name for p, _, _ in again.outputs) == ["d0.parquet", "d1.parquet"]


def test_two_runs_into_one_out_folder_with_different_states_do_not_overlap(model, batch,
                                                                          tmp_path):
    # issue 18: they shared a work folder and crashed each other
    from trafficsiam.contract import OUT_LOCK
    from trafficsiam.state import StateLocked, exclusive

    out = tmp_path / "out"
    out.mkdir()
    with exclusive(out / OUT_LOCK, 0, 0.1, "held by this test"):  # another run, in effect
        with pytest.raises(StateLocked, match=r"another trafficsiam score run is writing "
                                              r"into this --out folder"):
            score(model, batch, out, state=tmp_path / "other.db", config=CFG, quiet=True)
    assert not list(out.glob("*.parquet"))
    assert score(model, batch, out, state=tmp_path / "other.db", config=CFG,
                 quiet=True).run_id is not None


def test_a_deleted_output_is_scored_again(model, batch, tmp_path):
    # issue 18: with --state elsewhere, deleting --out said "nothing new to score" forever
    out, state = tmp_path / "out", tmp_path / "state.db"
    first = score(model, batch, out, state=state, config=CFG, quiet=True)
    assert first.run_id is not None
    assert score(model, batch, out, state=state, config=CFG, quiet=True).run_id is None
    (out / "batch.parquet").unlink()
    again = score(model, batch, out, state=state, config=CFG, quiet=True)
    assert again.run_id is not None and (out / "batch.parquet").is_file()


def test_summary_names_the_model_by_an_absolute_path(fitted, batch, tmp_path, monkeypatch):
    """A model given by a relative path (`score models/prod ...` from a cron job's
    directory) is named absolutely in summary.json: `report` and `promote`, run later
    from another directory, find it by that path."""
    from trafficsiam.derive import run_model

    monkeypatch.chdir(Path(fitted[0].path).parent)
    relative = Path(Path(fitted[0].path).name)
    out = tmp_path / "scored"
    result = score(relative, batch, out, config=CFG, quiet=True)
    named = Path(result.summary["model"]["path"])
    assert named.is_absolute() and named == Path(fitted[0].path).absolute()
    monkeypatch.chdir(tmp_path)
    assert api.load(run_model(out)).model_id == result.summary["model"]["id"]
