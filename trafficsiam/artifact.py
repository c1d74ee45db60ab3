"""Artifact: the saved model, a folder a person can read.

    manifest.json         format version, package versions, full config, feature schema,
                          normaliser state, cluster table, training history, data
                          fingerprint, and the SHA-256 of every other file
    weights.safetensors   the Siamese MLP's weights (no pickle)
    reference.parquet     embeddings of the clustered training sample with scenario,
                          HDBSCAN label, membership strength and outlier score
    holdout.parquet       embeddings and scenarios of the held-out validation records
    assign.safetensors    the arrays `approximate_predict` needs besides the reference
                          embeddings (core distances, condensed-tree lookups), so that
                          scoring never refits HDBSCAN (spec in manifest["assign"])
    inputs.safetensors    input-space distances: k-means prototypes of each scenario's
                          normalised inputs (`prototypes`, `prototype_scenario`), of the
                          good training records (`good_prototypes`, ts_anomaly; and
                          `anomaly_prototypes` with `anomaly_set`, the k-means fits of the
                          saturated anomaly) and the held-out records' normalised inputs
                          (`holdout`: the decision is calibrated on them at load)
    clusters.csv          one row per cluster (and one for noise)
    history.csv           loss per epoch
    features_by_cluster.csv, examples.csv, report.html
                          the model's report (`trafficsiam.report.model_report`): written by
                          `save`'s `extras` before the manifest, so listed and hashed too

Writing goes to a hidden temporary folder beside the target, renamed into place at
the end: an interrupted fit never leaves a half-written model. Loading checks the
format version and every file's hash, refuses files the manifest does not list,
and never runs code from the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import hdbscan
import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trafficsiam import manifest as manifest_schema
from trafficsiam import paths
from trafficsiam import write as writing
from trafficsiam.assign import Assigner
from trafficsiam.calibrate import LEGACY_VOTE_NEIGHBOURS, KnownScorer
from trafficsiam.cluster import ClusterResult, restore_clusterer
from trafficsiam.config import Config, config_to_dict
from trafficsiam.contract import (
    ASSIGN,
    CLUSTERS,
    HISTORY,
    HOLDOUT,
    INPUTS,
    MANIFEST,
    MODEL_FORMAT,
    REFERENCE,
    WEIGHTS,
)
from trafficsiam.errors import ArtifactError, OutputError
from trafficsiam.model import SiameseMLP, embed
from trafficsiam.normalise import Normaliser
from trafficsiam.validate import FeatureSchema

if TYPE_CHECKING:
    from trafficsiam.train import TrainResult

FORMAT = MODEL_FORMAT
FORMAT_VERSION = 5
# Formats 1-4 were calibrated with per-cluster novelty thresholds that format 5's single
# calibrated decision replaced (`decide`): what their verdicts meant cannot be restated
# in p-values, so they are refused with the way out (refit). An older trafficsiam refuses
# a newer format rather than misread it.
MIN_FORMAT_VERSION = 5
PACKAGES = ("trafficsiam", "torch", "numpy", "pandas", "pyarrow", "scikit-learn", "hdbscan")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embedding_frame(emb: np.ndarray, **columns: Any) -> pd.DataFrame:
    frame = pd.DataFrame(emb.astype(np.float32), columns=[f"e{i}" for i in range(emb.shape[1])])
    for name, values in columns.items():
        frame[name] = values
    return frame


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 over the row hashes of the columns used: changes when any value changes."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


# A manifest is a page of JSON: anything this large is not one.
MAX_MANIFEST_BYTES = 64 << 20
# The files that make a model what it is (not its history's seconds or its report): the
# model id is derived from them, so a model derived from another (trafficsiam.derive:
# the same weights, a new reference or calibration) has an id of its own.
IDENTITY = (WEIGHTS, REFERENCE, HOLDOUT, INPUTS, ASSIGN, CLUSTERS)


def content_id(files: dict[str, str]) -> str:
    """The model id: 12 hex digits of the SHA-256 over the identity files' digests."""
    digest = hashlib.sha256()
    for name in IDENTITY:
        digest.update(f"{name}:{files[name]}\n".encode())
    return digest.hexdigest()[:12]


def cluster_facts(clustered: ClusterResult) -> dict[str, Any]:
    """The manifest's "clusters": HDBSCAN's parameters, what it made of the reference."""
    return {
        "params": clustered.params,
        "points": int(len(clustered.sample_idx)),
        "weighted_purity": clustered.weighted_purity,
        "explained_share": clustered.explained_share,
        "epsilon_selection": clustered.selection,
        "noise_share": clustered.noise_share,
        "table": clustered.table.to_dict(orient="records"),
    }


def build_manifest(
    cfg: Config, scenarios: Sequence[str] | np.ndarray, schema: FeatureSchema,
    normaliser: Normaliser, trained: TrainResult, clustered: ClusterResult,
    calibration: dict[str, Any], anomaly: dict[str, Any], input_dropout: dict[str, Any],
    data: dict[str, Any], timings: dict[str, float],
) -> dict[str, Any]:
    """manifest.json's content but for what `save` adds (format, files, model id):
    everything needed to rebuild the model and to tell how it was fitted. `data`: the
    training data's description (inputs, rows, fingerprint, counts, cleaning);
    `input_dropout`: the blanking rate trained with, and why (rule, rate, why)."""
    model = trained.model
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "config": config_to_dict(cfg),
        "label_column": cfg.data.label_column,
        "good_label": cfg.data.good_label,
        "scenarios": [str(s) for s in scenarios],
        "schema": schema.to_dict(),
        "normaliser": normaliser.to_dict(),
        "model": {
            "in_features": int(model.in_features),
            "hidden": list(cfg.model.hidden),
            "embedding_dim": cfg.model.embedding_dim,
            "dropout": cfg.model.dropout,
            "head": model.head,
        },
        "clusters": cluster_facts(clustered),
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
            "input_dropout": input_dropout,
            "history": trained.history,
        },
        "data": data,
        "timings": timings,
    }


def check_model_out(out: Path, force: bool) -> None:
    """Whether a model folder may be written to `out`: a new folder, or with `force` an
    existing model folder (or empty folder). `fit` asks before it reads or trains."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputError(
            f"{out}: already exists; choose another --out or pass --force to replace it"
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out")
    paths.replaceable(out)


def write_atomic_dir(
    out: Path, write: Callable[[Path], None], force: bool = False
) -> None:
    """Run `write(tmp)` into a temporary folder beside `out`, then move it into place."""
    out = Path(out)
    check_model_out(out, force)
    parent = writing.folder(out.parent if str(out.parent) else Path("."))
    tmp = parent / f".{out.name}.partial-{os.getpid()}"
    old = parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except (OSError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise writing.failed(out, err, "the model") from None
    except BaseException:
        # Ctrl-C included: no half-written model folder stays behind.
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save(
    out: Path,
    manifest: dict[str, Any],
    model: SiameseMLP,
    reference: pd.DataFrame,
    holdout: pd.DataFrame,
    inputs: dict[str, np.ndarray],
    assigner: Assigner,
    clusters: pd.DataFrame,
    history: pd.DataFrame,
    force: bool = False,
    extras: Callable[[Path, dict[str, Any]], list[str]] | None = None,
) -> dict[str, Any]:
    """Write the artifact folder; returns the full manifest as written. `extras(folder,
    manifest)` writes further files (the report) once the model's own files are hashed
    and the manifest is complete but for them, and returns their names, which the
    manifest then lists and hashes like every other file."""
    written: dict[str, Any] = {}

    def write(folder: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
        reference.to_parquet(folder / REFERENCE, index=False)
        holdout.to_parquet(folder / HOLDOUT, index=False)
        save_file(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()},
            str(folder / INPUTS), metadata={"format": FORMAT},
        )
        arrays, spec = assigner.to_arrays()
        save_file({k: torch.from_numpy(v) for k, v in arrays.items()}, str(folder / ASSIGN),
                  metadata={"format": FORMAT})
        clusters.to_csv(folder / CLUSTERS, index=False)
        history.to_csv(folder / HISTORY, index=False)
        files = {
            name: sha256_file(folder / name)
            for name in (WEIGHTS, REFERENCE, HOLDOUT, INPUTS, ASSIGN, CLUSTERS, HISTORY)
        }
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                "assign": spec, "files": files}
        full["model_id"] = content_id(files)
        for name in (extras(folder, full) if extras is not None else []):
            files[name] = sha256_file(_safe_member(folder, name))
        (folder / MANIFEST).write_text(writing.to_json(full), encoding="utf-8")
        written.update(full)

    write_atomic_dir(Path(out), write, force=force)
    return written


@dataclass
class Artifact:
    """A loaded model: everything needed to embed and assign new records."""

    path: Path
    manifest: dict[str, Any]
    config: Config
    schema: FeatureSchema
    normaliser: Normaliser
    model: SiameseMLP
    reference: pd.DataFrame
    holdout: pd.DataFrame
    inputs: dict[str, np.ndarray]
    assign_arrays: dict[str, np.ndarray]
    clusters: pd.DataFrame
    _clusterer: hdbscan.HDBSCAN | None = None
    _scorers: dict[float | None, KnownScorer] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return str(self.manifest["model_id"])

    @property
    def embedding_columns(self) -> list[str]:
        return [f"e{i}" for i in range(self.model.embedding_dim)]

    @property
    def clusterer(self) -> hdbscan.HDBSCAN:
        """HDBSCAN refitted from the stored reference embeddings (checked against stored labels)."""
        if self._clusterer is None:
            points = self.reference[self.embedding_columns].to_numpy(np.float64)
            labels = self.reference["cluster"].to_numpy(np.int64)
            self._clusterer = restore_clusterer(points, labels, self.manifest["clusters"]["params"])
        return self._clusterer

    @property
    def cluster_names(self) -> dict[int, str]:
        return {int(c): str(n) for c, n in zip(self.clusters["cluster"], self.clusters["name"],
                                               strict=True)}

    @property
    def cluster_scenarios(self) -> dict[int, str]:
        return {int(c): str(s) for c, s in zip(self.clusters["cluster"],
                                               self.clusters["scenario"], strict=True)}

    @property
    def cluster_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """(scenario name, is good traffic) by cluster id, the verdict's lookups (`score`,
        `evaluate.operating_points`): arrays of max(cluster) + 1 (at least 1) entries,
        None / False where no cluster has that id."""
        table = self.clusters
        top = max(int(table["cluster"].max()) + 1, 1)
        scenario_of = np.full(top, None, dtype=object)
        is_good = np.zeros(top, dtype=bool)
        for c, s, g in zip(table["cluster"], table["scenario"], table["is_good"], strict=True):
            if int(c) >= 0:
                scenario_of[int(c)] = str(s)
                is_good[int(c)] = bool(g)
        return scenario_of, is_good

    @property
    def holdout_good(self) -> np.ndarray:
        """Which held-out records are good traffic (the anomaly's calibration)."""
        return (self.holdout["scenario"].astype(str)
                == str(self.manifest["good_label"])).to_numpy()

    @property
    def scenario_codes(self) -> dict[str, int]:
        """Scenario name -> code (its index in manifest["scenarios"])."""
        return {str(name): i for i, name in enumerate(self.manifest["scenarios"])}

    def codes_of(self, names: pd.Series) -> np.ndarray:
        """Scenario codes of a column of scenario names (reference, holdout)."""
        lookup = self.scenario_codes
        return np.array([lookup[str(n)] for n in names], dtype=np.int64)

    @property
    def vote_neighbours(self) -> int:
        """The vote's neighbour count the model was calibrated with."""
        stored = self.manifest["calibration"].get("vote_neighbours")
        return LEGACY_VOTE_NEIGHBOURS if stored is None else int(stored)

    def scorer(self, saturation: float | None | Literal["stored", "auto"] = "stored"
               ) -> KnownScorer:
        """The `KnownScorer` of this model, calibrated on the stored held-out records (as
        at fit: the same records, the same numbers); with another anomaly saturation
        (None: Euclidean; "auto": the one chosen at fit, as "stored") the anomaly is
        measured that way and calibrated again."""
        stored = self.manifest["anomaly"].get("saturation")
        c = (stored if saturation in ("stored", "auto")
             else None if saturation is None else float(saturation))
        key = None if c is None else float(c)
        if key not in self._scorers:
            points = self.reference[self.embedding_columns].to_numpy(np.float64)
            scorer = KnownScorer(
                Assigner.from_arrays(points, self.assign_arrays, self.manifest["assign"]),
                self.reference["cluster"].to_numpy(np.int64),
                self.codes_of(self.reference["scenario"]),
                self.manifest["scenarios"],
                self.scenario_codes.get(str(self.manifest["good_label"]), -1),
                self.inputs["prototypes"],
                self.inputs["prototype_scenario"],
                self.inputs["good_prototypes"],
                saturation=c,
                anomaly_prototypes=self.inputs.get("anomaly_prototypes"),
                anomaly_set=self.inputs.get("anomaly_set"),
                vote_neighbours=self.vote_neighbours,
            )
            emb = self.holdout[self.embedding_columns].to_numpy(np.float64)
            scorer.calibrate(emb, self.inputs["holdout"], self.codes_of(self.holdout["scenario"]))
            self._scorers[key] = scorer
        return self._scorers[key]

    def embed(self, frame: pd.DataFrame) -> np.ndarray:
        x, _ = self.normaliser.transform(frame)
        return embed(self.model, x)


def _safe_member(folder: Path, name: str) -> Path:
    """A manifest-listed file name must be a plain name inside the folder."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or len(pure.parts) != 1 or name in (".", "..") or "\\" in name:
        raise ArtifactError(
            f"{folder / MANIFEST}: lists file {name!r} outside the model folder; "
            "the model folder is damaged or tampered with, refit or restore it"
        )
    member = folder / name
    if member.is_symlink():
        # A link could point anywhere, and its target can change after the hash is checked.
        raise ArtifactError(
            f"{member}: is a symbolic link; a model folder holds its own files, not links, "
            "so copy the real file in its place or refit the model"
        )
    return member


def load(path: str | Path) -> Artifact:
    """Load and verify a model folder written by `save`."""
    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such model folder; pass the --out folder of a fit")
    manifest_path = _safe_member(folder, MANIFEST)
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{manifest_path}: missing, so {folder} is not a trafficsiam model; "
            "pass the --out folder of a fit"
        )
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{manifest_path}: {manifest_path.stat().st_size:,} bytes is not "
                            "a model manifest; restore the model folder or refit the model")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{manifest_path}: not valid JSON ({err}); refit the model") from None
    except RecursionError:  # a nesting bomb
        raise ArtifactError(f"{manifest_path}: nested too deeply to be a model manifest; "
                            "restore the model folder or refit the model") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise ArtifactError(f"{manifest_path}: not a model manifest ({_first_line(err)}); "
                            "restore the model folder or refit the model") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{manifest_path}: not a trafficsiam model manifest; refit the model")
    fv = manifest.get("format_version")
    if isinstance(fv, int) and 1 <= fv < MIN_FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format version {fv} was calibrated with per-cluster novelty "
            f"thresholds, which trafficsiam {version('trafficsiam')} replaced by one "
            "calibrated decision (score.false_alarm_rate); refit the model with trafficsiam "
            "fit on the same data"
        )
    if not isinstance(fv, int) or fv > FORMAT_VERSION or fv < MIN_FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format version {fv!r} is not supported by trafficsiam "
            f"{version('trafficsiam')} (reads {MIN_FORMAT_VERSION} to {FORMAT_VERSION}); "
            "upgrade trafficsiam or refit the model"
        )
    checked = manifest_schema.check(manifest, manifest_path)
    files = checked.files
    listed = {MANIFEST}
    for name, digest in files.items():
        member = _safe_member(folder, name)
        listed.add(name)
        if not member.is_file():
            raise ArtifactError(f"{member}: listed in the manifest but missing; restore or refit")
        if sha256_file(member) != digest:
            raise ArtifactError(
                f"{member}: SHA-256 does not match the manifest (changed after fit); "
                "restore the original file or refit the model"
            )
    extra = sorted(p.name for p in folder.iterdir() if p.name not in listed)
    if extra:
        raise ArtifactError(
            f"{folder / extra[0]}: not listed in the manifest; a model folder holds only its "
            "own files, so remove it (and check where it came from)"
        )
    for required in IDENTITY:
        if required not in files:
            raise ArtifactError(f"{manifest_path}: does not list {required}; refit the model")
    # folders written before ids were content-derived carry their weights' digest
    if checked.model_id not in (content_id(files), files[WEIGHTS][:12]):
        raise ArtifactError(
            f"{manifest_path}: model_id {checked.model_id!r} does not match the model's files "
            "(the manifest was edited); restore the model folder or refit the model")

    try:
        return _build(folder, manifest, checked.config)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, SafetensorError) as err:
        # The manifest is not covered by its own hashes: a hand-edited one may lack keys or
        # hold values of the wrong type. One line, never a traceback.
        what = f"missing key {err}" if isinstance(err, KeyError) else _first_line(err)
        raise ArtifactError(
            f"{manifest_path}: damaged or edited by hand ({type(err).__name__}: {what}); "
            "restore the model folder or refit the model"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _build(folder: Path, manifest: dict[str, Any], config: Config) -> Artifact:
    """The verified folder's contents as an `Artifact` (`manifest` checked by
    `manifest_schema.check`, `config` its config)."""
    manifest_path = folder / MANIFEST
    spec = manifest["model"]
    normaliser = Normaliser.from_dict(manifest["normaliser"])
    model = _model(folder, manifest_path, spec, config, normaliser.n_features)
    inputs = {k: v.numpy() for k, v in load_file(str(folder / INPUTS)).items()}
    assign_arrays = {k: v.numpy() for k, v in load_file(str(folder / ASSIGN)).items()}
    reference = pd.read_parquet(folder / REFERENCE)
    holdout = pd.read_parquet(folder / HOLDOUT)
    _check_arrays(folder, normaliser.n_features, model.embedding_dim, inputs,
                  {REFERENCE: reference, HOLDOUT: holdout})
    return Artifact(
        path=folder,
        manifest=manifest,
        config=config,
        schema=FeatureSchema.from_dict(manifest["schema"]),
        normaliser=normaliser,
        model=model,
        reference=reference,
        holdout=holdout,
        inputs=inputs,
        assign_arrays=assign_arrays,
        clusters=pd.read_csv(folder / CLUSTERS, keep_default_na=False),
    )


def _model(folder: Path, manifest_path: Path, spec: dict[str, Any], config: Config,
           n_features: int) -> SiameseMLP:
    """The network the manifest describes, with its weights: the sizes checked against
    the config's ranges and the normaliser's width, and the layers built on torch's meta
    device and compared with the weights file's shapes before any memory is allocated
    (an edited manifest must not make torch allocate exabytes)."""
    hidden, dim = tuple(int(h) for h in spec["hidden"]), int(spec["embedding_dim"])
    if (int(spec["in_features"]) != n_features or hidden != tuple(config.model.hidden)
            or dim != config.model.embedding_dim):
        raise ArtifactError(
            f"{manifest_path}: the model's layers ({spec['in_features']} inputs, hidden "
            f"{list(hidden)}, {dim} outputs) do not match its config and normaliser "
            f"({n_features} inputs, hidden {list(config.model.hidden)}, "
            f"{config.model.embedding_dim} outputs); restore the model folder or refit")
    def build() -> SiameseMLP:  # models written before the heads existed are sigmoid models
        return SiameseMLP(n_features, hidden, dim, float(spec["dropout"]),
                          head=str(spec.get("head", "sigmoid")))
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    with safe_open(str(folder / WEIGHTS), "pt") as stored:  # headers only, no tensor read
        have = {k: tuple(stored.get_slice(k).get_shape()) for k in stored.keys()}  # noqa: SIM118
    if have != want:
        wrong = sorted(set(have.items()) ^ set(want.items()))[0][0]
        raise ArtifactError(
            f"{folder / WEIGHTS}: weights do not fit the model described in the manifest "
            f"(tensor {wrong!r}); refit the model")
    model = build()
    model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    return model.eval()


def _check_arrays(folder: Path, n_features: int, dim: int, inputs: dict[str, np.ndarray],
                  tables: dict[str, pd.DataFrame]) -> None:
    """The stored arrays are data of the right shape: finite, the prototypes and held-out
    inputs as wide as the normaliser's output, the embeddings as wide as the network's."""
    for name in ("prototypes", "good_prototypes", "anomaly_prototypes", "holdout"):
        arr = inputs.get(name)
        if arr is not None and (arr.ndim != 2 or arr.shape[1] != n_features
                                or not np.isfinite(arr).all()):
            raise ArtifactError(
                f"{folder / INPUTS}: '{name}' is not a finite [records, {n_features}] array "
                f"(shape {list(arr.shape)}); restore the model folder or refit the model")
    for name, table in tables.items():
        cols = [f"e{i}" for i in range(dim)]
        missing = [c for c in cols if c not in table.columns]
        if missing or not np.isfinite(table[cols].to_numpy(np.float64)).all():
            raise ArtifactError(
                f"{folder / name}: the embedding columns e0..e{dim - 1} are missing or not "
                "finite; restore the model folder or refit the model")
