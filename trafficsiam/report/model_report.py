"""The report of a fitted model: what each cluster is, and how training went.

At fit, `fit_tables` profiles the clustered training sample (the reference records, whose
raw features and normalised inputs are in memory then) and picks a few example records
per cluster; `write_fit_files` stores both in the model folder (features_by_cluster.csv,
examples.csv) with report.html, before the manifest hashes them. `trafficsiam report
MODEL_DIR` renders the page again from the folder alone (`report_model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam import artifact, write
from trafficsiam.contract import EXAMPLES_CSV, FEATURES_CSV, REPORT_HTML, own_name
from trafficsiam.normalise import Normaliser
from trafficsiam.paths import check_outputs
from trafficsiam.report import cards, figures
from trafficsiam.report.profile import Members, feature_profile, rest_of_good, top_features

EXAMPLES = 3
NOISE = "noise"


def _kind(cluster: int) -> str:
    return "cluster" if cluster >= 0 else NOISE


def fit_tables(normaliser: Normaliser, raw: pd.DataFrame, x: np.ndarray,
               reference: pd.DataFrame, clusters: pd.DataFrame, good_label: str,
               label_column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature profile, example records) of the clustered training sample: `raw` and
    `x` are its raw feature columns and normalised inputs, row for row with `reference`."""
    raw = raw.reset_index(drop=True)
    labels = reference["cluster"].to_numpy(np.int64)
    good = (reference["scenario"] == good_label).to_numpy()
    groups = []
    for row in clusters.sort_values("cluster").itertuples():
        c = int(row.cluster)
        at = np.flatnonzero(labels == c)
        groups.append(Members(_kind(c), str(row.name), c, raw.iloc[at], x[at]))
    good_members = Members("good", "good", -1, raw.iloc[np.flatnonzero(good)], x[good])
    own = {int(row.cluster): rest_of_good(good_members, labels[good] == int(row.cluster))
           for row in clusters.itertuples() if bool(row.is_good)}
    profile = feature_profile(normaliser, groups, good_members, own)
    cluster_col, name_col, row_col = _own_columns([*raw.columns, label_column])
    examples = []
    for row in clusters.sort_values("cluster").itertuples():
        c = int(row.cluster)
        at = np.flatnonzero(labels == c)
        by = reference["outlier_score" if c < 0 else "strength"].to_numpy()[at]
        for i in at[np.argsort(-by, kind="stable")][:EXAMPLES]:
            rec = {cluster_col: c, name_col: str(row.name),
                   row_col: int(reference["row"].iloc[i]),
                   label_column: str(reference["scenario"].iloc[i])}
            rec.update({col: raw[col].iloc[i] for col in raw.columns})
            examples.append(rec)
    return profile, pd.DataFrame(examples)


def _own_columns(taken: list[object]) -> tuple[str, str, str]:
    """examples.csv's first three columns (the cluster, its name, the training row): named
    `cluster`, `name`, `row`, with `_` appended while a feature or the label column has
    that name (the record's own columns keep theirs). Readers take them by position."""
    taken = list(taken)
    own: list[str] = []
    for base in ("cluster", "name", "row"):
        own.append(own_name(base, taken + own))
    return own[0], own[1], own[2]


def model_page(manifest: dict[str, Any], clusters: pd.DataFrame, history: pd.DataFrame,
               reference: pd.DataFrame, features: pd.DataFrame | None,
               examples: pd.DataFrame | None) -> str:
    """The model's page: summary, map of the reference embeddings, cluster cards,
    training curves."""
    dim = int(manifest["model"]["embedding_dim"])
    emb_cols = [f"e{i}" for i in range(dim)]
    projection = figures.Projection.fit(reference[emb_cols].to_numpy())
    color_of = cards.colors(clusters, manifest["scenarios"])
    table = clusters.set_index("cluster")
    labels = reference["cluster"].to_numpy(np.int64)
    label_column = str(manifest["label_column"])
    points = {str(c): int((labels == c).sum()) for c in table.index}
    drawn = figures.allocate(points, figures.MAX_POINTS)
    order = np.random.default_rng(0).permutation(len(reference))  # drawn: a random subset
    fields = ["cluster", label_column, "strength", "outlier score", "training row"]
    traces = []
    for c in sorted(table.index, key=lambda c: (c < 0, c)):
        at = order[labels[order] == c][: drawn[str(c)]]
        if len(at) == 0:
            continue
        values = pd.DataFrame({
            "cluster": str(table.loc[c, "name"]),
            label_column: reference["scenario"].to_numpy()[at],
            "strength": reference["strength"].to_numpy()[at],
            "outlier score": reference["outlier_score"].to_numpy()[at],
            "training row": reference["row"].to_numpy()[at],
        })
        coords = projection(reference[emb_cols].to_numpy()[at])
        verdict = "noise" if c < 0 else ("good" if table.loc[c, "is_good"] else "known_error")
        traces.append(figures.map_trace(str(table.loc[c, "name"]), color_of.get(int(c), "#888"),
                                        verdict, coords, fields, values,
                                        "x" if c < 0 else "circle", 5))
    top = int(manifest["config"]["score"]["top_features"])
    total = max(int(clusters["size"].sum()), 1)
    cluster_col, name_col, row_col = (
        [str(c) for c in examples.columns[:3]] if examples is not None and len(examples.columns)
        else ["cluster", "name", "row"])
    card_list = []
    for c in sorted(table.index, key=lambda c: (c < 0, -int(table.loc[c, "size"]), c)):
        row = table.loc[c]
        name = str(row["name"])
        feats = cards.features_part(
            top_features(features, _kind(int(c)), name, top) if features is not None else [],
            c >= 0 and bool(row["is_good"]))
        ex = (examples[examples[cluster_col] == c] if examples is not None and len(examples)
              else pd.DataFrame())
        for col in manifest["schema"]["numeric"]:  # read back as text: shown as numbers
            if col in ex:
                ex = ex.assign(**{col: pd.to_numeric(ex[col], errors="coerce")})
        records = [{k: v for k, v in r.items() if k not in (cluster_col, name_col)}
                   for r in ex.to_dict(orient="records")]
        ex_cols = [label_column, row_col, *[k for k in (records[0] if records else {})
                                            if k not in (label_column, row_col)]]
        stats = [("records", cards.number(int(row["size"]))),
                 ("share", cards.percent(int(row["size"]) / total))]
        if c >= 0:
            stats += [("purity", cards.percent(float(row["purity"]))),
                      ("mean membership strength", cards.number(float(row["mean_strength"])))]
        card_list.append({
            "kind": _kind(int(c)), "group": name, "title": name,
            "badge": ("left as noise by HDBSCAN" if c < 0 else "good traffic" if row["is_good"]
                      else f"known error: {row['scenario']}"),
            "color": color_of.get(int(c), "#888"), "highlight": False,
            "records": int(row["size"]), "stats": stats,
            "mix": cards.mix_rows(cards.parse_mix(row["mix"])), "mix_title": "scenarios",
            **feats, "profiled": int(points[str(c)]),
            "examples": cards.example_table(records, ex_cols),
        })
    tr, cl = manifest["training"], manifest["clusters"]
    best = tr["history"][tr["best_epoch"] - 1] if tr.get("best_epoch") else tr["history"][-1]
    tiles = [
        ("training records", cards.number(manifest["data"]["rows"]),
         f"{len(manifest['scenarios'])} scenarios"),
        ("clusters", cards.number(int((clusters["cluster"] >= 0).sum())),
         f"on {cl['points']:,} clustered records"),
        ("weighted purity", cards.percent(cl["weighted_purity"]), ""),
        ("in a cluster of their own scenario", cards.percent(cl["explained_share"]),
         f"noise {cards.percent(cl['noise_share'])}"),
        ("epochs", cards.number(tr["epochs_run"]),
         f"best {tr['best_epoch']}" + (", stopped early" if tr["stopped_early"] else "")),
        ("validation loss", cards.number(float(best["val_loss"])),
         f"triplet accuracy {cards.percent(best['val_triplet_accuracy'])}"),
    ]
    tiles.append(_anomaly_tile(manifest))
    dropout = tr.get("input_dropout")  # models before the choice: not recorded
    if dropout:
        rate = float(dropout["rate"])
        tiles.append(("input dropout", "none" if rate == 0 else f"{rate:g}",
                      "set by train.input_dropout" if dropout.get("rule") == "configured"
                      else "chosen at fit, with the ts_anomaly distance's rule"))
    data = {"map": figures.map_figure(traces, projection, fields),
            "curves": figures.curves_figure(history, tr.get("best_epoch"))}
    return cards.page("report_model.html.j2", data,
                      title=f"trafficsiam model {manifest['model_id']}", manifest=manifest,
                      tiles=tiles, cards=card_list, map_points=data["map"]["points"],
                      profiled=features is not None)


def _anomaly_tile(manifest: dict[str, Any]) -> tuple[str, str, str]:
    """Which ts_anomaly distance the model uses, and why (`prototypes.choose_saturation`;
    models before the choice: only what they were calibrated with)."""
    saturation = (manifest.get("anomaly") or {}).get("saturation")
    value = "Euclidean" if saturation is None else f"saturated at {float(saturation):g}"
    anomaly = manifest.get("anomaly") or {}
    if anomaly.get("rule") == "configured":
        return ("ts_anomaly distance", value, "set by score.anomaly_saturation")
    if anomaly.get("failure_inputs") is not None:
        return ("ts_anomaly distance", value,
                f"chosen at fit: known failures differ in {anomaly['failure_inputs']:.1f} "
                f"inputs at once, good traffic in {anomaly['good_inputs']:.1f}")
    if anomaly.get("rule") == "auto":
        return ("ts_anomaly distance", value,
                f"chosen at fit: {anomaly['failure_records']} failure records, too few to choose")
    return ("ts_anomaly distance", value, "")


def write_fit_files(folder: Path, manifest: dict[str, Any], clusters: pd.DataFrame,
                    history: pd.DataFrame, reference: pd.DataFrame, features: pd.DataFrame,
                    examples: pd.DataFrame, html: bool = True) -> list[str]:
    """Write the model folder's report files; returns their names (for the manifest)."""
    write.put_csv(folder / FEATURES_CSV, features)
    write.put_csv(folder / EXAMPLES_CSV, examples)
    names = [FEATURES_CSV, EXAMPLES_CSV]
    if html:
        # Rendered from the files as written, as `report_model` renders them later.
        features, examples = _read_tables(folder)
        page = model_page(manifest, clusters, history, reference, features, examples)
        write.put_text(folder / REPORT_HTML, page)
        names.append(REPORT_HTML)
    return names


def _read_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    features = pd.read_csv(folder / FEATURES_CSV, keep_default_na=False, na_values=[""])
    examples = pd.read_csv(folder / EXAMPLES_CSV, keep_default_na=False, dtype=str)
    if len(examples):  # its first column is the cluster (`_own_columns`)
        examples[examples.columns[0]] = examples[examples.columns[0]].astype(int)
    return features, examples


def report_model(folder: str | Path, out: str | Path | None = None) -> Path:
    """Render the report of the model folder `folder` (verified as `api.load` does) to
    `out`, by default `<folder>.report.html` beside it: the model folder itself only
    holds the files its manifest lists and hashes."""
    art = artifact.load(folder)
    features: pd.DataFrame | None = None
    examples: pd.DataFrame | None = None
    if FEATURES_CSV in art.manifest["files"] and EXAMPLES_CSV in art.manifest["files"]:
        features, examples = _read_tables(art.path)
    history = pd.DataFrame(art.manifest["training"]["history"])
    page = model_page(art.manifest, art.clusters, history, art.reference, features, examples)
    target = Path(out) if out is not None else art.path.parent / f"{art.path.name}.report.html"
    check_outputs([("--out", target)], models=[art.path])
    write.text(target, page)
    return target
