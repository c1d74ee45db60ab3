"""Compare: the losses side by side. One model per loss and seed, everything else equal,
each evaluated on the same test records (`evaluate`), with the baselines
(`baselines`) on the same normalised features, seeded alike.

    for each seed, for each loss: api.fit (recording embedding frames) -> evaluate
    for each seed, for each baseline: fit and predict on the model's features -> metrics
    -> runs.csv (one row per run), comparison.csv (mean and std over seeds), comparison.html

Seeds are `train.seed`, `train.seed + 1`, ...; a seed changes the training (and the
baselines' sampling), never the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam import api, read, write
from trafficsiam.config import Config, build_config, config_to_dict
from trafficsiam.errors import ConfigError, InputError
from trafficsiam.losses import loss_class
from trafficsiam.measure import baselines
from trafficsiam.measure.evaluate import METRICS, evaluate, metrics, own_column
from trafficsiam.paths import check_outputs, comparison_out, input_roots
from trafficsiam.report import cards
from trafficsiam.report.figures import Projection, scenario_colors
from trafficsiam.write import json_file as write_json

log = logging.getLogger("trafficsiam")

# Training records whose embedding is recorded at every epoch for the animation.
# An earlier comparison's --out holds this file (`paths.comparison_out`).
COMPARISON_JSON = "comparison.json"
FRAME_RECORDS = 600
# Test records per map in the report.
MAP_RECORDS = 1500


@dataclass
class CompareResult:
    out: Path
    runs: pd.DataFrame  # one row per (method, seed): metrics, fit seconds
    table: pd.DataFrame  # one row per method: mean and std over seeds
    # each baseline run's novelty score per test record, by (method, seed): what
    # `backtest` reads a baseline's curve from, instead of fitting it again
    novelty: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof 1; 0 for one seed) per method of every metric
    and of fit_seconds, in the order the methods were run."""
    order = list(dict.fromkeys(runs["method"]))
    rows = []
    for method in order:
        part = runs[runs["method"] == method]
        row: dict[str, Any] = {"method": method, "kind": part["kind"].iloc[0],
                               "seeds": len(part)}
        for col in (*METRICS, "fit_seconds"):
            values = part[col].astype(float)
            row[f"{col}_mean"] = float(values.mean())
            row[f"{col}_std"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def _check(losses: Sequence[str], seeds: int, baseline_names: Sequence[str]) -> None:
    if not losses:
        raise ConfigError("compare: --losses is empty; name at least one loss, e.g. "
                          "--losses lossless-triplet,triplet")
    for name in losses:
        loss_class(name)
    if len(set(losses)) != len(losses):
        raise ConfigError(f"compare: --losses names a loss twice ({', '.join(losses)}); "
                          "list each loss once")
    if seeds < 1:
        raise ConfigError(f"compare: --seeds must be at least 1, got {seeds}; pass --seeds 3")
    baselines.check_names(list(baseline_names))


def compare(
    train: str | Path | Sequence[str | Path],
    test: str | Path | Sequence[str | Path],
    out: str | Path,
    config: Config | None = None,
    *,
    losses: Sequence[str] = ("lossless-triplet", "triplet"),
    seeds: int = 3,
    baseline_names: Sequence[str] = baselines.DEFAULT_BASELINES,
    quiet: bool = False,
    report: bool = True,
) -> CompareResult:
    """Fit and evaluate one model per loss and seed, run the baselines, write the tables.

    `out` gets models/<loss>-seed<k>/ (the fitted models), runs/<loss>-seed<k>/ (each
    evaluation), runs.csv, comparison.csv and, with `report`, comparison.html.
    """
    cfg = config or Config()
    _check(losses, seeds, baseline_names)
    train_specs = [str(s) for s in ([train] if isinstance(train, str | Path) else train)]
    test_specs = [str(s) for s in ([test] if isinstance(test, str | Path) else test)]
    # its outputs have names of their own (models/, runs/, comparison.*): an input below
    # --out is safe (backtest's split/ is one)
    check_outputs([("--out", out)], [("input", r) for r in input_roots(
        [*train_specs, *test_specs])], around=False)
    read.resolve_inputs(train_specs)  # bad paths fail before any training
    test_paths = read.resolve_inputs(test_specs)
    label = cfg.data.label_column
    if label not in read.common_columns(test_paths):
        raise InputError(
            f"{test_paths[0]}: label column '{label}' not found; the test records need the "
            "training label column (--label-column) to be evaluated"
        )
    comparison_out(out, input_roots([*train_specs, *test_specs]), COMPARISON_JSON)
    out = write.folder(out)

    base = config_to_dict(cfg)
    seed_values = [cfg.train.seed + k for k in range(seeds)]
    total = seeds * (len(losses) + len(baseline_names))
    done = 0
    rows: list[dict[str, Any]] = []
    novelty: dict[tuple[str, int], np.ndarray] = {}
    views: dict[str, dict[str, Any]] = {}
    data: baselines.BaselineData | None = None
    test_labels: np.ndarray | None = None
    for seed in seed_values:
        for loss in losses:
            name = f"{loss}-seed{seed}"
            done += 1
            if not quiet:
                log.info("[%d/%d] fit and evaluate %s, seed %d", done, total, loss, seed)
            run_cfg = build_config(base, [{"loss": {"name": loss}, "train": {"seed": seed}}],
                                   source="compare")
            start = time.perf_counter()
            fitted = api.fit(train_specs, out / "models" / name, run_cfg, force=True,
                             quiet=True, frames=FRAME_RECORDS if seed == seed_values[0] else 0)
            fit_seconds = time.perf_counter() - start
            # One MAP@R sample (seed 0) for every run: differences are the embedding's.
            result = evaluate(fitted.path, test_specs, out / "runs" / name, quiet=True,
                              report=False)
            training = fitted.manifest["training"]
            rows.append({"method": loss, "kind": "loss", "seed": seed, **result.metrics,
                         "fit_seconds": fit_seconds, "epochs": training["epochs_run"],
                         "best_epoch": training["best_epoch"],
                         "model_id": fitted.manifest["model_id"]})
            _save_runs(out, rows)
            if not quiet:
                log.info("  %s: novel_auroc %.3f, known_accuracy %.3f, fit %.0f s", loss,
                         result.metrics["novel_auroc"], result.metrics["known_accuracy"],
                         fit_seconds)
            if seed == seed_values[0]:
                views[loss] = _view(fitted, result.out)
            if data is None and baseline_names:
                # The model's normaliser is fitted on the training data alone; every
                # model of the comparison has the same one.
                data = baselines.load_data(api.load(fitted.path), train_specs, test_specs)
                records = pd.read_parquet(result.out / "records.parquet")
                test_labels = records.iloc[:, 0].astype(str).to_numpy()
                known = [str(s) for s in fitted.manifest["scenarios"]]
                good = str(fitted.manifest["good_label"])
        for name in baseline_names:
            done += 1
            if not quiet:
                log.info("[%d/%d] baseline %s, seed %d", done, total, name, seed)
            assert data is not None and test_labels is not None
            pred, seconds = baselines.run(name, data, cfg, seed)
            novelty[(name, seed)] = np.asarray(pred.novelty, dtype=np.float64)
            values = metrics(test_labels, pred, known, good)
            rows.append({"method": name, "kind": "baseline", "seed": seed, **values,
                         "fit_seconds": seconds, "epochs": np.nan, "best_epoch": np.nan,
                         "model_id": ""})
            _save_runs(out, rows)
    runs = pd.DataFrame(rows)
    table = summarise(runs)
    write.csv(out / "comparison.csv", table)
    write_json(out / COMPARISON_JSON, {
        "train": train_specs, "test": test_specs, "losses": list(losses),
        "baselines": list(baseline_names), "seeds": seed_values,
        "table": table.to_dict(orient="records"),
    })
    if report:
        write.text(out / "comparison.html",
                   report_page(table, views, train_specs, test_specs, seed_values))
    if not quiet:
        log.info("compared %d losses and %d baselines over %d seed(s): %s",
                 len(losses), len(baseline_names), seeds, out / "comparison.csv")
    return CompareResult(out=out, runs=runs, table=table, novelty=novelty)


def _save_runs(out: Path, rows: list[dict[str, Any]]) -> None:
    """runs.csv after every run: a long comparison stopped half-way keeps what it measured
    (written beside and renamed, so the file is always complete)."""
    write.csv(out / "runs.csv", pd.DataFrame(rows))


def _view(fitted: api.FitResult, evaluated: Path) -> dict[str, Any]:
    """What the report shows of one loss: the map of the test records and the animation
    of the training records over the epochs, both projected with one PCA fitted on the
    last training frame (fixed axes, so frames and map are comparable)."""
    frames = fitted.frames
    assert frames is not None
    emb = frames["embeddings"]  # [epochs + 1, n, N]
    projection = Projection.fit(emb[-1], keep=0)
    records = pd.read_parquet(evaluated / "records.parquet")
    label_col = records.columns[0]
    dim = int(fitted.manifest["model"]["embedding_dim"])
    ecols = [own_column(f"e{i}", label_col) for i in range(dim)]
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(records), min(MAP_RECORDS, len(records)), replace=False))
    xy = np.round(projection(records[ecols].to_numpy(np.float64)[rows]), 4)
    return {
        "test": {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(),
                 "label": records[label_col].astype(str).to_numpy()[rows].tolist(),
                 "known": records[own_column("known", label_col)].to_numpy()[rows].tolist()},
        "frames": [np.round(projection(f), 4) for f in emb],
        "frame_labels": frames["scenario"],
        "known": [str(k) for k in fitted.manifest["scenarios"]],
        "good_label": str(fitted.manifest["good_label"]),
    }


def report_page(table: pd.DataFrame, views: dict[str, dict[str, Any]], train: list[str],
                test: list[str], seeds: list[int]) -> str:
    """comparison.html: the metrics table, each loss's map and training animation, on the
    report pages' base template."""
    cols = [*METRICS, "fit_seconds"]
    rows = []
    for rec in table.to_dict(orient="records"):
        rows.append({"method": rec["method"], "kind": rec["kind"], "seeds": rec["seeds"],
                     "cells": [_cell(rec[f"{c}_mean"], rec[f"{c}_std"]) for c in cols]})
    maps = {}
    for loss, view in views.items():
        maps[loss] = {
            "test": view["test"],
            "frames": [{"x": f[:, 0].tolist(), "y": f[:, 1].tolist()} for f in view["frames"]],
            "frame_labels": [str(s) for s in view["frame_labels"]],
        }
    # one colour per label across every panel, by the rule of the other pages
    first = next(iter(views.values()), {})
    labels = {str(k) for m in maps.values() for k in [*m["test"]["label"], *m["frame_labels"]]}
    colours = scenario_colors(first.get("known", []), first.get("good_label", ""), labels)
    return cards.page("compare.html.j2", {"maps": maps, "colours": colours},
                      title="Losses side by side",
                      columns=cols, rows=rows, maps=list(maps), train=train, test=test,
                      seeds=seeds)


def _cell(mean: float, std: float) -> str:
    if mean != mean:
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std == std else f"{mean:.3f}"
