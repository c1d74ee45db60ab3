"""The library API: one function per command, each composing the pipeline's stages.

    fit:   read -> validate -> normalise -> triplets/train -> embed -> cluster
           -> calibrate -> save
    score: read (streamed) -> normalise -> embed -> assign + novelty -> new types -> write
           (`trafficsiam.score.score`, re-exported here)
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam import artifact, cluster, read, validate
from trafficsiam.assign import Assigner
from trafficsiam.calibrate import ANOMALY_QUANTILE, SCORES, fit_scorer
from trafficsiam.config import Config, config_to_dict
from trafficsiam.model import embed
from trafficsiam.normalise import Normaliser
from trafficsiam.report import model_report
from trafficsiam.score import ScoreResult, score

__all__ = ["FitResult", "ScoreResult", "fingerprint", "fit", "load", "score"]
from trafficsiam.train import train

log = logging.getLogger("trafficsiam")

# The false-alarm rates at which fit measures the decision on held-out good records
# (manifest "calibration", the fit summary), besides the configured one.
REPORTED_RATES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)


@dataclass
class FitResult:
    path: Path
    manifest: dict[str, Any]
    clusters: pd.DataFrame
    timings: dict[str, float]
    # With fit(frames=n): the embedding of n training records before the first epoch and
    # after each one ({"rows", "scenario", "embeddings" [epochs + 1, n, N]}); not saved.
    frames: dict[str, np.ndarray] | None = None

    @property
    def weighted_purity(self) -> float:
        return float(self.manifest["clusters"]["weighted_purity"])


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 4)
        self._last = now


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 over the row hashes of the columns used: changes when any value changes."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


def fit(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    config: Config | None = None,
    *,
    force: bool = False,
    quiet: bool = False,
    frames: int = 0,
    report: bool = True,
) -> FitResult:
    """Fit a model on labelled traffic records and save it to the folder `out`, with its
    report (report.html; `report=False` leaves it out, the report's tables stay).

    `frames` > 0 records the embedding of that many records (a stratified sample) at
    every epoch, returned in `FitResult.frames` (for animations; the model is the same).
    """
    cfg = config or Config()
    data_cfg = cfg.data
    clock = _Stopwatch()

    paths = read.resolve_inputs(inputs)
    names = read.common_columns(paths)
    wanted = [c for c in names if c not in set(data_cfg.ignore) or c == data_cfg.label_column]
    for col in data_cfg.ignore:
        if col not in names:
            log.warning("--ignore %s: no such column in %s; nothing to ignore", col, paths[0])
    log.info("reading %d file(s): %s", len(paths), paths[0] if len(paths) == 1 else paths[0].parent)
    records = read.read_records(paths, wanted)
    clock.lap("read")

    labels = validate.check_labels(records, data_cfg)
    keep = validate.usable(labels)
    dropped = labels[~keep].value_counts()
    if not keep.all():
        records = records.subset(keep)
        labels = labels[keep].reset_index(drop=True)
    schema = validate.infer_schema(records, data_cfg)
    cluster.check_min_cluster_size(cfg.cluster, len(records.frame))
    features = records.frame[list(schema.columns)]
    clock.lap("validate")

    normaliser = Normaliser.fit(features, schema, cfg.normalise)
    x, cleaned = normaliser.transform(features)
    clock.lap("normalise")

    scenarios = np.asarray(labels.to_numpy(), dtype=object)
    names_sorted, codes = np.unique(scenarios.astype(str), return_inverse=True)
    log.info(
        "training on %d records x %d inputs (%d scenarios, loss %s, %s triplets)",
        x.shape[0], x.shape[1], len(names_sorted), cfg.loss.name, cfg.triplets.strategy,
    )
    frame_rows = None
    if frames > 0:
        # Its own generator, so that recording frames leaves the fit's random draws alone.
        frame_rows = cluster.stratified_sample(
            scenarios.astype(str), frames, np.random.default_rng(cfg.train.seed + 1))
    trained = train(x, codes, cfg, quiet=quiet, frame_rows=frame_rows)
    clock.lap("train")

    emb = embed(trained.model, x)
    clock.lap("embed")

    rng = np.random.default_rng(cfg.train.seed)
    log.info("clustering the embeddings with HDBSCAN")
    train_scenarios = scenarios[trained.train_idx].astype(str)
    clustered = cluster.fit_clusters(
        emb[trained.train_idx], train_scenarios, cfg.cluster, data_cfg.good_label, rng
    )
    clock.lap("cluster")

    ref_rows = trained.train_idx[clustered.sample_idx]
    reference = artifact.embedding_frame(
        emb[ref_rows],
        row=ref_rows,
        scenario=scenarios[ref_rows].astype(str),
        cluster=clustered.labels,
        strength=clustered.strength,
        outlier_score=clustered.outlier_score,
    )
    holdout = artifact.embedding_frame(
        emb[trained.val_idx],
        row=trained.val_idx,
        scenario=scenarios[trained.val_idx].astype(str),
    )
    ref_codes = codes[ref_rows]
    good_names = np.flatnonzero(names_sorted == str(data_cfg.good_label))
    good_code = int(good_names[0]) if len(good_names) else -1
    held_codes = codes[trained.val_idx]
    held_emb, held_x = emb[trained.val_idx], x[trained.val_idx]
    scorer, anomaly = fit_scorer(
        Assigner.from_clusterer(clustered.clusterer), clustered.labels, ref_codes,
        names_sorted, good_code, x, ref_rows,
        trained.train_idx[train_scenarios == str(data_cfg.good_label)],
        held_emb, held_x, held_codes, cfg, rng)
    log.debug("ts_anomaly: %s", anomaly["why"])  # the CLI summary prints it
    rate = cfg.score.false_alarm_rate
    measured = scorer.held_out_rates(held_emb, held_x, held_codes,
                                     sorted({*REPORTED_RATES, rate}))
    calibration = {
        "scores": list(SCORES),
        "held_out_records": {str(names_sorted[s]): scorer.calibration.records(s)
                             for s in range(len(names_sorted))},
        "false_alarm_rate": rate,
        "held_out_good": measured,
        "anomaly_quantile": ANOMALY_QUANTILE,
        "anomaly_scale": scorer.anomaly_scale,
    }
    clock.lap("calibrate")
    history = pd.DataFrame(trained.history)
    counts = pd.Series(scenarios.astype(str)).value_counts()
    manifest: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": artifact.package_versions(),
        "config": config_to_dict(cfg),
        "label_column": data_cfg.label_column,
        "good_label": data_cfg.good_label,
        "scenarios": [str(s) for s in names_sorted],
        "schema": schema.to_dict(),
        "normaliser": normaliser.to_dict(),
        "model": {
            "in_features": int(x.shape[1]),
            "hidden": list(cfg.model.hidden),
            "embedding_dim": cfg.model.embedding_dim,
            "dropout": cfg.model.dropout,
            "head": trained.model.head,
        },
        "clusters": {
            "params": clustered.params,
            "points": int(len(clustered.sample_idx)),
            "weighted_purity": clustered.weighted_purity,
            "explained_share": clustered.explained_share,
            "epsilon_selection": clustered.selection,
            "noise_share": clustered.noise_share,
            "table": clustered.table.to_dict(orient="records"),
        },
        "calibration": calibration,
        "anomaly": anomaly,
        "training": {
            "rows": {"train": int(len(trained.train_idx)), "validation": int(len(trained.val_idx))},
            "best_epoch": trained.best_epoch,
            "epochs_run": len(trained.history),
            "stopped_early": trained.stopped_early,
            "device": trained.device,
            "seconds": round(trained.seconds, 3),
            "triplets_seen": trained.triplets_seen,
            "history": trained.history,
        },
        "data": {
            "inputs": [{"path": str(p), "bytes": p.stat().st_size} for p in paths],
            "rows": int(len(records.frame)),
            "fingerprint": fingerprint(records.frame[[data_cfg.label_column, *schema.columns]]),
            "scenario_counts": {str(k): int(v) for k, v in counts.items()},
            "dropped_rare_scenarios": {str(k): int(v) for k, v in dropped.items()},
            "cleaning": cleaned.to_dict(),
        },
        "timings": clock.timings,
    }
    profile, examples = model_report.fit_tables(
        normaliser, features.iloc[ref_rows], x[ref_rows], reference, clustered.table,
        data_cfg.good_label, data_cfg.label_column,
    )

    def write_report(folder: Path, full: dict[str, Any]) -> list[str]:
        return model_report.write_fit_files(folder, full, clustered.table, history,
                                            reference, profile, examples, html=report)

    written = artifact.save(
        Path(out), manifest, trained.model, reference, holdout,
        {**scorer.tensors(), "holdout": x[trained.val_idx]},
        scorer.assigner, clustered.table, history,
        force=force, extras=write_report,
    )
    clock.lap("save")
    recorded = None
    if frame_rows is not None:
        recorded = {"rows": frame_rows, "scenario": scenarios[frame_rows].astype(str),
                    "embeddings": trained.extra["frames"]}
    return FitResult(path=Path(out), manifest=written, clusters=clustered.table,
                     timings=clock.timings, frames=recorded)


def load(path: str | Path) -> artifact.Artifact:
    """Load and verify a saved model."""
    return artifact.load(path)
