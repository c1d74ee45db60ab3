"""Operations memory (`scoring.history`, `newtypes.track`; issue 19): a scripted week of
nightly runs into one folder. Good traffic every day, a new failure from day 2, a second
from day 4, the first promoted on day 5 and known by its name on day 6."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from trafficsiam import api, artifact, synth
from trafficsiam.cli import main
from trafficsiam.config import ScoreConfig, build_config
from trafficsiam.contract import INDEX_HTML, REPORT_HTML, RUNS_DIR, SUMMARY
from trafficsiam.derive import promote


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    folder = tmp_path_factory.mktemp("week")
    cfg = build_config({"data": {"ignore": ["id", "timestamp"]},
                        "train": {"epochs": 6, "steps_per_epoch": 40, "patience": 10}})
    api.fit(synth.generate(rows=8000, seed=1), folder / "model", cfg, quiet=True,
            report=False)
    pool = synth.generate(rows=60_000, seed=2, novel=True)
    good = pool[pool["scenario"] == "good"]
    first = pool[pool["scenario"] == "error_type_3"]
    second = pool[pool["scenario"] == "error_type_4"]
    days = {1: [good.iloc[0:2000]],
            2: [good.iloc[2000:4000], first.iloc[0:300]],
            3: [good.iloc[4000:6000], first.iloc[300:600]],
            4: [good.iloc[6000:8000], first.iloc[600:900], second.iloc[0:300]],
            6: [good.iloc[8000:10000], first.iloc[900:1200]]}
    out = folder / "scored"
    found = {}
    for day, parts in days.items():
        if day == 6:  # day 5: the analyst names the first new failure
            summary = json.loads((out / SUMMARY).read_text())
            named = found[4]["first"]
            promote(folder / "model", out, named, "dns-amplification", folder / "model-2")
        frame = pd.concat(parts, ignore_index=True)
        path = folder / "landing" / f"day{day}.parquet"
        path.parent.mkdir(exist_ok=True)
        frame.to_parquet(path, index=False)
        model = folder / ("model-2" if day == 6 else "model")
        api.score(model, path, out, quiet=True)
        scored = pd.read_parquet(out / f"day{day}.parquet")
        summary = json.loads((out / SUMMARY).read_text())
        found[day] = {
            "summary": summary,
            "first": _majority(scored, "error_type_3"),
            "second": _majority(scored, "error_type_4"),
            "scored": scored,
        }
    return out, found


def _majority(scored, scenario):
    part = scored.loc[scored["scenario"] == scenario, "ts_new_type"].dropna()
    return None if part.empty else str(part.mode()[0])


def test_each_run_keeps_its_folder_and_the_index_lists_them(week):
    out, found = week
    runs = sorted(p.name for p in (out / RUNS_DIR).iterdir())
    assert runs == sorted(found[d]["summary"]["run_id"] for d in found)
    for run in runs:
        assert (out / RUNS_DIR / run / SUMMARY).is_file()
        assert (out / RUNS_DIR / run / REPORT_HTML).is_file()
    index = (out / INDEX_HTML).read_text()
    assert all(run in index for run in runs)
    assert index.index(runs[-1]) < index.index(runs[0])  # newest first
    assert '"trend"' in index and "Content-Security-Policy" in index
    # the latest run's page is also at the root
    assert (out / REPORT_HTML).read_bytes() == (out / RUNS_DIR / runs[-1] / REPORT_HTML
                                                ).read_bytes()


def test_a_new_failure_keeps_its_id_from_run_to_run(week):
    _, found = week
    assert found[1]["summary"]["new_types"] == []
    first = found[2]["first"]
    assert first is not None
    assert found[3]["first"] == first and found[4]["first"] == first
    day4 = {t["new_type"]: t for t in found[4]["summary"]["new_types"]}
    assert day4[first]["first_seen"] == found[2]["summary"]["run_id"]
    assert day4[first]["runs_seen"] == 3
    assert [run for run, _ in day4[first]["records_by_run"]] == [
        found[d]["summary"]["run_id"] for d in (2, 3, 4)]
    # the second new failure is a candidate of its own, with a number never used before
    second = found[4]["second"]
    assert second is not None and second != first
    assert day4[second]["first_seen"] == found[4]["summary"]["run_id"]
    assert day4[second]["runs_seen"] == 1


def test_the_promoted_failure_is_known_by_its_name(week):
    _, found = week
    scored = found[6]["scored"]
    named = scored[scored["scenario"] == "error_type_3"]
    assert ((named["ts_verdict"] == "known_error")
            & (named["ts_scenario"] == "dns-amplification")).mean() >= 0.6
    good = scored[scored["scenario"] == "good"]
    assert (good["ts_verdict"] == "good").mean() >= 0.9


def test_keep_runs_removes_the_oldest_run_folders_never_scored_files(tmp_path, week):
    out, found = week
    import shutil

    copy = tmp_path / "scored"
    shutil.copytree(out, copy)
    model = found[6]["summary"]["model"]["path"]
    day = copy.parent / "day7.parquet"
    found[6]["scored"].drop(columns=[c for c in found[6]["scored"] if c.startswith("ts_")]
                            ).to_parquet(day, index=False)
    api.score(model, day, copy, quiet=True,
              config=ScoreConfig(keep_runs=2))
    assert len(list((copy / RUNS_DIR).iterdir())) == 2
    for d in (1, 2, 3, 4, 6):
        assert (copy / f"day{d}.parquet").is_file()


def test_promote_takes_a_candidate_of_an_earlier_run_by_its_id(week, tmp_path):
    out, found = week
    day3 = found[3]["summary"]
    first = found[3]["first"]
    res = CliRunner().invoke(main, ["promote", str(out), first, "--as", "dns-amplification",
                                    "--run", day3["run_id"], "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    step = artifact.load(tmp_path / "m").manifest["lineage"][-1]
    records = {t["new_type"]: t["records"] for t in day3["new_types"]}[first]
    assert step["run_id"] == day3["run_id"] and step["records"] == records
    assert step["run_folder"] == str(out / RUNS_DIR / day3["run_id"])


def test_promote_names_the_kept_runs_when_the_run_id_is_unknown(week, tmp_path):
    out, found = week
    res = CliRunner().invoke(main, ["promote", str(out), "new-1", "--as", "x",
                                    "--run", "2001-01-01", "--out", str(tmp_path / "m")])
    assert res.exit_code != 0 and not (tmp_path / "m").exists()
    latest = found[6]["summary"]["run_id"]
    assert f"{out / RUNS_DIR}: no run '2001-01-01' is kept there (kept, latest last: " in \
        res.output
    assert f"{latest}); pass one of them to --run, or leave --run out for the latest" in \
        res.output
