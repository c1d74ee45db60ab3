"""Models derived from a fitted one, keeping its network: a new site's good traffic
(`recalibrate`, `trafficsiam calibrate`) and an analyst's name for a candidate new type
(`promote`, `trafficsiam promote`).

    records -> the parent's checks, normaliser and network -> half join the reference,
    half the held-out records -> HDBSCAN on the reference again -> the input prototypes
    extended -> the decision calibrated again -> a new model folder with its lineage

The network, the normaliser and the feature schema are the parent's, so the embedding of
every record is what the parent gives it; what changes is what the model knows (the
reference records that vote, the prototypes, the scenarios) and what it is calibrated
on. No retraining: it takes seconds and cannot degrade what the parent knew (the
embedding of a new failure type already sets it apart, which is how it was found), and
the reference vote makes a scenario known from its examples alone.

* `recalibrate`: the new records are good traffic of another site or month. They join
  the reference as good traffic, their k-means prototypes join the good-traffic model,
  and the held-out good records the decision is calibrated on are replaced by the new
  ones: `score.false_alarm_rate` then bounds the false alarms on the new site's traffic.
  The failure scenarios keep their held-out records.
* `promote`: the records a scoring run put in one candidate become labelled examples of
  a scenario, new or known (the analyst's name): reference, prototypes and held-out
  records of it. Scoring the next batch with the new model calls that failure
  `known_error` with that name.

The parent folder is never changed; the new one records its `lineage` in manifest.json
(each step: kind, parent model id and folder, who and when, what was added).
"""

from __future__ import annotations

import getpass
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from trafficsiam import artifact, cluster, read
from trafficsiam.api import calibration_text
from trafficsiam.artifact import Artifact
from trafficsiam.assign import Assigner
from trafficsiam.calibrate import KnownScorer, calibration_facts
from trafficsiam.contract import RUNS_DIR
from trafficsiam.errors import ArtifactError, InputError
from trafficsiam.labels import clean_label, clean_labels
from trafficsiam.model import embed
from trafficsiam.paths import check_outputs, input_roots
from trafficsiam.prototypes import build_prototypes, good_traffic_prototypes
from trafficsiam.scoring.batch import Scoring
from trafficsiam.scoring.history import run_folders

log = logging.getLogger("trafficsiam")

# Records needed: half vote in the reference, half calibrate; with fewer than 20 held-out
# records a scenario's p-values are coarse (the exponential tail still ranks them).
MIN_RECORDS = 40
# At most this many new records are kept as held-out calibration records: more add
# load time (calibration runs at every load) and little precision.
MAX_CALIBRATION = 20_000


@dataclass
class Derived:
    """A model folder written by `recalibrate` or `promote`."""

    path: Path
    manifest: dict[str, Any]
    added: dict[str, int]  # reference / calibration records added

    def summary(self) -> str:
        """What was derived, for people (the CLI prints it)."""
        manifest = self.manifest
        step = manifest["lineage"][-1]
        what = (f"'{step['scenario']}' ({'new scenario' if step['new_scenario'] else 'known'}) "
                f"from candidate {step['candidate']}" if step["kind"] == "promote"
                else "good traffic")
        lines = [f"model {manifest['model_id']} ({step['kind']}, parent {step['parent']}): "
                 f"{step['records']} records of {what}; {self.added['reference_records']} "
                 f"joined the reference, {self.added['calibration_records']} the calibration"]
        text = calibration_text(manifest["calibration"], str(manifest["good_label"]))
        if text:
            lines.append(text)
        lines.append(f"model folder: {self.path}")
        return "\n".join(lines)


def recalibrate(
    model: str | Path | Artifact, good: pd.DataFrame | str | Path | Sequence[str | Path],
    out: str | Path, *, force: bool = False, seed: int = 0,
) -> Derived:
    """A model that knows `good` (records known to be good traffic at a new site or
    month: files or a DataFrame) as good traffic and is calibrated on it. Records whose
    label column (when present) names another scenario are left out, with a count."""
    art = model if isinstance(model, Artifact) else artifact.load(model)
    good_label = str(art.manifest["good_label"])
    specs = ([] if isinstance(good, pd.DataFrame)
             else [good] if isinstance(good, str | Path) else list(good))
    check_outputs([("--out", out)], [("input", r) for r in input_roots(specs)],
                  models=[art.path])
    scoring = Scoring(art, art.config.score)
    frame, sources = _read(scoring, good)
    label_col = str(art.manifest["label_column"])
    if label_col in frame.columns:
        labels = clean_labels(frame[label_col], art.config.data.label_normalise)
        keep = (labels == good_label).to_numpy()
        if not keep.all():
            log.warning("left out %d records whose '%s' is not '%s' (calibrate takes good "
                        "traffic only)", int((~keep).sum()), label_col, good_label)
        frame = frame[keep].reset_index(drop=True)
    x, emb = _embed(scoring, frame, sources[0])
    step = {"kind": "calibrate", "inputs": sources, "records": int(len(x))}
    return _derive(art, x, emb, good_label, replace=True, step=step, out=Path(out),
                   force=force, seed=seed)


def promote(
    model: str | Path | Artifact, run: str | Path, candidate: str, name: str,
    out: str | Path, *, force: bool = False, seed: int = 0, run_id: str | None = None,
) -> Derived:
    """A model in which the records that the scoring run in folder `run` put in
    `candidate` (new-1, ...) are examples of scenario `name`: a new scenario, or more
    examples of a known one. `run_id` picks an earlier run kept under `run`/runs/
    (`kept_run`); without it, the latest."""
    art = model if isinstance(model, Artifact) else artifact.load(model)
    scenario = clean_label(name, art.config.data.label_normalise)
    if scenario is None:
        raise InputError(f"promote: --as {name!r} is empty; name the failure, e.g. "
                         "--as tls-reset")
    run = kept_run(run, run_id)
    summary, path = _run_summary(Path(run), art)
    check_outputs([("--out", out)], [("run folder", run)], models=[art.path])
    found = [t["new_type"] for t in summary.get("new_types", [])]
    if candidate not in found:
        shown = ", ".join(found) or "none"
        raise InputError(f"{path}: the run has no candidate {candidate!r} (candidates: "
                         f"{shown}); name one of them")
    frame, outputs = _candidate_records(art, summary, candidate, path)
    expected = next(int(t.get("records", -1)) for t in summary["new_types"]
                    if t["new_type"] == candidate)
    if expected >= 0 and len(frame) != expected:
        # a later run scored the same inputs again: their files no longer hold this run's
        raise InputError(
            f"{path}: the run put {expected:,} records in {candidate}, its scored files now "
            f"hold {len(frame):,} (scored again since); promote it from the latest run")
    x, emb = _embed(Scoring(art, art.config.score), frame, Path(outputs[0]))
    step = {"kind": "promote", "run_id": summary.get("run_id"), "run_folder": str(run),
            "candidate": candidate, "scenario": scenario,
            "new_scenario": scenario not in art.manifest["scenarios"],
            "inputs": outputs, "records": int(len(x))}
    return _derive(art, x, emb, scenario, replace=False, step=step, out=Path(out),
                   force=force, seed=seed)


def kept_run(out: str | Path, run_id: str | None) -> Path:
    """The folder of run `run_id` kept under `out`/runs/ (`score.keep_runs`), or `out`
    itself (its latest run) when `run_id` is None."""
    out = Path(out)
    if run_id is None:
        return out
    kept = [p.name for p in run_folders(out / RUNS_DIR)] if (out / RUNS_DIR).is_dir() else []
    if run_id not in kept:
        shown = ", ".join(kept[-10:]) or "none"
        raise InputError(f"{out / RUNS_DIR}: no run {run_id!r} is kept there (kept, latest "
                         f"last: {shown}); pass one of them to --run, or leave --run out for "
                         "the latest")
    return out / RUNS_DIR / run_id


def run_model(run: str | Path, run_id: str | None = None) -> Path:
    """The model folder a scoring run's summary.json names."""
    summary, path = _read_summary(kept_run(run, run_id))
    model = (summary.get("model") or {}).get("path")
    if not isinstance(model, str):
        raise InputError(f"{path}: names no model folder; pass the model with --model")
    return Path(model)


# -- reading ------------------------------------------------------------------------------


def _read(scoring: Scoring, data: pd.DataFrame | str | Path | Sequence[str | Path]
          ) -> tuple[pd.DataFrame, list[str]]:
    """The records of `data` (feature columns and, when present, the label column),
    checked as scoring checks its inputs."""
    label_col = str(scoring.art.manifest["label_column"])
    if isinstance(data, pd.DataFrame):
        columns = [str(c) for c in data.columns]
        scoring.check_columns(Path(read.FRAME_NAME), columns)
        wanted = scoring.features + ([label_col] if label_col in columns else [])
        return data[wanted].reset_index(drop=True), [read.FRAME_NAME]
    paths = read.resolve_inputs(data)
    columns = read.common_columns(paths)
    scoring.check_columns(paths[0], columns)
    wanted = scoring.features + ([label_col] if label_col in columns else [])
    return read.read_records(paths, wanted).frame, [str(p) for p in paths]


def _embed(scoring: Scoring, frame: pd.DataFrame, source: Path | str
           ) -> tuple[np.ndarray, np.ndarray]:
    """(normalised inputs, embeddings) with scoring's checks of the values."""
    if len(frame) < MIN_RECORDS:
        raise InputError(
            f"{source}: {len(frame)} records; a derived model needs at least {MIN_RECORDS} "
            "(half vote as reference records, half calibrate the decision)")
    table = pa.Table.from_pandas(frame[scoring.features], preserve_index=False)
    x, _ = scoring.art.normaliser.transform(scoring.feature_frame(table, Path(source), 0))
    return x, embed(scoring.art.model, x)


def _read_summary(run: Path) -> tuple[dict[str, Any], Path]:
    """The summary.json of a scoring run's folder."""
    path = run / "summary.json"
    if not path.is_file():
        raise InputError(f"{path}: not found; pass the --out folder of a trafficsiam score "
                         "run")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({read.first_line(err)}); pass the --out "
                         "folder of a trafficsiam score run") from None
    if not isinstance(summary, dict):
        raise InputError(f"{path}: not a scoring run's summary; pass the --out folder of a "
                         "trafficsiam score run")
    return summary, path


def _run_summary(run: Path, art: Artifact) -> tuple[dict[str, Any], Path]:
    """The summary.json of a scoring run's folder, checked to be this model's."""
    summary, path = _read_summary(run)
    scored_by = (summary.get("model") or {}).get("id")
    if scored_by != art.model_id:
        raise ArtifactError(
            f"{path}: the run was scored by model {scored_by}, not by {art.path} "
            f"({art.model_id}); promote with the model that found the candidate")
    return summary, path


def _candidate_records(art: Artifact, summary: dict[str, Any], candidate: str, path: Path
                       ) -> tuple[pd.DataFrame, list[str]]:
    """The feature columns of the scored records in `candidate`, from the run's outputs."""
    outputs = [str(i["output"]) for i in summary.get("inputs", []) if i.get("output")]
    frames = []
    for output in outputs:
        if not Path(output).is_file():
            raise InputError(f"{output}: a scored file of the run in {path.parent} is "
                             "missing; promote from a run whose outputs are all there")
        table = ds.dataset(output, format="parquet").to_table(
            columns=list(art.schema.columns), filter=ds.field("ts_new_type") == candidate)
        frames.append(table.to_pandas())
    return pd.concat(frames, ignore_index=True), outputs


# -- the derived model ---------------------------------------------------------------------


def _derive(art: Artifact, x: np.ndarray, emb: np.ndarray, scenario: str, *, replace: bool,
            step: dict[str, Any], out: Path, force: bool, seed: int) -> Derived:
    """The parent `art` knowing records (`x`, `emb`) as `scenario`; `replace`: they
    replace that scenario's held-out records instead of joining them."""
    cfg = art.config
    rng = np.random.default_rng(seed)
    names = [str(s) for s in art.manifest["scenarios"]]
    if scenario not in names:
        names.append(scenario)  # appended: the parent's scenario codes stay as they were
    code_of = {name: i for i, name in enumerate(names)}
    code = code_of[scenario]
    good_label = str(art.manifest["good_label"])
    good_code = code_of.get(good_label, -1)

    order = rng.permutation(len(x))
    half = len(order) // 2
    to_ref, to_cal = np.sort(order[:half]), np.sort(order[half:][:MAX_CALIBRATION])

    columns = art.embedding_columns
    points = np.vstack([art.reference[columns].to_numpy(np.float64), emb[to_ref]])
    ref_names = np.concatenate([art.reference["scenario"].astype(str).to_numpy(),
                                np.full(len(to_ref), scenario, dtype=object)]).astype(str)
    rows = np.concatenate([art.reference["row"].to_numpy(np.int64),
                           np.full(len(to_ref), -1, np.int64)])
    clustered = cluster.fit_clusters(points, ref_names, cfg.cluster, good_label, rng)
    sample = clustered.sample_idx
    ref_codes = np.array([code_of[s] for s in ref_names[sample]], dtype=np.int64)

    inputs = art.inputs
    per = cfg.cluster.prototypes
    prototypes, owner = inputs["prototypes"], inputs["prototype_scenario"]
    good_protos = inputs["good_prototypes"]
    anomaly_protos, anomaly_set = inputs.get("anomaly_prototypes"), inputs.get("anomaly_set")
    if code == good_code:
        new, new_anomaly, new_set = good_traffic_prototypes(
            x, to_ref, per, rng, cfg.train.seed)
        good_protos = np.vstack([good_protos, new]).astype(np.float32)
        if anomaly_protos is not None and anomaly_set is not None and len(new_set):
            anomaly_protos = np.vstack([anomaly_protos, new_anomaly]).astype(np.float32)
            anomaly_set = np.concatenate([anomaly_set, new_set])
    else:
        new, new_owner = build_prototypes(x[to_ref], np.full(len(to_ref), code, np.int64),
                                          per, cfg.train.seed)
        prototypes = np.vstack([prototypes, new]).astype(np.float32)
        owner = np.concatenate([owner, new_owner])

    held_names = art.holdout["scenario"].astype(str).to_numpy()
    keep = held_names != scenario if replace else np.ones(len(held_names), dtype=bool)
    held_emb = np.vstack([art.holdout[columns].to_numpy(np.float64)[keep], emb[to_cal]])
    held_x = np.vstack([inputs["holdout"][keep], x[to_cal]]).astype(np.float32)
    held_names = np.concatenate([held_names[keep], np.full(len(to_cal), scenario, object)])
    held_codes = np.array([code_of[s] for s in held_names], dtype=np.int64)
    held_rows = np.concatenate([art.holdout["row"].to_numpy(np.int64)[keep],
                                np.full(len(to_cal), -1, np.int64)])

    scorer = KnownScorer(
        Assigner.from_clusterer(clustered.clusterer), clustered.labels, ref_codes, names,
        good_code, prototypes, owner, good_protos,
        saturation=art.manifest["anomaly"].get("saturation"),
        anomaly_prototypes=anomaly_protos, anomaly_set=anomaly_set,
        vote_neighbours=art.vote_neighbours)
    scorer.calibrate(held_emb, held_x, held_codes)
    calibration = calibration_facts(scorer, held_emb, held_x, held_codes, names,
                                    cfg.score.false_alarm_rate)

    added = {"reference_records": int(len(to_ref)), "calibration_records": int(len(to_cal))}
    lineage = [*art.manifest.get("lineage", []), {
        **step, "parent": art.model_id, "parent_path": str(art.path),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "by": _user(),
        **added, "replaced_calibration": bool(replace)}]
    manifest = {k: v for k, v in art.manifest.items()
                if k not in ("format", "format_version", "files", "model_id", "assign")}
    manifest.update({
        "created": lineage[-1]["created"],
        "scenarios": names,
        "clusters": {**art.manifest["clusters"], **artifact.cluster_facts(clustered)},
        "calibration": calibration,
        "lineage": lineage,
    })
    reference = artifact.embedding_frame(
        points[sample], row=rows[sample], scenario=ref_names[sample],
        cluster=clustered.labels, strength=clustered.strength,
        outlier_score=clustered.outlier_score)
    holdout = artifact.embedding_frame(held_emb, row=held_rows, scenario=held_names)
    history_path = art.path / artifact.HISTORY
    history = pd.read_csv(history_path) if history_path.is_file() else pd.DataFrame()
    written = artifact.save(
        out, manifest, art.model, reference, holdout,
        {**scorer.tensors(), "holdout": held_x}, scorer.assigner, clustered.table, history,
        force=force)
    log.info("model %s: %s from %s (%d reference, %d calibration records added)",
             written["model_id"], step["kind"], art.model_id, added["reference_records"],
             added["calibration_records"])
    return Derived(out, written, added)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"
