"""A scoring run's tables: summary.json, and the clusters and new types tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from trafficsiam.contract import VERDICTS
from trafficsiam.newtypes import NewTypes, feature_text, with_new_values
from trafficsiam.scoring.batch import Scoring
from trafficsiam.scoring.passes import Examples
from trafficsiam.scoring.plan import Job
from trafficsiam.scoring.tally import Tally
from trafficsiam.state import InputFile


def summarise(
    scoring: Scoring, jobs: list[Job], rows: dict[int, int], tally: Tally,
    new_types: NewTypes, examples: Examples, run_id: str,
    out: Path, skipped: list[InputFile], seconds: float, engine: str,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """(summary.json's content, the clusters table, the new types table) of a run."""
    art = scoring.art
    total = max(tally.rows, 1)
    names = art.cluster_names
    scenario_of, is_good = art.cluster_lookup
    cluster_rows = []
    for c in sorted({c for c, _ in tally.by_cluster} | {c for c in names if c >= 0}):
        counts = {v: tally.by_cluster.get((c, i), 0) for i, v in enumerate(VERDICTS)}
        n = sum(counts.values())
        cluster_rows.append({
            "cluster": c,
            "name": names.get(c, "none") if c >= 0 else "none",
            "scenario": str(scenario_of[c]) if c >= 0 else "",
            "is_good": bool(is_good[c]) if c >= 0 else False,
            "records": n,
            "share": n / total,
            **counts,
        })
    clusters = pd.DataFrame(cluster_rows)

    inputs_of = {j.index: j for j in jobs}
    earlier = {seen.name: seen for seen in scoring.earlier}
    type_rows = []
    for _, row in new_types.table.iterrows():
        name = str(row["new_type"])
        near = {c: k for (t, c), k in tally.by_new_type.items() if t == name}
        size = sum(near.values())
        nearest = max(near, key=lambda c: (near[c], -c)) if near else -1
        exs = new_types.examples.get(name, [])
        # values never seen at fit, named from the candidate's example records (the
        # sample it was found in holds model inputs only, where they are "(other)")
        shown = pd.DataFrame([examples.get(key, {}) for key in exs])
        feats = with_new_values(row["features"],
                                art.normaliser.new_values(shown) if len(shown) else {})
        seen = earlier.get(name)
        before = seen.records if seen is not None else []
        type_rows.append({
            "new_type": name,
            "records": size,
            "share": size / total,
            "first_seen": seen.first_seen if seen is not None else run_id,
            "runs_seen": len(before) + 1,
            "records_before": before[-1][1] if before else 0,
            "sample_records": int(row["sample_records"]),
            "median_novelty": round(float(row["median_novelty"]), 4),
            "nearest_known": names.get(nearest, "none") if nearest >= 0 else "none",
            "top_features": "; ".join(feature_text(f) for f in feats),
            "examples": "; ".join(f"{inputs_of[f].source.path}:{r}" for f, r in exs),
            "_features": feats,
            "_centroid": row["centroid"],
            "_radius": row["radius"],
            "_input_centroid": row["input_centroid"],
            "_input_radius": row["input_radius"],
            "_history": [[r, k] for r, k in before] + [[run_id, size]],
            "_examples": [
                {"input": str(inputs_of[f].source.path), "row": r,
                 "record": {k: v for k, v in examples.get((f, r), {}).items()}}
                for f, r in exs
            ],
        })
    table = pd.DataFrame(type_rows, columns=[
        "new_type", "records", "share", "first_seen", "runs_seen", "records_before",
        "sample_records", "median_novelty", "nearest_known", "top_features", "examples",
        "_features", "_centroid", "_radius", "_input_centroid", "_input_radius", "_history",
        "_examples"])
    summary = {
        "run_id": run_id,
        # absolute: `report` and `promote` find the model by it from any directory
        "model": {"id": art.model_id, "path": str(Path(art.path).absolute())},
        "engine": engine,
        "records": tally.rows,
        "verdicts": tally.verdicts(),
        "clusters": clusters.to_dict(orient="records"),
        "new_types": [
            {**{k: v for k, v in r.items() if not k.startswith("_") and k != "examples"},
             "features": r["_features"], "examples": r["_examples"],
             "records_by_run": r["_history"], "centroid": r["_centroid"],
             "radius": r["_radius"], "input_centroid": r["_input_centroid"],
             "input_radius": r["_input_radius"]}
            for r in type_rows
        ],
        "new_types_set_aside": new_types.set_aside,
        "decision": {"false_alarm_rate": scoring.cfg.false_alarm_rate,
                     "anomaly_saturation": scoring.scorer.saturation,
                     "held_out_records": art.manifest["calibration"]["held_out_records"]},
        "cleaning": {"missing_imputed": tally.missing, "clipped": tally.clipped,
                     "categorical_other": tally.other},
        "inputs": [
            {"path": str(j.source.path), "bytes": j.source.bytes, "sha256": j.source.sha256,
             "records": rows[j.index], "output": str(out / j.output)}
            for j in jobs
        ],
        "skipped": [str(f.path) for f in skipped],
        "seconds": round(seconds, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return summary, clusters, table.drop(columns=[c for c in table.columns if c.startswith("_")])
