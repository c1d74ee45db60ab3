"""The reports: tables that agree with the page, bounded samples, pages that load nothing
from the network and show data only as text. Browser checks: test_report_browser.py."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from trafficsiam import api, artifact, synth
from trafficsiam.cli import main
from trafficsiam.config import ScoreConfig
from trafficsiam.contract import VERDICTS
from trafficsiam.errors import ArtifactError, InputError
from trafficsiam.report import cards, collect, figures, report
from trafficsiam.report.collect import RecordSample
from trafficsiam.report.profile import Members
from trafficsiam.scoring import score

REPO = Path(__file__).resolve().parents[1]
XSS = "<script>alert(1)</script>"
MARKUP_COLUMN = "<img src=x onerror=alert(2)>note"
# Small batches (several per file) and a low candidate size, so 3,000 rows find one.
CFG = ScoreConfig(batch_size=700, new_type_min_size=10)


@pytest.fixture(scope="module")
def model(fitted):
    return api.load(fitted[0].path)


def hostile_batch(rows: int, seed: int) -> pd.DataFrame:
    """Novel traffic whose values and one column name are markup."""
    frame = synth.generate(rows=rows, seed=seed, novel=True)
    frame.loc[frame.index % 7 == 0, "service"] = XSS
    frame.loc[frame.index % 11 == 0, "scenario"] = XSS
    frame[MARKUP_COLUMN] = [XSS if i % 2 else f"n{i}" for i in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def run(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    (root / "in").mkdir()
    hostile_batch(3000, 11).to_parquet(root / "in" / "a.parquet", index=False)
    result = score(model, root / "in", root / "out", config=CFG, quiet=True)
    return result, root


class Page(HTMLParser):
    """What the tests read from a page: resources, cards, their features, script bodies."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.resources: list[tuple[str, str, str]] = []
        self.cards: list[dict[str, str]] = []
        self.features: list[tuple[str, str, str]] = []  # (card group, feature, effect)
        self.scripts: list[dict[str, str | None]] = []
        self.csp = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            if a.get(name):
                self.resources.append((tag, name, str(a[name])))
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = str(a.get("content"))
        if tag == "section" and "card" in (a.get("class") or "").split():
            self.cards.append({k: str(v) for k, v in a.items()})
        if tag == "tr" and "data-feature" in a:
            self.features.append((self.cards[-1]["data-group"], str(a["data-feature"]),
                                  str(a["data-effect"])))
        if tag == "script":
            self.scripts.append(a)


def _scored_table(n: int, seed: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    verdict = rng.choice(4, size=n, p=[0.6, 0.25, 0.1, 0.05])
    cluster = np.where(verdict == 0, rng.integers(0, 2, n), 2 + rng.integers(0, 2, n))
    new_type = np.where(verdict == 2, np.where(rng.random(n) < 0.7, "new-1", "new-2"), None)
    table = pa.table({
        "id": [f"r{i}" for i in range(n)], "scenario": rng.choice(["a", "b", None], n),
        "bytes": rng.lognormal(5, 2, n), "proto": rng.choice(["tcp", "udp"], n),
        "ts_cluster": cluster, "ts_strength": rng.random(n), "ts_novelty": rng.random(n),
        "ts_verdict": [VERDICTS[v] for v in verdict], "ts_new_type": new_type.tolist(),
    })
    return table, verdict, new_type.astype(object)


def _sample(cap: int) -> RecordSample:
    return RecordSample(["bytes", "proto"], ["bytes"], "scenario", ["scenario", "id"],
                        dict.fromkeys(collect.CAPACITY, cap))


def test_sample_does_not_depend_on_batches_or_parts():
    table, verdict, new_type = _scored_table(5000, 1)
    whole = _sample(40)
    whole.add("ab" * 32, 0, 0, table, verdict, new_type)
    parts = [_sample(40), _sample(40)]
    for start in range(0, 5000, 333):
        end = min(start + 333, 5000)
        parts[start // 333 % 2].add("ab" * 32, 0, start, table.slice(start, end - start),
                                    verdict[start:end], new_type[start:end])
    parts[0].merge(parts[1])
    assert set(whole.groups) == set(parts[0].groups)
    for key, group in whole.groups.items():
        other = parts[0].groups[key]
        assert (group.records, group.labels) == (other.records, other.labels)
        assert group.strength_sum == pytest.approx(other.strength_sum)
        pd.testing.assert_frame_equal(whole.frame(*key), parts[0].frame(*key))


def test_sample_memory_is_bounded_and_counts_are_exact():
    table, verdict, new_type = _scored_table(20_000, 2)
    sample = _sample(25)
    for start in range(0, 20_000, 1000):
        sample.add("cd" * 32, 3, start, table.slice(start, 1000), verdict[start:start + 1000],
                   new_type[start:start + 1000])
        assert all(g.kept <= 2 * 25 for g in sample.groups.values())
    good = sample.groups[(collect.GOOD, collect.GOOD)]
    assert good.records == int((verdict == 0).sum())
    assert sample.groups[(collect.NEW_TYPE, "new-2")].records == int((new_type == "new-2").sum())
    frame = sample.frame(collect.CLUSTER, "2")
    assert len(frame) == 25 and set(frame["ts_verdict"]) <= {"good", "known_error"}
    assert (frame[collect.FILE] == 3).all() and frame[collect.ROW].is_unique
    labels = sample.groups[(collect.OUTLIER, collect.OUTLIER)].labels
    assert sum(labels.values()) == int((verdict == 3).sum()) and collect.MISSING_LABEL in labels


def test_allocation_keeps_small_groups_and_candidates_visible():
    drawn = figures.allocate({"big": 50_000, "mid": 9000, "tiny": 12, "new-1": 300,
                              "new-2": 30_000}, 20_000, first=["new-1", "new-2"])
    assert drawn["tiny"] == 12 and drawn["new-1"] == 300
    assert drawn["new-1"] + drawn["new-2"] == 10_000
    assert sum(drawn.values()) == 20_000 and drawn["big"] == drawn["mid"]
    assert figures.allocate({"a": 10, "b": 20}) == {"a": 10, "b": 20}


def test_projection_is_pca_above_three_dimensions_and_the_embedding_below():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(500, 6)) * [5, 1, 0.5, 0.1, 0.1, 0.1]
    p = figures.Projection.fit(ref)
    assert p.dims == 2 and p.explained[0] > 0.9
    np.testing.assert_allclose(p(ref), figures.Projection.fit(ref.copy())(ref))
    assert abs(p.components[0, 0]) > 0.99 and p.components[0, 0] > 0  # sign fixed
    small = figures.Projection.fit(ref[:, :3])
    assert small.dims == 3 and np.array_equal(small(ref[:, :3]), ref[:, :3])


def test_plot_text_from_data_is_escaped_for_plotly():
    assert figures.text(XSS) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    trace = figures.map_trace(XSS, "#000", "good", np.zeros((1, 2)), [MARKUP_COLUMN],
                              pd.DataFrame({MARKUP_COLUMN: [XSS]}))
    assert "<" not in json.dumps(trace)


# --- a scoring run's report ----------------------------------------------------------------


def test_score_writes_the_report_and_its_tables(run):
    result, root = run
    out = root / "out"
    for name in ("report.html", "clusters.csv", "new_types.csv", "features_by_cluster.csv"):
        assert (out / name).is_file(), name
    assert result.found_new_types
    size = (out / "report.html").stat().st_size
    assert size < 10_000_000, size


def test_csv_columns_are_documented_in_the_readme(run, fitted):
    readme = (REPO / "README.md").read_text()
    out = run[1] / "out"
    frames = [pd.read_csv(out / n) for n in ("clusters.csv", "new_types.csv",
                                              "features_by_cluster.csv")]
    frames += [pd.read_csv(fitted[0].path / n) for n in ("examples.csv",)]
    for frame in frames[:3]:
        for col in frame.columns:
            assert f"`{col}`" in readme, col
    assert "`examples.csv`" in readme


def test_page_numbers_agree_with_the_csv_tables(run, model):
    _, root = run
    out = root / "out"
    page = Page((out / "report.html").read_text())
    clusters = pd.read_csv(out / "clusters.csv", keep_default_na=False)
    types = pd.read_csv(out / "new_types.csv", keep_default_na=False)
    features = pd.read_csv(out / "features_by_cluster.csv", keep_default_na=False)
    cards = {(c["data-kind"], c["data-group"]): int(c["data-records"]) for c in page.cards}
    known = clusters[(clusters["cluster"] >= 0) & (clusters["members"] > 0)]
    expected = {("cluster", r.name): int(r.members) for r in known.itertuples()}
    expected |= {("new_type", r.new_type): int(r.records) for r in types.itertuples()}
    summary = json.loads((out / "summary.json").read_text())
    if summary["verdicts"]["outlier"]:
        expected[("outlier", "outlier")] = summary["verdicts"]["outlier"]
    assert cards == expected
    # New-type cards come first.
    assert [c["data-kind"] for c in page.cards][:len(types)] == ["new_type"] * len(types)
    top = int(model.config.score.top_features)
    for (kind, group) in expected:
        rows = features[(features["kind"] == kind) & (features["group"] == group)]
        rows = rows[rows["rank"] <= top].sort_values("rank")
        shown = [(f, e) for g, f, e in page.features if g == group]
        assert shown == [(r.feature, f"{float(r.effect):+.2f}") for r in rows.itertuples()]


def test_feature_profile_finds_what_sets_errors_apart(run):
    features = pd.read_csv(run[1] / "out" / "features_by_cluster.csv")
    ranks = features.groupby(["kind", "group"])["rank"].apply(sorted)
    n = features["feature"].nunique()
    assert all(list(r) == list(range(1, n + 1)) for r in ranks)
    # The synthetic failed handshakes send no bytes back: that must stand out.
    e2 = features[(features["group"] == "error_type_2")]
    top = e2[e2["rank"] <= 5]
    assert {"bytes_in", "packets_in"} & set(top["feature"])
    row = e2[e2["feature"] == "bytes_in"].iloc[0]
    assert row["effect"] < -1 and row["median"] < row["good_median"]


def test_map_draws_every_record_of_a_small_run(run):
    result, root = run
    page = (root / "out" / "report.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert data["map"]["points"] == sum(t["n"] for t in data["map"]["traces"])
    # Every group is under its capacity, except the good cluster (2,000 kept).
    clusters = pd.read_csv(root / "out" / "clusters.csv")
    expected = sum(min(int(m), collect.CAPACITY["cluster"]) for m in clusters["members"])
    expected += result.summary["verdicts"]["new_error"] + result.summary["verdicts"]["outlier"]
    assert data["map"]["points"] == expected
    assert f'data-points="{expected}"' in page
    # the hover ends with the record's scores, ts_anomaly (the triage order) among them
    assert data["map"]["fields"][-3:] == ["ts_novelty", "ts_anomaly", "ts_strength"]
    scored = pd.concat([pd.read_parquet(o) for _, o, _ in result.outputs])
    at = data["map"]["fields"].index("ts_anomaly")
    trace = next(t for t in data["map"]["traces"] if t["cols"][at] is None)
    shown = [float(v) for v in trace["dicts"][at] if v != ""]
    assert shown and min(shown) >= 0 and max(shown) <= scored["ts_anomaly"].max() * 1.01


def test_nothing_is_loaded_from_the_network(run, fitted):
    for path in (run[1] / "out" / "report.html", fitted[0].path / "report.html"):
        text = path.read_text()
        page = Page(text)
        assert page.resources == [], page.resources
        assert "default-src 'none'" in page.csp
        assert all("src" not in s for s in page.scripts)
        assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", text, re.I)
        assert not re.search(r"@import", text)


def test_values_from_data_appear_only_escaped(run):
    text = (run[1] / "out" / "report.html").read_text()
    assert XSS not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # shown, as text
    assert len(Page(text).scripts) == 3  # data, plotly.js, the page's own script


def test_report_command_renders_a_scored_folder_again_with_the_same_numbers(run, tmp_path):
    _, root = run
    out = root / "out"
    again = report(out, tmp_path / "again.html")
    # byte for byte: the CSP names the scripts by hash, nothing random goes in
    assert (out / "report.html").read_bytes() == again.read_bytes()


def test_report_command_cli(run, fitted, tmp_path):
    _, root = run
    res = CliRunner().invoke(main, ["report", str(root / "out"), "--out",
                                    str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"report: {tmp_path / 'r.html'}"
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert "neither a model folder (no manifest.json) nor a scoring output folder" in res.output


def test_second_run_shows_what_changed_and_the_trend(model, run, tmp_path):
    _, root = run
    (root / "in2").mkdir(exist_ok=True)
    synth.generate(rows=600, seed=3).to_parquet(root / "in2" / "b.parquet", index=False)
    state = root / "out" / "trafficsiam-state.db"
    second = score(model, root / "in2", tmp_path / "out2", config=CFG, state=state,
                   quiet=True)
    text = (tmp_path / "out2" / "report.html").read_text()
    first_id = json.loads((root / "out" / "summary.json").read_text())["run_id"]
    assert f"Previous run {first_id}" in text and 'id="changes"' in text
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    bars = {t["name"]: sum(t["y"]) for t in data["trend"]["data"]}
    assert bars["good"] >= second.summary["verdicts"]["good"] + 1  # both runs counted


def test_no_report_skips_the_page_only(model, tmp_path):
    synth.generate(rows=400, seed=2).to_parquet(tmp_path / "a.parquet", index=False)
    synth.generate(rows=400, seed=3).to_parquet(tmp_path / "b.parquet", index=False)
    score(model, tmp_path / "a.parquet", tmp_path / "out", config=CFG, quiet=True)
    assert (tmp_path / "out" / "report.html").is_file()
    score(model, tmp_path / "b.parquet", tmp_path / "out", config=CFG, quiet=True,
          report=False)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    # No page of the earlier run left beside this run's tables.
    assert "report.html" not in names and "features_by_cluster.csv" in names


# --- a model's report ------------------------------------------------------------------------


def test_fit_writes_the_model_report_listed_and_hashed(fitted):
    result, _ = fitted
    files = result.manifest["files"]
    for name in ("report.html", "features_by_cluster.csv", "examples.csv"):
        assert files[name] == artifact.sha256_file(result.path / name)
    page = Page((result.path / "report.html").read_text())
    table = pd.read_csv(result.path / "clusters.csv")
    assert {c["data-group"] for c in page.cards} == set(table["name"])
    assert {c["data-group"]: int(c["data-records"]) for c in page.cards} == dict(
        zip(table["name"], table["size"], strict=True))


def test_report_model_folder_writes_beside_it_and_leaves_it_loadable(fitted, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(fitted[0].path, folder)
    path = report(folder)
    assert path == tmp_path / "m.report.html" and path.stat().st_size < 10_000_000
    api.load(folder)
    text = path.read_text()
    assert 'id="curves"' in text and "validation loss" in text


def test_model_page_says_which_anomaly_distance_and_why(fitted, tmp_path):
    """The page's tiles name the ts_anomaly distance the fit chose and its evidence; a
    manifest without the choice (format 3 wrote none; format 5 is the oldest read) is
    refused in one line by the manifest's schema, not half rendered."""
    import shutil

    manifest = fitted[0].manifest
    text = (fitted[0].path / "report.html").read_text()
    inputs = f"{manifest['anomaly']['failure_inputs']:.1f}"
    assert "ts_anomaly distance" in text and "Euclidean" in text
    assert f"chosen at fit: known failures differ in {inputs} inputs at once" in text
    folder = tmp_path / "old"
    shutil.copytree(fitted[0].path, folder)
    old = json.loads((folder / "manifest.json").read_text())
    del old["anomaly"]
    (folder / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(ArtifactError, match=r"field 'anomaly' is missing; restore the model "
                                            r"folder or refit the model"):
        report(folder, tmp_path / "old.html")
    assert not (tmp_path / "old.html").exists()


def test_a_model_fitted_before_reports_still_gets_a_page(fitted, tmp_path):
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(fitted[0].path, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("report.html", "features_by_cluster.csv", "examples.csv"):
        (folder / name).unlink()
        del manifest["files"][name]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    page = Page(report(folder, tmp_path / "old.html").read_text())
    assert len(page.cards) == len(fitted[0].clusters) and page.features == []
    assert "fitted before feature profiles were stored" in (tmp_path / "old.html").read_text()


def test_unknown_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="neither a model folder"):
        report(tmp_path)


def test_numbers_read_as_a_person_writes_them():
    from trafficsiam.report.cards import number, percent

    assert [number(13810.4), number(0.001234567), number(3.0), number(12)] == [
        "13,810", "0.001235", "3", "12"]
    assert percent(0.1234) == "12.3%" and number(float("nan")) == ""
    from trafficsiam.report.cards import cell

    assert cell("2026-11-01 06:11:01.781863111+00:00") == "2026-11-01 06:11:01+00:00"
    assert cell(None) == "" and cell("f0001") == "f0001"


def test_a_three_dimensional_embedding_is_mapped_as_itself():
    rng = np.random.default_rng(1)
    ref = rng.random((50, 3))
    p = figures.Projection.fit(ref)
    trace = figures.map_trace("c", "#000", "good", p(ref), ["f"], pd.DataFrame({"f": [1] * 50}))
    figure = figures.map_figure([trace], p, ["f"])
    assert figure["dims"] == 3 and figure["axes"] == ["e0", "e1", "e2"]
    assert len(trace["z"]) == 50 and figure["points"] == 50


@pytest.mark.parametrize("command", ["fit", "score"])
def test_no_report_flag_reaches_the_library(command, monkeypatch, tmp_path):
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(api, command, fake)
    if command == "score":
        monkeypatch.setattr(api, "load", lambda path: type("A", (), {
            "config": type("C", (), {"score": ScoreConfig()})()})())
        args = ["score", str(tmp_path), "x.parquet", "--out", str(tmp_path / "o")]
    else:
        args = ["fit", "x.parquet", "--out", str(tmp_path / "m")]
    for flag, want in (([], True), (["--no-report"], False)):
        res = CliRunner().invoke(main, [*args, *flag])
        assert res.exit_code == 2 and seen["report"] is want, res.output


def test_since_the_previous_run_compares_shares_not_counts():
    from trafficsiam.report.run_report import changes

    def run(records, known):
        return {"records": records, "model": {"id": "m"}, "new_types": [],
                "verdicts": {"good": records - known, "known_error": known,
                             "new_error": 0, "outlier": 0},
                "clusters": [{"cluster": 0, "is_good": False, "scenario": "dos",
                              "known_error": known}]}

    rows = {r["what"]: r for r in changes(run(10_000, 1_000), run(2_000, 200))}
    # a batch five times smaller with the same share of DoS is no change
    assert rows["known error dos"]["before"] == rows["known error dos"]["now"] == "10.0%"
    assert rows["known error dos"]["delta"] == "+0.0 points"
    assert rows["share known error"]["delta"] == "+0.0 points"


def test_a_value_never_seen_at_fit_is_named_new_not_other(model, tmp_path):
    (tmp_path / "in").mkdir()
    frame = synth.generate(rows=2000, seed=12, novel=True)
    unseen = frame["scenario"] == "error_type_3"
    frame.loc[unseen, "service"] = "RST"
    frame.to_parquet(tmp_path / "in" / "a.parquet", index=False)
    score(model, tmp_path / "in", tmp_path / "out", config=CFG, quiet=True)
    features = pd.read_csv(tmp_path / "out" / "features_by_cluster.csv")
    named = features[features["feature"] == "service=RST (new)"].set_index("group")
    # one row per group; most of some group holds it, where good traffic rarely does
    assert len(named) == features["group"].nunique()
    holder = named["share"].idxmax()
    assert named.loc[holder, "share"] > 0.5 > 5 * named.loc[holder, "good_share"]
    assert named.loc[holder, "rank"] <= 3
    other = features[(features["feature"] == "service=(other)") & (features["group"] == holder)]
    assert other["share"].max() < 0.5  # not counted in (other) as well
    page = Page((tmp_path / "out" / "report.html").read_text())
    assert any(f == "service=RST (new)" for _, f, _ in page.features)
    # the candidate holding those records says so in summary.json and new_types.csv,
    # where the model's input is still "(other)"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    texts = [t["top_features"] for t in summary["new_types"]]
    assert any("service=(other): RST (new)" in text for text in texts), texts
    assert any(f.get("new_values") == ["RST"] for t in summary["new_types"]
               for f in t["features"])
    table = pd.read_csv(tmp_path / "out" / "new_types.csv")
    assert table["top_features"].str.contains("RST (new)", regex=False).any()


def _profile_frame() -> tuple[object, pd.DataFrame, np.ndarray]:
    from trafficsiam.config import NormaliseConfig
    from trafficsiam.normalise import Normaliser
    from trafficsiam.validate import FeatureSchema

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"n": np.r_[rng.normal(10, 1, 200), rng.normal(1000, 50, 100),
                                     rng.normal(10, 1, 50)],
                          "c": ["a"] * 350})
    cluster = np.r_[np.zeros(200, int), np.ones(100, int), np.full(50, 2)]
    norm = Normaliser.fit(frame, FeatureSchema(("n",), ("c",)), NormaliseConfig())
    return norm, frame, cluster


def test_a_good_cluster_is_compared_with_the_other_good_records_not_itself():
    from trafficsiam.report.profile import OTHER_GOOD, feature_profile, rest_of_good

    norm, frame, cluster = _profile_frame()
    x, _ = norm.transform(frame)
    good_rows = cluster < 2  # clusters 0 and 1 are good, 2 an error
    good = Members("good", "good", -1, frame[good_rows], x[good_rows])
    groups = [Members("cluster", f"c{c}", c, frame[cluster == c], x[cluster == c])
              for c in range(3)]
    own = {c: rest_of_good(good, cluster[good_rows] == c) for c in (0, 1)}
    profile = feature_profile(norm, groups, good, own).set_index(["group", "feature"])
    assert profile.loc[("c0", "n"), "versus"] == profile.loc[("c1", "n"), "versus"] == OTHER_GOOD
    assert profile.loc[("c0", "n"), "effect"] < -3 < 3 < profile.loc[("c1", "n"), "effect"]
    assert profile.loc[("c0", "n"), "good_records"] == 100
    assert profile.loc[("c2", "n"), "versus"] == "good"  # an error: all good traffic
    # one good cluster that is all of good traffic has nothing to be compared with
    alone = feature_profile(norm, groups[:1], groups[0], {0: rest_of_good(
        groups[0], np.ones(200, bool))})
    assert alone.empty


def test_a_good_card_without_a_profile_says_why_instead_of_zero_effects():
    rows = [{"feature": "n", "type": "numeric", "effect": 0.0, "median": 1.0,
             "good_median": 1.0, "versus": "good"}]  # a table from before: good vs itself
    part = cards.features_part(rows, good_cluster=True)
    assert part["features"] == [] and "compared with" in part["features_note"]
    assert cards.features_part(rows, good_cluster=False)["features"][0]["feature"] == "n"


def test_good_cluster_cards_of_a_run_compare_with_other_good_or_show_none(run, model):
    features = pd.read_csv(run[1] / "out" / "features_by_cluster.csv")
    good_names = set(model.clusters.loc[model.clusters["is_good"].astype(bool), "name"])
    of_good = features[features["group"].isin(good_names)]
    assert set(of_good["versus"]) <= {"other good"}
    assert set(features.loc[~features["group"].isin(good_names), "versus"]) == {"good"}
    page = Page((run[1] / "out" / "report.html").read_text())
    shown = [(g, e) for g, _, e in page.features if g in good_names]
    assert not shown or any(e not in ("+0.00", "-0.00") for _, e in shown)


def test_one_scenario_has_one_colour_on_every_page(model):
    known, good = model.manifest["scenarios"], model.manifest["good_label"]
    rule = figures.scenario_colors(known, good, ["never-seen"])
    by_cluster = cards.colors(model.clusters, known)  # the score and model pages
    errors = model.clusters[(model.clusters["cluster"] >= 0) & ~model.clusters["is_good"]]
    assert len(errors) and all(by_cluster[int(r.cluster)] == rule[str(r.scenario)]
                               for r in errors.itertuples())
    assert rule[good] == figures.PALETTE_GOOD[0] and rule["never-seen"] in figures.PALETTE_NEW
    # a promoted scenario is appended to the model's: the others keep their colours
    promoted = figures.scenario_colors([*known, "dns-amplification"], good)
    assert {k: promoted[k] for k in rule if k != "never-seen"} == {
        k: v for k, v in rule.items() if k != "never-seen"}


# -- every page the product writes: one base template, its CSP, data only as text ------

LINK = "<a href=x>y</a>"


class _Elements(HTMLParser):
    """Every element of a page: (tag, attributes), and the bodies of its scripts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies.append(data)


def assert_markup_shown_as_text(text: str, shown: str = LINK) -> None:
    """The page has the base template's CSP, no element made from data, and shows the
    data's markup as text."""
    page = _Elements(text)
    csp = [a.get("content") or "" for t, a in page.elements
           if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and "default-src 'none'" in csp[0] and "'unsafe-inline'" not in (
        csp[0].split("script-src")[1].split(";")[0])
    assert not [a for t, a in page.elements if t == "a" and a.get("href") == "x"]
    assert "alert(1)" not in [b.strip() for b in page.script_bodies]
    assert LINK not in text and XSS not in text
    assert shown.replace("<", "&lt;").replace(">", "&gt;") in text  # shown, as text


def test_the_evaluate_page_shows_labels_only_as_text(model, tmp_path):
    from trafficsiam.measure.evaluate import evaluate

    frame = synth.generate(rows=400, seed=21, novel=True)
    frame.loc[frame.index % 3 == 0, "scenario"] = LINK
    frame.loc[frame.index % 5 == 0, "scenario"] = XSS
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    evaluate(model, tmp_path / "t.parquet", tmp_path / "ev", quiet=True)
    assert_markup_shown_as_text((tmp_path / "ev" / "evaluate.html").read_text())


def test_the_comparison_page_shows_names_only_as_text():
    from trafficsiam.measure import compare

    cols = [*compare.METRICS, "fit_seconds"]
    table = pd.DataFrame([{"method": name, "kind": kind, "seeds": 1,
                           **{f"{c}_{s}": 0.5 for c in cols for s in ("mean", "std")}}
                          for name, kind in ((LINK, "loss"), (XSS, "baseline"))])
    view = {"test": {"x": [0.0, 1.0], "y": [0.0, 1.0], "label": [LINK, XSS],
                     "known": [True, False]},
            "frames": [np.zeros((2, 2))], "frame_labels": [LINK, XSS]}
    text = compare.report_page(table, {LINK: view}, [LINK], [XSS], [0])
    assert_markup_shown_as_text(text)


def test_the_index_page_shows_runs_only_as_text():
    from trafficsiam.report.index_page import index_page

    runs = [{"run_id": LINK, "finished": XSS, "model": {"id": LINK}, "records": 10,
             "verdicts": {"good": 8, "new_error": 2}, "page": None,
             "new_types": [{"new_type": LINK, "records": 2}]}]
    assert_markup_shown_as_text(index_page(LINK, runs, None))


def test_the_run_and_model_pages_show_data_only_as_text(run, model, tmp_path):
    from trafficsiam.report import model_report

    assert_markup_shown_as_text((run[1] / "out" / "report.html").read_text(), shown=XSS)
    clusters = model.clusters.copy()
    clusters["name"] = clusters["name"].astype(str) + LINK
    reference = model.reference.copy()
    reference["scenario"] = XSS
    page = model_report.model_page({**model.manifest, "label_column": LINK}, clusters,
                                   pd.DataFrame(model.manifest["training"]["history"]),
                                   reference, None, None)
    assert_markup_shown_as_text(page)


def test_every_page_template_extends_the_base_template_with_the_csp():
    folder = REPO / "trafficsiam" / "report" / "templates"
    pages = sorted(p.name for p in folder.glob("*.html.j2")
                   if p.name not in ("report_base.html.j2", "report_macros.html.j2"))
    assert {"compare.html.j2", "evaluate.html.j2", "index.html.j2", "report_model.html.j2",
            "report_run.html.j2"} <= set(pages)
    for name in pages:
        first = (folder / name).read_text().splitlines()[0]
        assert first == '{% extends "report_base.html.j2" %}', name
    assert "Content-Security-Policy" in (folder / "report_base.html.j2").read_text()
