"""The report of one scoring run: its tables (clusters.csv, new_types.csv,
features_by_cluster.csv) and its page (report.html).

`run_tables` turns what pass 2 collected (`collect.RecordSample`) into the tables;
`run_page` renders them with the map, the cards and the trend over the state's runs.
`trafficsiam score` calls both; `trafficsiam report SCORED_DIR` (`report_scored`) reads
the scored files again through the same collector, which keeps the same rows, so its page
shows the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trafficsiam import artifact, read, write
from trafficsiam.artifact import Artifact
from trafficsiam.contract import (
    CLUSTERS_CSV,
    NEW_TYPES_CSV,
    REPORT_HTML,
    STATE_NAME,
    SUMMARY,
    VERDICTS,
)
from trafficsiam.errors import ArtifactError, InputError
from trafficsiam.model import embed, one_thread
from trafficsiam.report import cards, collect, figures
from trafficsiam.report.collect import CLUSTER, GOOD, NEW_TYPE, OUTLIER, RecordSample
from trafficsiam.report.profile import Members, feature_profile, rest_of_good, top_features
from trafficsiam.state import StateStore

# Fewer good records than this in a run: profiles compare with the model's held-out good.
MIN_GOOD = 30
HOVER_FEATURES = 3  # categorical and numeric features each shown on hover
EXAMPLES = 3  # example records per known cluster card


@dataclass
class RunTables:
    summary: dict[str, Any]
    clusters: pd.DataFrame  # clusters.csv
    new_types: pd.DataFrame  # new_types.csv
    features: pd.DataFrame  # features_by_cluster.csv
    members: dict[tuple[str, str], Members]
    good_reference: str  # which good records the profiles compare with


def _label_columns(counts: dict[str, int] | None) -> dict[str, Any]:
    if not counts:
        return {"label_majority": "", "label_purity": np.nan, "label_mix": ""}
    total = sum(counts.values())
    top = min(counts, key=lambda k: (-counts[k], k))
    return {"label_majority": top, "label_purity": round(counts[top] / total, 4),
            "label_mix": json.dumps(dict(sorted(counts.items())), sort_keys=True)}


def _members(art: Artifact, sample: RecordSample, kind: str, name: str, display: str,
             cluster: int) -> Members:
    frame = sample.frame(kind, name)
    feats = frame[sample.features] if len(frame) else pd.DataFrame(columns=sample.features)
    if len(frame):
        x, _ = art.normaliser.transform(feats)
    else:
        x = np.zeros((0, art.normaliser.n_features), np.float32)
    return Members(kind, display, cluster, frame, x)


def run_tables(art: Artifact, sample: RecordSample, summary: dict[str, Any],
               clusters: pd.DataFrame, new_types: pd.DataFrame) -> RunTables:
    """The run's CSV tables: `clusters` and `new_types` (as `scoring.tables.summarise` makes them)
    gain the members' strength and label mix; the feature profile of every group."""
    names = art.cluster_names
    members: dict[tuple[str, str], Members] = {}
    for (kind, name) in sorted(sample.groups, key=_group_order):
        if kind == GOOD:
            continue
        cluster = int(name) if kind == CLUSTER else -1
        display = names.get(cluster, "none") if kind == CLUSTER else name
        members[(kind, name)] = _members(art, sample, kind, name, display, cluster)
    good = _members(art, sample, GOOD, GOOD, "good", -1)
    reference = f"{len(good.x):,} good records of this run (a sample)"
    if len(good.x) < MIN_GOOD:
        holdout_good = (art.holdout["scenario"] == art.manifest["good_label"]).to_numpy()
        good = Members(GOOD, "good", -1, pd.DataFrame(columns=sample.features),
                       art.inputs["holdout"][holdout_good])
        reference = f"{len(good.x):,} held-out good records of the model's training data"
    good_cluster = (good.raw["ts_cluster"].to_numpy(np.int64) if "ts_cluster" in good.raw
                    else np.full(len(good.raw), -2))
    own = {int(c): rest_of_good(good, good_cluster == int(c))
           for c in art.clusters.loc[art.clusters["is_good"].astype(bool), "cluster"]}
    features = feature_profile(art.normaliser, list(members.values()), good, own)

    clusters = clusters.copy()
    extra = []
    for row in clusters.itertuples():
        group = sample.groups.get((CLUSTER, str(int(row.cluster))))
        n = group.records if group else 0
        extra.append({
            "members": int(row.good + row.known_error),
            "mean_strength": round(group.strength_sum / n, 4) if group and n else np.nan,
            **_label_columns(group.labels if group else None),
        })
    clusters = pd.concat([clusters, pd.DataFrame(extra, index=clusters.index)], axis=1)
    new_types = new_types.copy()
    extra = [_label_columns(sample.groups[(NEW_TYPE, t)].labels
                            if (NEW_TYPE, t) in sample.groups else None)
             for t in new_types["new_type"]]
    new_types = pd.concat([new_types, pd.DataFrame(
        extra, index=new_types.index, columns=["label_majority", "label_purity", "label_mix"])],
        axis=1)
    return RunTables(summary, clusters, new_types, features, members, reference)


def _group_order(key: tuple[str, str]) -> tuple[int, Any]:
    kind, name = key
    rank = {NEW_TYPE: 0, CLUSTER: 1, OUTLIER: 2, GOOD: 3}[kind]
    if kind == CLUSTER:
        return rank, int(name)
    if kind == NEW_TYPE and name.startswith("new-") and name[4:].isdigit():
        return rank, int(name[4:])
    return rank, name


# --- the page ------------------------------------------------------------------------------


# The per-record scores shown on the map's hover, after the features.
SCORES = ("ts_novelty", "ts_anomaly", "ts_strength")


def _hover_fields(sample: RecordSample, frames: list[pd.DataFrame]) -> list[str]:
    context = [c for c in (frames[0].columns if frames else [])
               if c not in sample.features and c not in collect.TS_KEPT
               and c not in (collect.FILE, collect.ROW)]
    numeric = [c for c in sample.features if c in sample.numeric][:HOVER_FEATURES]
    categorical = [c for c in sample.features if c not in sample.numeric][:HOVER_FEATURES]
    return [*context, *categorical, *numeric, *SCORES]


def _map(art: Artifact, run: RunTables, sample: RecordSample, color_of: dict[int, str]
         ) -> dict[str, Any]:
    projection = figures.Projection.fit(art.reference[art.embedding_columns].to_numpy())
    available = {f"{k}:{n}": len(m.x) for (k, n), m in run.members.items()}
    firsts = [f"{k}:{n}" for (k, n) in run.members if k == NEW_TYPE]
    drawn = figures.allocate(available, figures.MAX_POINTS, firsts)
    fields = _hover_fields(sample, [m.raw for m in run.members.values()])
    traces = []
    for i, ((kind, name), m) in enumerate(run.members.items()):
        n = drawn[f"{kind}:{name}"]
        if n == 0:
            continue
        coords = projection(embed(art.model, m.x[:n]))
        values = m.raw.iloc[:n].copy()
        values["cluster"] = m.group
        if kind == NEW_TYPE:
            color = figures.PALETTE_NEW[i % len(figures.PALETTE_NEW)]
            trace = figures.map_trace(f"{m.group} (candidate)", color, "new_error", coords,
                                      ["cluster", *fields], values, "diamond", 8, True)
        elif kind == OUTLIER:
            trace = figures.map_trace("outlier", figures.VERDICT_COLORS["outlier"], "outlier",
                                      coords, ["cluster", *fields], values, "x", 5)
        else:
            good = bool(art.clusters.set_index("cluster").loc[m.cluster, "is_good"]) \
                if m.cluster in set(art.clusters["cluster"]) else False
            trace = figures.map_trace(m.group, color_of.get(m.cluster, "#7f7f7f"),
                                      "good" if good else "known_error", coords,
                                      ["cluster", *fields], values)
        trace["group"] = figures.text(m.group)
        traces.append(trace)
    return figures.map_figure(traces, projection, ["cluster", *fields])


def _record_dicts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in (collect.FILE, collect.ROW)}
            for r in frame.to_dict(orient="records")]


def _card(run: RunTables, art: Artifact, sample: RecordSample, key: tuple[str, str],
          color: str, top: int) -> dict[str, Any]:
    kind, name = key
    m = run.members[key]
    total = max(int(run.summary["records"]), 1)
    group = sample.groups[key]
    stats: list[tuple[str, str]] = []
    context = [c for c in _hover_fields(sample, [m.raw])
               if c not in sample.features and c not in SCORES]
    example_cols = [*context, "ts_novelty", "ts_anomaly", *sample.features]
    mix = cards.mix_rows(group.labels) if group.labels else []
    is_good = False
    if kind == NEW_TYPE:
        row = run.new_types.set_index("new_type").loc[name]
        records = int(row["records"])
        s: dict[str, Any] = next(
            (t for t in run.summary.get("new_types", []) if t["new_type"] == name), {})
        stats += [("records", cards.number(records)), ("share", cards.percent(records / total)),
                  ("nearest known cluster", str(row["nearest_known"])),
                  ("median novelty", cards.number(float(row["median_novelty"]))),
                  ("clustered in the run's sample", cards.number(int(row["sample_records"])))]
        examples = [e.get("record", {}) for e in s.get("examples", [])]
        title, badge = name, "candidate new error type"
    elif kind == OUTLIER:
        records = group.records
        stats += [("records", cards.number(records)), ("share", cards.percent(records / total))]
        ex = m.raw.sort_values("ts_novelty", ascending=False, kind="stable").head(EXAMPLES)
        examples = _record_dicts(ex)
        title, badge = "outlier", "unexplained, scattered"
    else:
        row = run.clusters.set_index("cluster").loc[m.cluster]
        records = int(row["members"])
        fit = art.clusters.set_index("cluster").loc[m.cluster] \
            if m.cluster in set(art.clusters["cluster"]) else None
        stats += [("records", cards.number(records)), ("share", cards.percent(records / total)),
                  ("mean membership strength", cards.number(float(row["mean_strength"])))]
        if not pd.isna(row["label_purity"]):
            stats.append(("purity (labels in the input)", cards.percent(row["label_purity"])))
        if fit is not None:
            stats.append(("purity at fit", cards.percent(float(fit["purity"]))))
        flagged = int(row["new_error"] + row["outlier"])
        if flagged:
            stats.append(("flagged records nearest to it", cards.number(flagged)))
        if not mix and fit is not None:
            mix = cards.mix_rows(cards.parse_mix(fit["mix"]))
        ex = m.raw.sort_values("ts_strength", ascending=False, kind="stable").head(EXAMPLES)
        examples = _record_dicts(ex)
        title = m.group
        is_good = bool(row["is_good"])
        badge = "good traffic" if is_good else f"known error: {row['scenario']}"
    return {
        "kind": kind, "group": m.group, "title": title, "badge": badge, "color": color,
        "highlight": kind == NEW_TYPE, "records": records, "stats": stats, "mix": mix,
        "mix_title": "labels in the input" if group.labels else "scenarios at fit",
        **cards.features_part(top_features(run.features, kind, m.group, top),
                              kind == CLUSTER and bool(is_good)),
        "profiled": len(m.x),
        "examples": cards.example_table(examples, example_cols),
    }


def _trend(history: list[dict[str, Any]], summary: dict[str, Any]) -> pd.DataFrame:
    runs = [(str(r.get("started") or ""), r["summary"]) for r in history
            if r.get("summary") and r["run_id"] != summary["run_id"]]
    runs.append((str(summary.get("finished") or ""), summary))
    rows = [{"day": started[:10], **s.get("verdicts", {})} for started, s in runs]
    frame = pd.DataFrame(rows).fillna(0)
    for v in VERDICTS:
        if v not in frame:
            frame[v] = 0
    return frame.groupby("day", as_index=False)[list(VERDICTS)].sum()


def _known_errors(clusters: pd.DataFrame) -> dict[str, int]:
    errors = clusters[(clusters["cluster"] >= 0) & ~clusters["is_good"].astype(bool)]
    return {str(k): int(v) for k, v in errors.groupby("scenario")["known_error"].sum().items()}


def changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[dict[str, str]]:
    """What moved between the previous run of the same state and this one."""
    if not previous:
        return []
    rows = []

    def share(s: dict[str, Any], v: str) -> float:
        return s.get("verdicts", {}).get(v, 0) / max(int(s.get("records", 0)), 1)

    rows.append({"what": "records", "before": cards.number(previous.get("records", 0)),
                 "now": cards.number(current["records"]), "delta": ""})
    for v in VERDICTS:
        a, b = share(previous, v), share(current, v)
        rows.append({"what": f"share {v.replace('_', ' ')}", "before": cards.percent(a),
                     "now": cards.percent(b), "delta": f"{100 * (b - a):+.1f} points"})
    before = _known_errors(pd.DataFrame(previous.get("clusters", [])
                                        or [{"cluster": -1, "is_good": False,
                                             "scenario": "", "known_error": 0}]))
    now = _known_errors(pd.DataFrame(current["clusters"]))
    # shares of each run's records: a smaller batch is not fewer errors
    n_before = max(int(previous.get("records", 0)), 1)
    n_now = max(int(current["records"]), 1)
    for t in sorted(set(before) | set(now)):
        a, b = before.get(t, 0) / n_before, now.get(t, 0) / n_now
        if a or b:
            rows.append({"what": f"known error {t}", "before": cards.percent(a),
                         "now": cards.percent(b), "delta": f"{100 * (b - a):+.1f} points"})
    a, b = len(previous.get("new_types", [])), len(current.get("new_types", []))
    rows.append({"what": "candidate new error types", "before": cards.number(a),
                 "now": cards.number(b), "delta": f"{b - a:+,}"})
    if previous.get("model", {}).get("id") != current["model"]["id"]:
        rows.append({"what": "model", "before": str(previous.get("model", {}).get("id")),
                     "now": str(current["model"]["id"]), "delta": "changed"})
    return rows


def _set_aside_text(summary: dict[str, Any]) -> str:
    """What the outliers tile adds for dense groups that are no candidate: as many records
    as the decision's own false alarms put there (`newtypes.NewTypes.set_aside`)."""
    groups = summary.get("new_types_set_aside") or []
    if not groups:
        return ""
    share = sum(g["share"] for g in groups)
    return (f"; {len(groups)} dense group(s), {share:.2%} of the records, no candidate: "
            "no more than the false alarms expected there at this rate")


def run_page(art: Artifact, run: RunTables, sample: RecordSample,
             history: list[dict[str, Any]]) -> str:
    """The scoring run's page; `history` is the state's finished runs, oldest first."""
    summary = run.summary
    total = max(int(summary["records"]), 1)
    verdicts = summary["verdicts"]
    color_of = cards.colors(art.clusters, art.manifest["scenarios"])
    top = int(art.config.score.top_features)
    new_keys = [k for k in run.members if k[0] == NEW_TYPE]
    new_cards = [_card(run, art, sample, k, figures.PALETTE_NEW[i % len(figures.PALETTE_NEW)],
                       top) for i, k in enumerate(run.members) if k[0] == NEW_TYPE]
    known = [k for k in run.members if k[0] == CLUSTER]
    known.sort(key=lambda k: -run.clusters.set_index("cluster").loc[int(k[1]), "members"])
    cluster_cards = [_card(run, art, sample, k, color_of.get(int(k[1]), "#7f7f7f"), top)
                     for k in known]
    if (OUTLIER, OUTLIER) in run.members:
        cluster_cards.append(_card(run, art, sample, (OUTLIER, OUTLIER),
                                   figures.VERDICT_COLORS["outlier"], top))
    previous = next((r for r in reversed(history)
                     if r["run_id"] != summary["run_id"] and r.get("summary")), None)
    known_errors = [{"type": t, "records": cards.number(n), "share": cards.percent(n / total)}
                    for t, n in sorted(_known_errors(run.clusters).items(),
                                       key=lambda kv: (-kv[1], kv[0]))]
    tiles = [
        ("records", cards.number(summary["records"]), ""),
        ("good", cards.percent(verdicts["good"] / total), f"{verdicts['good']:,} records"),
        ("known errors", cards.percent(verdicts["known_error"] / total),
         f"{verdicts['known_error']:,} records"),
        ("candidate new error types", cards.number(len(new_keys)),
         f"{verdicts['new_error']:,} records"),
        ("outliers", cards.percent(verdicts["outlier"] / total),
         f"{verdicts['outlier']:,} records" + _set_aside_text(summary)),
    ]
    with one_thread():  # the projection's SVD and the map's forward passes are small
        figure = _map(art, run, sample, color_of)
    data = {"map": figure, "trend": figures.trend_figure(_trend(history, summary))}
    return cards.page(
        "report_run.html.j2", data,
        title=f"trafficsiam scoring run {summary['run_id']}",
        summary=summary, tiles=tiles, known_errors=known_errors,
        changes=changes(previous["summary"] if previous else None, summary),
        previous=previous, new_cards=new_cards, cluster_cards=cluster_cards,
        good_reference=run.good_reference, map_points=data["map"]["points"],
        capacity=sample.capacity,
    )


# --- trafficsiam report SCORED_DIR --------------------------------------------------------


def resample(art: Artifact, summary: dict[str, Any]) -> RecordSample:
    """The run's `RecordSample` again, from its scored files (the same rows are kept)."""
    sample = RecordSample.for_model(art.manifest)
    for index, entry in enumerate(summary["inputs"]):
        path = Path(entry["output"])
        if not path.is_file():
            raise InputError(f"{path}: scored file of run {summary['run_id']} is missing; "
                             "score the inputs again to report on them")
        for start, table in read.iter_chunks(path, None, art.config.score.batch_size):
            verdict = pc.index_in(table.column("ts_verdict"), value_set=pa.array(VERDICTS))
            new_type = np.asarray(table.column("ts_new_type").to_pylist(), dtype=object)
            sample.add(entry["sha256"], index, start, table,
                       np.asarray(verdict.to_numpy(zero_copy_only=False), np.int64), new_type)
    return sample


_ENRICHED = ("members", "mean_strength", "label_majority", "label_purity", "label_mix")


def report_scored(folder: str | Path, out: str | Path | None = None, *,
                  model: str | Path | None = None, state: str | Path | None = None) -> Path:
    """Render the report of the scoring run in `folder` again (see `trafficsiam.report`)."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{folder / SUMMARY}: unreadable ({err}); score the inputs again "
                         "to write it") from None
    model_path = Path(model) if model is not None else Path(summary["model"]["path"])
    try:
        art = artifact.load(model_path)
    except ArtifactError as err:
        raise ArtifactError(f"{err} (the run in {folder} was scored with model "
                            f"{summary['model']['id']}; pass its folder with --model)") from None
    if art.model_id != summary["model"]["id"]:
        raise InputError(f"{model_path}: is model {art.model_id}, but the run in {folder} was "
                         f"scored with model {summary['model']['id']}; pass that model "
                         "folder with --model")
    clusters = pd.read_csv(folder / CLUSTERS_CSV, keep_default_na=False)
    clusters["is_good"] = clusters["is_good"].astype(str).str.lower() == "true"
    new_types = pd.read_csv(folder / NEW_TYPES_CSV, keep_default_na=False)
    clusters = clusters.drop(columns=[c for c in _ENRICHED if c in clusters])
    new_types = new_types.drop(columns=[c for c in _ENRICHED if c in new_types])
    sample = resample(art, summary)
    run = run_tables(art, sample, summary, clusters, new_types)
    state_path = Path(state) if state is not None else folder / STATE_NAME
    history: list[dict[str, Any]] = []
    if state_path.is_file():
        with StateStore(state_path) as store:
            history = store.summaries()
    page = run_page(art, run, sample, history)
    target = Path(out) if out is not None else folder / REPORT_HTML
    write.text(target, page)
    return target
