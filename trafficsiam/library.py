"""The library over frames: `fit` a model on a DataFrame (or files), `load` one, and score
frames in memory with `Model.score`.

    import trafficsiam
    model = trafficsiam.fit(frame, label_column="scenario", ignore=["id"])
    scored = model.score(new_frame)          # new_frame + the ts_* columns
    model.save("models/prod")

`Model.score` runs the same passes as `trafficsiam score` over a file of the same records
(`trafficsiam.scoring.frame`), so its ts_* columns are those the command writes.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from trafficsiam import api, artifact
from trafficsiam.artifact import Artifact
from trafficsiam.config import (
    Config,
    ScoreConfig,
    build_config,
    config_to_dict,
    load_config,
    score_config,
)
from trafficsiam.scoring import Scoring, score_frame

Data: TypeAlias = pd.DataFrame | str | Path | Sequence[str | Path]


class Model:
    """A fitted model: a verified model folder, loaded. Nothing in it is ever executed."""

    def __init__(self, art: Artifact, fitted: api.FitResult | None = None,
                 temporary: bool = False) -> None:
        self.artifact = art
        #: The fit's record (timings, the cluster table) when this object came from `fit`.
        self.fitted = fitted
        self._scorings: dict[str, Scoring] = {}
        self._cleanup = (weakref.finalize(self, shutil.rmtree, art.path.parent, True)
                         if temporary else None)

    def __repr__(self) -> str:
        where = "unsaved" if self._cleanup is not None else str(self.path)
        return f"<trafficsiam.Model {self.model_id} ({where})>"

    @property
    def path(self) -> Path:
        """The model folder (a temporary one until `save`, when `fit` had no `out`)."""
        return self.artifact.path

    @property
    def model_id(self) -> str:
        """The first 12 hex digits of the weights' SHA-256."""
        return self.artifact.model_id

    @property
    def manifest(self) -> dict[str, Any]:
        """manifest.json: config, schema, clusters, calibration, training history."""
        return self.artifact.manifest

    @property
    def config(self) -> Config:
        return self.artifact.config

    @property
    def clusters(self) -> pd.DataFrame:
        """One row per cluster (clusters.csv)."""
        return self.artifact.clusters

    def score(self, frame: pd.DataFrame, *, config: ScoreConfig | None = None,
              **score: Any) -> pd.DataFrame:
        """`frame` with the ts_* columns appended (same rows, order and index; the input
        columns untouched), as `trafficsiam score` writes them for the same records.

        The frame is one batch: its unexplained records are grouped into candidate new
        types among themselves. `config` replaces the model's score section; keyword
        arguments override single keys of it (`false_alarm_rate=0.05`).
        """
        cfg = score_config(config or self.artifact.config.score, None,
                           [{"score": score}] if score else None)
        key = cfg.model_dump_json()
        if key not in self._scorings:
            self._scorings = {key: Scoring(self.artifact, cfg)}  # the latest config only
        return score_frame(self._scorings[key], frame)

    def embed(self, frame: pd.DataFrame) -> np.ndarray:
        """The embedding of each record of `frame` (its feature columns), float32."""
        return self.artifact.embed(frame)

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write the model folder to `path` (refused if it exists, unless `force`) and
        keep working from there; the files are copied as verified, byte for byte."""
        source = self.path

        def copy(tmp: Path) -> None:
            shutil.copytree(source, tmp, dirs_exist_ok=True)

        artifact.write_atomic_dir(Path(path), copy, force=force)
        self.artifact = artifact.load(path)
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None
        return self.path


def _config(config: Config | str | Path | Mapping[str, Any] | None,
            sections: list[dict[str, Any]]) -> Config:
    if isinstance(config, Config):
        return build_config(config_to_dict(config), sections, "fit(config=...)")
    if isinstance(config, Mapping):
        return build_config(dict(config), sections, "fit(config=...)")
    return load_config(config, sections)


def fit(
    data: Data,
    out: str | Path | None = None,
    *,
    label_column: str | None = None,
    good_label: str | None = None,
    ignore: Sequence[str] = (),
    config: Config | str | Path | Mapping[str, Any] | None = None,
    force: bool = False,
    quiet: bool = True,
    report: bool = True,
    **sections: Mapping[str, Any],
) -> Model:
    """Fit a model on labelled records and return it.

    `data`: a DataFrame, or parquet/CSV file(s), folder(s) or a glob, as `trafficsiam fit`
    takes them. `out`: the model folder to write (refused if it exists, unless `force`);
    None keeps the model in a temporary folder until `Model.save`. `config`: a `Config`,
    a YAML file or a dict of sections; then `label_column`, `good_label`, `ignore` (added
    to `data.ignore`) and config sections as keywords override it, e.g.
    ``fit(frame, train={"epochs": 5, "seed": 1}, cluster={"min_cluster_size": 50})``.
    An unknown section or key is a `ConfigError` that names it.
    """
    over: list[dict[str, Any]] = [{name: dict(keys)} for name, keys in sections.items()]
    data_keys: dict[str, Any] = {}
    if label_column is not None:
        data_keys["label_column"] = label_column
    if good_label is not None:
        data_keys["good_label"] = good_label
    if data_keys:
        over.append({"data": data_keys})
    cfg = _config(config, over)
    if ignore:
        kept = list(cfg.data.ignore)
        cfg = _config(cfg, [{"data": {"ignore": kept + [c for c in ignore if c not in kept]}}])
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="trafficsiam-"))
    target = folder if out is not None else folder / "model"
    try:
        fitted = api.fit(data, target, cfg, force=force, quiet=quiet, report=report)
    except BaseException:
        if out is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return Model(artifact.load(fitted.path), fitted, temporary=out is None)


def load(path: str | Path) -> Model:
    """Load and verify the model folder `path` (format version, every file's SHA-256)."""
    return Model(artifact.load(path))
