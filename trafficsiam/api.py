"""The library API: one function per command, each composing the pipeline's stages.

    fit:   read -> validate -> normalise -> triplets/train -> embed -> cluster
           -> calibrate -> save
    score: read (streamed) -> normalise -> embed -> assign + novelty -> new types -> write
           (`trafficsiam.scoring.score`, re-exported here)

`trafficsiam.fit`, `trafficsiam.load` and `Model` (`trafficsiam.library`) are the same
over DataFrames, for notebooks and tasks that hold their records in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam import artifact, cluster, paths, read, validate
from trafficsiam.artifact import fingerprint
from trafficsiam.assign import Assigner
from trafficsiam.calibrate import (
    GoodTraffic,
    KnownScorer,
    calibration_facts,
    fit_scorer,
    good_code,
    good_traffic,
)
from trafficsiam.cluster import ClusterResult
from trafficsiam.config import Config
from trafficsiam.model import embed
from trafficsiam.normalise import Normaliser
from trafficsiam.prototypes import choose_input_dropout
from trafficsiam.report import model_report
from trafficsiam.scoring import ScoreResult, score
from trafficsiam.train import TrainResult, train, validation_split

__all__ = ["FitResult", "ScoreResult", "fingerprint", "fit", "load", "score"]

log = logging.getLogger("trafficsiam")



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

    def summary(self) -> str:
        """What the fit did, for people (the CLI prints it): data, training, clusters,
        the anomaly distance, the calibrated decision, where the model went."""
        m = self.manifest
        tr, cl, data = m["training"], m["clusters"], m["data"]
        best = tr["history"][tr["best_epoch"] - 1] if tr["best_epoch"] else tr["history"][-1]
        n_features = len(m["schema"]["numeric"]) + len(m["schema"]["categorical"])
        sampled = data.get("sampled")
        lines = [
            (f"sampled {sampled['kept']} of {sampled['records']} records (data.max_records "
             f"{sampled['max_records']}, every scenario up to an equal share, rarer ones whole)")
        ] if sampled else []
        lines += [
            f"read {data['rows']} records, {len(m['scenarios'])} scenarios, "
            f"{n_features} feature columns -> {m['model']['in_features']} inputs",
            f"trained {tr['epochs_run']} epochs (best {tr['best_epoch']}"
            f"{', stopped early' if tr['stopped_early'] else ''}) in {tr['seconds']:.1f} s on "
            f"{tr['device']}: val loss {best['val_loss']:.4f}, "
            f"val triplet accuracy {best['val_triplet_accuracy']:.3f}",
            f"clustered {cl['points']} records: {int((self.clusters['cluster'] >= 0).sum())} "
            "clusters, "
            f"weighted purity {cl['weighted_purity']:.3f}, noise {cl['noise_share']:.1%}, "
            f"{cl['explained_share']:.1%} in a cluster of their own scenario "
            f"(epsilon {cl['params']['cluster_selection_epsilon']:g})",
        ]
        table = self.clusters
        width = max(len(str(n)) for n in table["name"])
        lines.append(f"  {'cluster':>7}  {'name':<{width}}  {'size':>6}  {'purity':>6}")
        for row in table.itertuples():
            lines.append(
                f"  {row.cluster:>7}  {row.name:<{width}}  {row.size:>6}  {row.purity:>6.3f}"
            )
        lines.append(f"ts_anomaly: {m['anomaly']['why']}")
        if "input_dropout" in tr:
            lines.append(f"input dropout: {tr['input_dropout']['why']}")
        text = calibration_text(m["calibration"], str(m["good_label"]))
        if text:
            lines.append(text)
        cleaning = data["cleaning"]
        if cleaning["missing_imputed"]:
            parts = ", ".join(f"{k} {v}" for k, v in cleaning["missing_imputed"].items())
            lines.append(f"missing values imputed: {parts}")
        lines.append(f"model {m['model_id']} saved to {self.path}")
        if "report.html" in m["files"]:
            lines.append(f"report: {self.path / 'report.html'}")
        return "\n".join(lines)


def _at_configured_rate(cal: dict[str, Any]) -> dict[str, float] | None:
    """What the decision flags among held-out good records at the configured rate
    (manifest "calibration"'s row of that rate); None when it has none."""
    return next((r for r in cal["held_out_good"] if r["rate"] == cal["false_alarm_rate"]),
                None)


def calibration_text(cal: dict[str, Any], good_label: str) -> str | None:
    """One line on what a model's decision flags among its held-out good records at its
    configured rate (manifest "calibration"); None when it has none. In records: shares
    rounded apart did not add up (0.9 % flagged, 0.7 % + 0.1 % by cause)."""
    row = _at_configured_rate(cal)
    if row is None:
        return None
    good = int(cal["held_out_records"].get(good_label, 0))
    flagged, unlike, voted = (round(row[k] * good)
                              for k in ("flagged", "unlike_good", "voted_failure"))
    return (f"decision calibrated on {sum(cal['held_out_records'].values())} held-out "
            f"records: at score.false_alarm_rate {row['rate']:g}, {flagged} of the {good} "
            f"held-out good records flagged ({row['flagged']:.2%}): {unlike} unlike good "
            f"traffic, {voted} whose neighbours vote a failure")


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 4)
        self._last = now


def fit(
    inputs: pd.DataFrame | str | Path | Sequence[str | Path],
    out: str | Path,
    config: Config | None = None,
    *,
    force: bool = False,
    quiet: bool = False,
    frames: int = 0,
    report: bool = True,
) -> FitResult:
    """Fit a model on labelled traffic records (files, or a DataFrame) and save it to the
    folder `out`, with its report (report.html; `report=False` leaves it out, the
    report's tables stay).

    `frames` > 0 records the embedding of that many records (a stratified sample) at
    every epoch, returned in `FitResult.frames` (for animations; the model is the same).
    """
    cfg = config or Config()
    good = str(cfg.data.good_label)
    if not isinstance(inputs, pd.DataFrame):
        specs = [inputs] if isinstance(inputs, str | Path) else list(inputs)
        paths.check_outputs([("--out", out)], [("input", r) for r in paths.input_roots(specs)])
    artifact.check_model_out(Path(out), force)  # before the training, not after it
    clock = _Stopwatch()
    sampler = np.random.default_rng(cfg.train.seed + 2)  # its own: the fit's draws unchanged
    records = read.training_records(
        inputs, cfg.data.label_column, cfg.data.ignore, cfg.data.max_records,
        lambda labels, n: cluster.stratified_sample(labels, n, sampler))
    clock.lap("read")
    records, labels, dropped, schema = validate.training_set(records, cfg.data)
    cluster.check_min_cluster_size(cfg.cluster, len(records.frame))
    features = records.frame[list(schema.columns)]
    clock.lap("validate")
    normaliser = Normaliser.fit(features, schema, cfg.normalise)
    x, cleaned = normaliser.transform(features)
    clock.lap("normalise")
    scenarios = np.asarray(labels.to_numpy(), dtype=object).astype(str)
    names, codes = np.unique(scenarios, return_inverse=True)
    log.info("training on %d records x %d inputs (%d scenarios, loss %s, %s triplets)",
             x.shape[0], x.shape[1], len(names), cfg.loss.name, cfg.triplets.strategy)
    frame_rows = None
    if frames > 0:  # its own generator: recording frames leaves the fit's draws alone
        frame_rows = cluster.stratified_sample(
            scenarios, frames, np.random.default_rng(cfg.train.seed + 1))
    good_model, dropout = _good_traffic(x, codes, names, cfg)
    clock.lap("good traffic")
    trained = train(x, codes, cfg, quiet=quiet, frame_rows=frame_rows,
                    input_dropout=dropout["rate"])
    clock.lap("train")
    emb = embed(trained.model, x)
    clock.lap("embed")
    rng = np.random.default_rng(cfg.train.seed)
    log.info("clustering the embeddings with HDBSCAN")
    clustered = cluster.fit_clusters(
        emb[trained.train_idx], scenarios[trained.train_idx], cfg.cluster, good, rng)
    clock.lap("cluster")
    ref_rows = trained.train_idx[clustered.sample_idx]
    scorer, anomaly, calibration = _calibrate(
        emb, x, codes, names, scenarios, trained, clustered, ref_rows, cfg, good_model)
    clock.lap("calibrate")
    manifest = artifact.build_manifest(
        cfg, names, schema, normaliser, trained, clustered, calibration, anomaly, dropout,
        _data_facts(records, scenarios, dropped, cleaned.to_dict(), cfg, list(schema.columns)),
        clock.timings)
    reference, holdout = _embedding_tables(emb, scenarios, trained, clustered, ref_rows)
    profile, examples = model_report.fit_tables(
        normaliser, features.iloc[ref_rows], x[ref_rows], reference, clustered.table,
        cfg.data.good_label, cfg.data.label_column)
    history = pd.DataFrame(trained.history)

    def write_report(folder: Path, full: dict[str, Any]) -> list[str]:
        return model_report.write_fit_files(folder, full, clustered.table, history,
                                            reference, profile, examples, html=report)

    written = artifact.save(
        Path(out), manifest, trained.model, reference, holdout,
        {**scorer.tensors(), "holdout": x[trained.val_idx]}, scorer.assigner,
        clustered.table, history, force=force, extras=write_report)
    clock.lap("save")
    recorded = None
    if frame_rows is not None:
        recorded = {"rows": frame_rows, "scenario": scenarios[frame_rows],
                    "embeddings": trained.extra["frames"]}
    return FitResult(path=Path(out), manifest=written, clusters=clustered.table,
                     timings=clock.timings, frames=recorded)


def _good_traffic(x: np.ndarray, codes: np.ndarray, names: np.ndarray, cfg: Config,
                  ) -> tuple[GoodTraffic, dict[str, Any]]:
    """Before training: good traffic in the inputs, on the training split `train` will
    make (`calibrate.good_traffic`), and the blanking rate it decides when
    `train.input_dropout` is auto (manifest "training"."input_dropout")."""
    train_rows, held_rows = validation_split(codes, cfg)
    good = good_code(names, cfg.data.good_label)
    # its own generator (it draws only for more than GOOD_PROTOTYPE_RECORDS good
    # records): the fit's draws stay as they were
    model = good_traffic(x, train_rows[codes[train_rows] == good], x[held_rows],
                         codes[held_rows] == good, cfg,
                         np.random.default_rng(cfg.train.seed + 3))
    configured = cfg.train.input_dropout
    if configured == "auto":
        rate, why = choose_input_dropout(model.breadth)
        dropout: dict[str, Any] = {"rule": "auto", "rate": rate, "why": why}
    else:
        dropout = {"rule": "configured", "rate": float(configured),
                   "why": f"{float(configured):g} (train.input_dropout)"}
    log.debug("input dropout: %s", dropout["why"])  # the CLI summary prints it
    return model, dropout


def _calibrate(
    emb: np.ndarray, x: np.ndarray, codes: np.ndarray, names: np.ndarray,
    scenarios: np.ndarray, trained: TrainResult, clustered: ClusterResult,
    ref_rows: np.ndarray, cfg: Config, good_model: GoodTraffic,
) -> tuple[KnownScorer, dict[str, Any], dict[str, Any]]:
    """The calibrate stage: the scorer (its good-traffic model and anomaly distance
    included) on the held-out records, and the manifest's "anomaly" and "calibration"."""
    good = str(cfg.data.good_label)
    held = trained.val_idx
    scorer, anomaly = fit_scorer(
        Assigner.from_clusterer(clustered.clusterer), clustered.labels, codes[ref_rows],
        names, good_code(names, good), x, ref_rows, emb[held], x[held], codes[held], cfg,
        good_model)
    log.debug("ts_anomaly: %s", anomaly["why"])  # the CLI summary prints it
    calibration = calibration_facts(scorer, emb[held], x[held], codes[held], names,
                                    cfg.score.false_alarm_rate)
    _warn_thin_good(calibration, good, int((scenarios == good).sum()))
    return scorer, anomaly, calibration


# Fewer held-out good records than this, or more of them flagged than this share, and the
# configured false-alarm rate says little about the model: fit warns.
MIN_GOOD_HELD_OUT = 30
MAX_GOOD_FLAGGED = 0.10


def _warn_thin_good(calibration: dict[str, Any], good: str, records: int) -> None:
    """Warn when good traffic is too thin for the decision's promise (a few good records:
    the vote seldom finds a good neighbour, and no held-out record calibrates it)."""
    held = int(calibration["held_out_records"].get(good, 0))
    row = _at_configured_rate(calibration)
    flagged = row["flagged"] if row else None
    if held < MIN_GOOD_HELD_OUT:
        log.warning("good traffic ('%s') has %d records, %d of them held out to calibrate the "
                    "decision: too few for score.false_alarm_rate %g to hold; expect many good "
                    "records flagged (export more good traffic)", good, records, held,
                    calibration["false_alarm_rate"])
    elif flagged is not None and flagged > MAX_GOOD_FLAGGED:
        log.warning("the decision flags %.1f%% of the held-out good records at "
                    "score.false_alarm_rate %g: good traffic overlaps the failures or is too "
                    "thin (%d records); expect that share of good traffic flagged",
                    100 * flagged, calibration["false_alarm_rate"], records)


def _data_facts(records: read.Records, scenarios: np.ndarray, dropped: pd.Series,
                cleaning: dict[str, Any], cfg: Config, columns: list[str]) -> dict[str, Any]:
    """The manifest's "data": the inputs, rows, fingerprint, counts and cleaning."""
    counts = pd.Series(scenarios).value_counts()
    return {
        "inputs": records.inputs(),
        "rows": int(len(records.frame)),
        "fingerprint": fingerprint(records.frame[[cfg.data.label_column, *columns]]),
        "scenario_counts": {str(k): int(v) for k, v in counts.items()},
        "dropped_rare_scenarios": {str(k): int(v) for k, v in dropped.items()},
        "cleaning": cleaning,
        # inputs over data.max_records: what was read and what fit kept, per scenario
        "sampled": records.sampled,
    }


def _embedding_tables(
    emb: np.ndarray, scenarios: np.ndarray, trained: TrainResult, clustered: ClusterResult,
    ref_rows: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """reference.parquet (the clustered sample) and holdout.parquet."""
    reference = artifact.embedding_frame(
        emb[ref_rows], row=ref_rows, scenario=scenarios[ref_rows], cluster=clustered.labels,
        strength=clustered.strength, outlier_score=clustered.outlier_score)
    held = trained.val_idx
    holdout = artifact.embedding_frame(emb[held], row=held, scenario=scenarios[held])
    return reference, holdout


def load(path: str | Path) -> artifact.Artifact:
    """Load and verify a saved model."""
    return artifact.load(path)
