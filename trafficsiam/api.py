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
from trafficsiam.calibrate import ANOMALY_SETS, KnownScorer, build_prototypes, choose_saturation
from trafficsiam.config import Config, config_to_dict
from trafficsiam.model import embed
from trafficsiam.normalise import Normaliser
from trafficsiam.report import model_report
from trafficsiam.score import ScoreResult, score

__all__ = ["FitResult", "ScoreResult", "fingerprint", "fit", "load", "score"]
from trafficsiam.train import train

log = logging.getLogger("trafficsiam")

# The good-traffic prototypes (ts_anomaly) are fitted on at most this many good training
# records: k-means with 256 centres on NSL-KDD's 67,343 normal records x 71 inputs takes
# 5.1 s here, the saturated anomaly's 4 fits of 128, each on a quarter of them, another
# 1.3 s (bench/anomaly_cost.py).
GOOD_PROTOTYPE_RECORDS = 65536


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
    prototypes, prototype_cluster = build_prototypes(
        x[ref_rows], clustered.labels, cfg.cluster.prototypes, cfg.train.seed
    )
    good_prototypes, anomaly_prototypes, anomaly_set = good_traffic_prototypes(
        x, trained.train_idx[train_scenarios == str(data_cfg.good_label)],
        cfg.cluster.prototypes, rng, cfg.train.seed)
    held_good = scenarios[trained.val_idx].astype(str) == str(data_cfg.good_label)
    if cfg.score.anomaly_saturation == "auto":
        choice = choose_saturation(x[trained.val_idx], held_good, good_prototypes,
                                   cfg.score.novelty_quantile)
        saturation = choice.saturation
        anomaly: dict[str, Any] = {"rule": "auto", **choice.to_dict(),
                                   "why": choice.describe()}
    else:
        saturation = cfg.score.anomaly_saturation
        kind = "Euclidean" if saturation is None else f"saturated at {saturation:g}"
        anomaly = {"rule": "configured", "saturation": saturation,
                   "why": f"{kind} (score.anomaly_saturation)"}
    log.debug("ts_anomaly: %s", anomaly["why"])  # the CLI summary prints it
    assigner = Assigner.from_clusterer(clustered.clusterer)
    good_clusters = clustered.table.loc[clustered.table["is_good"], "cluster"]
    scorer = KnownScorer(assigner, clustered.labels, prototypes, prototype_cluster,
                         good_clusters=good_clusters[good_clusters >= 0].tolist(),
                         good_prototypes=good_prototypes, saturation=saturation,
                         anomaly_prototypes=anomaly_prototypes, anomaly_set=anomaly_set)
    thresholds = scorer.calibrate(
        emb[trained.val_idx], x[trained.val_idx], cfg.score.novelty_quantile,
        cfg.score.min_calibration_records, good=held_good,
    )
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
        "calibration": thresholds.to_dict(),
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
        {"prototypes": prototypes, "prototype_cluster": prototype_cluster,
         "good_prototypes": good_prototypes, "anomaly_prototypes": anomaly_prototypes,
         "anomaly_set": anomaly_set, "holdout": x[trained.val_idx]},
        assigner, clustered.table, history,
        force=force, extras=write_report,
    )
    clock.lap("save")
    recorded = None
    if frame_rows is not None:
        recorded = {"rows": frame_rows, "scenario": scenarios[frame_rows].astype(str),
                    "embeddings": trained.extra["frames"]}
    return FitResult(path=Path(out), manifest=written, clusters=clustered.table,
                     timings=clock.timings, frames=recorded)


def good_traffic_prototypes(
    x: np.ndarray, good_rows: np.ndarray, per_cluster: int, rng: np.random.Generator,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means prototypes of the good training records (`calibrate`, anomaly), fitted on
    at most `GOOD_PROTOTYPE_RECORDS` of them, a reproducible sample: (`per_cluster`
    prototypes for the Euclidean distance, `calibrate.ANOMALY_SETS` fits of half as many
    for the saturated one, each on its own share of the records, stacked, the fit of
    each); [0, D] without any."""
    if len(good_rows) > GOOD_PROTOTYPE_RECORDS:
        good_rows = np.sort(rng.choice(good_rows, GOOD_PROTOTYPE_RECORDS, replace=False))
    protos, _ = build_prototypes(x[good_rows], np.zeros(len(good_rows), np.int64),
                                 per_cluster, seed)
    # a bagged ensemble: each fit on its own quarter of the sample (as good as each on all
    # of it, at a quarter of the k-means time; BENCHMARKS.md §5)
    parts = [good_rows[s::ANOMALY_SETS] for s in range(ANOMALY_SETS)]
    fits = [build_prototypes(x[rows], np.zeros(len(rows), np.int64),
                             max(1, per_cluster // 2), seed + 1 + s)[0]
            for s, rows in enumerate(parts) if len(rows)]
    if not fits:
        return protos, protos, np.zeros(0, np.int64)
    owner = np.concatenate([np.full(len(f), s, np.int64) for s, f in enumerate(fits)])
    return protos, np.concatenate(fits).astype(np.float32), owner


def load(path: str | Path) -> artifact.Artifact:
    """Load and verify a saved model."""
    return artifact.load(path)
