"""Score: assign new batches of records to the known clusters and find new error types.

    plan (inputs -> outputs, state) -> pass 1: read features, normalise, embed, assess
    -> new types (cluster the unexplained) -> pass 2: stream every column, add ts_*,
    write atomically -> summary, clusters.csv, new_types.csv -> state committed

Every record keeps all its input columns and gains `TS_COLUMNS`. Input is streamed in
record batches of exactly `score.batch_size` rows counted from the start of each file,
so memory does not grow with the input, and the Dask engine (which cuts the same
batches out of its partitions) computes bit-identical results.

Pass 1 keeps what pass 2 needs in a spool file per input (a fixed-size record per row,
the embedding only for unexplained rows), so the model runs once per record; pass 2
re-reads the input with all its columns and writes the output beside a temporary name,
renamed into place when complete. Nothing is renamed before every input has been read
and checked, so bad input leaves no output at all.
"""

from __future__ import annotations

import ctypes
import glob as globlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from trafficsiam import artifact, read
from trafficsiam.artifact import Artifact
from trafficsiam.calibrate import KnownScorer
from trafficsiam.config import ScoreConfig
from trafficsiam.decide import NEW, VERDICTS, verdict_codes
from trafficsiam.errors import InputError, OutputError, os_reason
from trafficsiam.model import embed, one_thread
from trafficsiam.newtypes import NewTypes, Sample, discover, row_keys
from trafficsiam.normalise import MISSING_TOKEN, TransformCounts
from trafficsiam.report import run_report
from trafficsiam.report.collect import RecordSample
from trafficsiam.state import InputFile, StateStore, describe
from trafficsiam.validate import show

log = logging.getLogger("trafficsiam")
T = TypeVar("T")
R = TypeVar("R")

TS_COLUMNS = ("ts_cluster", "ts_scenario", "ts_strength", "ts_novelty", "ts_anomaly",
              "ts_p_good", "ts_verdict", "ts_new_type")
STATE_NAME = "trafficsiam-state.db"
WORK_NAME = ".trafficsiam-work"
SUMMARY, CLUSTERS_CSV, NEW_TYPES_CSV = "summary.json", "clusters.csv", "new_types.csv"
# Rows per forward pass while scoring: the hidden activations stay in cache (`embed`,
# activations in place: 0.24 us/row at 2,048 rows, 0.46 at 65,536; one thread).
SCORE_EMBED_BATCH = 2048
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
# `_atomic_write`'s temporary names: .<name>.<run id>.tmp
_TMP_NAME = re.compile(r"\..+\.\d{8}T\d{6}Z-[0-9a-f]{6}\.tmp")
# Pass 1 -> pass 2, one record per input row.
SPOOL = np.dtype([("cluster", "<i8"), ("scenario", "<i8"), ("strength", "<f8"),
                  ("novelty", "<f8"), ("anomaly", "<f8"), ("p_good", "<f8"),
                  ("explained", "u1"), ("good", "u1")])


# --- the model side: one per process (the Dask engine caches it per worker) -------------


def fixed_mmap_threshold(nbytes: int = 4 << 20) -> bool:
    """Make glibc serve every allocation of `nbytes` or more with its own mmap.

    glibc raises its mmap threshold each time a large block is freed, after which the
    per-batch temporaries (tens of MB: kNN results, prototype distances) come from the
    heap arenas of the scoring threads and fragment them: RSS then grew with the number
    of batches (708 -> 1,072 MiB over 5M rows); with the threshold fixed it stays flat
    (619-675 MiB). Process-wide and idempotent; False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
    except (OSError, AttributeError):
        return False


def _refuse(
    path: Path, start: int, col: str, values: pd.Series, bad: np.ndarray, why: str
) -> None:
    """One line naming the first bad value of a batch (file, row, column, value, fix)."""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path} row {start + i}: column '{col}' has value "
                         f"{show(values.iloc[i])} " + why.format(n=int(bad.sum())))


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind) or pa.types.is_decimal(kind))


def _is_nested(kind: pa.DataType) -> bool:
    return bool(pa.types.is_nested(kind))


def _all_numeric(values: Sequence[str]) -> bool:
    """Known categories that a number column could still match ('80', 'True', ...)."""
    kept = [v for v in values if v not in ("True", "False", MISSING_TOKEN)]
    parsed = pd.to_numeric(pd.Series(kept, dtype=object), errors="coerce")
    return bool(parsed.notna().all())


class Scoring:
    """A loaded model with its score config: turns record batches into ts_* columns."""

    def __init__(self, art: Artifact, cfg: ScoreConfig) -> None:
        fixed_mmap_threshold()
        self.art = art
        self.cfg = cfg
        self.scorer: KnownScorer = art.scorer(cfg.anomaly_saturation)
        self.scenario_names = np.array(art.manifest["scenarios"], dtype=object)
        self.features = list(art.schema.columns)
        self.numeric = set(art.schema.numeric)
        self.good_x = art.inputs["holdout"][art.holdout_good]
        if len(self.good_x) == 0:
            self.good_x = art.inputs["holdout"]

    @property
    def model_id(self) -> str:
        return self.art.model_id

    def check_columns(self, path: Path, columns: Sequence[str]) -> None:
        """Schema drift: every feature column present; no input column named like ours."""
        taken = [c for c in TS_COLUMNS if c in columns]
        if taken:
            raise InputError(
                f"{path}: column '{taken[0]}' is one that scoring adds; rename or drop it "
                "before scoring (trafficsiam never overwrites an input column)"
            )
        missing = [c for c in self.features if c not in columns]
        if missing:
            raise InputError(
                f"{path}: feature column '{missing[0]}' of model {self.model_id} is missing; "
                "export it again with that column, or score with a model fitted without it"
            )

    def check_schema(self, path: Path, schema: pa.Schema) -> None:
        """`check_columns`, then each feature's type against what the model was fitted on:
        once per input, so that a column exported differently fails with one line instead
        of being scored as all '(other)' or as nanoseconds."""
        self.check_columns(path, schema.names)
        for col in self.features:
            kind = schema.field(col).type
            value_type = kind.value_type if pa.types.is_dictionary(kind) else kind
            if col in self.numeric:
                if not (_is_number(value_type) or pa.types.is_string(value_type)
                        or pa.types.is_large_string(value_type)
                        or pa.types.is_null(value_type)):
                    raise InputError(
                        f"{path}: feature column '{col}' of model {self.model_id} is numeric "
                        f"but has type {kind} here; export it as numbers again, or refit the "
                        "model on data of this type"
                    )
            elif _is_nested(value_type) or (
                _is_number(value_type) and not _all_numeric(self.art.normaliser.categories[col])
            ):
                known = ", ".join(repr(v) for v in self.art.normaliser.categories[col][:3])
                raise InputError(
                    f"{path}: feature column '{col}' of model {self.model_id} held text at fit "
                    f"(values such as {known}) but has type {kind} here, so no value could "
                    "match; export it as text again, or refit the model on data of this type"
                )

    def feature_frame(self, table: pa.Table, path: Path, start: int) -> pd.DataFrame:
        """The feature columns as pandas, numeric ones checked and converted to float."""
        frame = table.select(self.features).to_pandas()
        for col in self.art.schema.numeric:
            values = frame[col]
            if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
                arr = values.to_numpy(dtype="float64", na_value=np.nan)
            else:
                present = values.notna().to_numpy()
                parsed = pd.to_numeric(values.where(present), errors="coerce")
                arr = parsed.to_numpy(dtype="float64", na_value=np.nan)
                _refuse(path, start, col, values, present & np.isnan(arr),
                        "in a numeric feature ({n} such values in this batch); "
                        "fix or blank those values")
            _refuse(path, start, col, values, np.isinf(arr),
                    "({n} infinite values in this batch); replace them with finite numbers "
                    "or leave them empty (missing)")
            frame[col] = arr
        return frame

    def assess(
        self, table: pa.Table, path: Path, start: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, TransformCounts]:
        """(spool records, embeddings float32, normalised inputs float32, cleaning counts)."""
        frame = self.feature_frame(table, path, start)
        x, cleaned = self.art.normaliser.transform(frame)
        emb = embed(self.art.model, x, SCORE_EMBED_BATCH)
        a = self.scorer.assess(emb, x, self.cfg.false_alarm_rate)
        spool = np.zeros(len(frame), dtype=SPOOL)
        spool["cluster"] = a.cluster
        spool["scenario"] = a.voted
        spool["strength"] = a.strength
        spool["novelty"] = a.novelty
        spool["anomaly"] = a.anomaly
        spool["p_good"] = a.p_good
        spool["explained"] = a.explained
        spool["good"] = a.good
        return spool, emb, x, cleaned

    def columns(
        self, spool: np.ndarray, new_type: np.ndarray
    ) -> tuple[dict[str, pa.Array], np.ndarray]:
        """The ts_* arrays of a batch and its verdict codes.

        `new_type` holds the candidate name of each unexplained row (None: outlier) and is
        ignored for explained rows.
        """
        n = len(spool)
        cluster = spool["cluster"]
        explained = spool["explained"].astype(bool)
        verdict = verdict_codes(explained, spool["good"].astype(bool), pd.notna(new_type))
        scenario = self.scenario_names[spool["scenario"]] if n else np.zeros(0, object)
        new_col = np.asarray(new_type, dtype=object).copy()
        new_col[explained] = None
        arrays = {
            "ts_cluster": pa.array(cluster, pa.int64()),
            "ts_scenario": pa.array(scenario, pa.string()),
            "ts_strength": pa.array(spool["strength"], pa.float64()),
            "ts_novelty": pa.array(spool["novelty"], pa.float64()),
            "ts_anomaly": pa.array(spool["anomaly"], pa.float64()),
            "ts_p_good": pa.array(spool["p_good"], pa.float64()),
            "ts_verdict": pa.DictionaryArray.from_arrays(
                pa.array(verdict, pa.int8()), pa.array(VERDICTS)
            ).dictionary_decode(),
            "ts_new_type": pa.array(new_col if n else [], pa.string()),
        }
        return arrays, verdict


# --- counts that add up across batches, files and workers -----------------------------


@dataclass
class Tally:
    rows: int = 0
    # (cluster, verdict code) -> records; cluster -1 is "none"
    by_cluster: dict[tuple[int, int], int] = field(default_factory=dict)
    # (candidate, nearest known cluster) -> records
    by_new_type: dict[tuple[str, int], int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)
    # What the report needs (per-group counts and row samples), filled in pass 2.
    sample: RecordSample | None = None

    def report_sample(self, scoring: Scoring) -> RecordSample:
        if self.sample is None:
            self.sample = RecordSample.for_model(scoring.art.manifest)
        return self.sample

    def add_cleaning(self, counts: TransformCounts) -> None:
        for mine, theirs in ((self.missing, counts.missing), (self.clipped, counts.clipped),
                             (self.other, counts.other)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + int(v)

    def add_batch(self, spool: np.ndarray, verdict: np.ndarray, new_type: np.ndarray) -> None:
        self.rows += len(spool)
        if len(spool) == 0:
            return
        # One bincount over (cluster + 1) * 4 + verdict: np.unique(axis=1) sorted 1 s/1M rows.
        key = (spool["cluster"] + 1) * len(VERDICTS) + verdict.astype(np.int64)
        counts = np.bincount(key)
        for k in np.flatnonzero(counts).tolist():
            c, v = divmod(k, len(VERDICTS))
            self.by_cluster[(c - 1, v)] = self.by_cluster.get((c - 1, v), 0) + int(counts[k])
        is_new = verdict == NEW
        if is_new.any():
            frame = pd.DataFrame({"t": new_type[is_new], "c": spool["cluster"][is_new]})
            for (t, c), k in frame.value_counts().items():
                pair = (str(t), int(c))
                self.by_new_type[pair] = self.by_new_type.get(pair, 0) + int(k)

    def merge(self, other: Tally) -> None:
        self.rows += other.rows
        pairs: list[tuple[dict[Any, int], dict[Any, int]]] = [
            (self.by_cluster, other.by_cluster), (self.by_new_type, other.by_new_type),
            (self.missing, other.missing), (self.clipped, other.clipped),
            (self.other, other.other),
        ]
        for mine, theirs in pairs:
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        if other.sample is not None:
            if self.sample is None:
                self.sample = RecordSample(**{**vars(other.sample), "groups": {}})
            self.sample.merge(other.sample)

    def verdicts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for (_, v), k in self.by_cluster.items():
            out[VERDICTS[v]] += k
        return out


# --- reading -----------------------------------------------------------------------------


def _dataset(path: Path, features: Sequence[str], numeric: set[str]) -> ds.Dataset:
    if read._is_csv(path):
        header = read.read_columns(path)
        # CSV has no types: pass-through columns stay text exactly as written (ids with
        # leading zeros survive), numeric features are parsed as float, categoricals as text.
        types = {c: (pa.float64() if c in numeric else pa.string()) for c in header}
        fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True))
        return ds.dataset(path, format=fmt)
    return ds.dataset(path, format="parquet")


def iter_chunks(
    path: Path, columns: Sequence[str] | None, batch_size: int,
    features: Sequence[str], numeric: set[str],
) -> Iterator[tuple[int, pa.Table]]:
    """(first row, table) for consecutive chunks of exactly `batch_size` rows (the last
    may be shorter), whatever the file's row groups or CSV blocks. Parquet is streamed
    with `ParquetFile.iter_batches`, CSV with a `pyarrow.dataset` scanner."""
    with read._reading(path):
        cols = list(columns) if columns else None
        if read._is_csv(path):
            batches: Iterator[pa.RecordBatch] = _dataset(path, features, numeric).to_batches(
                columns=cols, batch_size=batch_size, use_threads=True)
        else:
            # Not pyarrow.dataset for parquet: its scanner reads row groups ahead and keeps
            # them, so peak memory grew with the file (711 -> 1,595 MiB from 1M to 5M rows
            # in bench/score_throughput.py); iter_batches without pre-buffering holds about
            # one row group, and reads 20-40% faster here.
            batches = pq.ParquetFile(path, pre_buffer=False).iter_batches(
                batch_size=batch_size, columns=cols, use_threads=True)
        pending: list[pa.RecordBatch] = []
        held = start = 0
        for batch in batches:
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_size:
                table = pa.Table.from_batches(pending, schema=batch.schema)
                if len(pending) > 1:
                    # A chunk that spans a row-group boundary: copy it, so that slices of
                    # the previous row group do not keep all of its buffers alive while
                    # the next one is decoded (peak memory +12% at 5 row groups).
                    table = table.combine_chunks()
                yield start, table.slice(0, batch_size)
                start += batch_size
                held -= batch_size
                rest = table.slice(batch_size)
                pending = rest.to_batches() if held else []
        if held:
            yield start, pa.Table.from_batches(pending)


def count_rows(path: Path) -> int | None:
    if read._is_csv(path):
        return None
    with read._reading(path):
        return int(pq.ParquetFile(path).metadata.num_rows)


def input_schema(path: Path, features: Sequence[str], numeric: set[str]) -> pa.Schema:
    with read._reading(path):
        return _dataset(path, features, numeric).schema


# --- planning ----------------------------------------------------------------------------


def _root_of(spec: str) -> Path:
    """The folder an input spec is relative to: a folder itself, a glob's fixed prefix,
    or a file's parent."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    if globlib.has_magic(spec):
        fixed = []
        for part in path.parts:
            if globlib.has_magic(part):
                break
            fixed.append(part)
        return Path(*fixed).resolve() if fixed else Path.cwd()
    return path.resolve().parent


def output_names(specs: Sequence[str], paths: Sequence[Path]) -> dict[Path, str]:
    """Output file name (relative to --out) per input: its path below the folder the
    input spec names, as .parquet. Unique by construction within a spec."""
    roots = [_root_of(s) for s in specs]
    names: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    for path in paths:
        resolved = path.resolve()
        root = next((r for r in roots if resolved.is_relative_to(r)), resolved.parent)
        rel = resolved.relative_to(root).with_suffix(".parquet").as_posix()
        if rel in seen:
            raise InputError(
                f"{path}: would be written to the same output '{rel}' as {seen[rel]}; "
                "score them in separate runs with different --out folders"
            )
        seen[rel] = path
        names[path] = rel
    return names


@dataclass
class Job:
    index: int
    source: InputFile
    output: str  # relative to --out
    rows: int | None  # None: CSV, counted while reading


# --- the run -----------------------------------------------------------------------------


@dataclass
class ScoreResult:
    run_id: str | None
    out: Path
    summary: dict[str, Any]
    outputs: list[tuple[Path, Path, int]]  # (input, output, rows)
    skipped: list[Path]
    new_types: pd.DataFrame

    @property
    def found_new_types(self) -> bool:
        return len(self.new_types) > 0


def _progress(total: int | None, desc: str, quiet: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, leave=False,
                disable=quiet or not sys.stderr.isatty(), file=sys.stderr)


def _write_failed(path: Path, err: OSError) -> OutputError:
    """A full disk, a quota or a file size limit: one line naming the file and the fix."""
    return OutputError(
        f"{path}: could not write ({os_reason(err)}); free space on that disk (or raise its "
        "quota or file size limit), or choose another --out; nothing was recorded as scored"
    )


def _atomic_write(path: Path, write: Any, run_id: str) -> None:
    tmp = path.with_name(f".{path.name}.{run_id}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_failed(path, err) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    try:
        return artifact.json_default(value)
    except TypeError:
        return str(value)  # timestamps, decimals, bytes of example records


def _json(path: Path, data: Any, run_id: str) -> None:
    text = json.dumps(data, indent=2, default=_jsonable) + "\n"
    _atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"), run_id)


def _csv(path: Path, frame: pd.DataFrame, run_id: str) -> None:
    _atomic_write(path, lambda p: frame.to_csv(p, index=False), run_id)


def score(
    model: str | Path | Artifact,
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    config: ScoreConfig | None = None,
    state: str | Path | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    rescore: bool = False,
    wait: float = 0.0,
    quiet: bool = False,
    report: bool = True,
) -> ScoreResult:
    """Score the new or changed input files into `out`; see the module docstring.
    `report=False`: no report.html (the CSV tables are written all the same)."""
    art = model if isinstance(model, Artifact) else artifact.load(model)
    cfg = config or art.config.score
    specs = [str(s) for s in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    paths = read.resolve_inputs(specs)
    names = output_names(specs, paths)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot create the output folder ({err.strerror})") from None
    state_path = Path(state) if state is not None else out / STATE_NAME
    if engine == "dask":
        from trafficsiam.dask_engine import preflight

        preflight(paths)
    elif engine != "local":
        raise InputError(f"engine {engine!r}: unknown engine; use local or dask")
    clock = time.perf_counter()

    with StateStore(state_path) as store, store.lock(wait=wait):
        _remove_leftovers(out)
        described = [describe(p) for p in paths]
        todo, skipped = store.pending(described, rescore=rescore)
        if skipped:
            log.info("%d input(s) already scored with the same content: skipped",
                     len(skipped))
        if not todo:
            log.info("nothing new to score in %s", ", ".join(specs))
            return ScoreResult(None, out, {}, [], [f.path for f in skipped],
                               pd.DataFrame(columns=["new_type"]))
        by_path = {p.resolve(): p for p in paths}
        jobs = [Job(i, f, names[by_path[f.path]], count_rows(by_path[f.path]))
                for i, f in enumerate(todo)]
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        store.begin_run(run_id, art.model_id, todo, out)
        try:
            scoring = Scoring(art, cfg)
            if engine == "dask":
                from trafficsiam.dask_engine import run_dask

                tally, new_types, examples, rows = run_dask(
                    scoring, jobs, out, run_id, scheduler, quiet
                )
            else:
                tally, new_types, examples, rows = _run_local(scoring, jobs, out, run_id, quiet)
            _warn_unknown_categories(scoring, tally, specs)
            # The inputs are hashed again (a file rewritten while we read it must not be
            # recorded) while the tables and the page are built: hashlib releases the GIL.
            # Nothing is written before the hashes are checked.
            with ThreadPoolExecutor(max_workers=1) as pool:
                rehashed = pool.submit(lambda: [describe(j.source.path) for j in jobs])
                summary, clusters, table = _reports(
                    scoring, jobs, rows, tally, new_types, examples, run_id, out, skipped,
                    time.perf_counter() - clock, engine,
                )
                sample = tally.report_sample(scoring)
                run = run_report.run_tables(art, sample, summary, clusters, table)
                page = (run_report.run_page(art, run, sample, store.summaries())
                        if report else None)
                for job, now in zip(jobs, rehashed.result(), strict=True):
                    if now.sha256 != job.source.sha256:
                        raise OutputError(
                            f"{job.source.path}: changed while it was being scored; rerun "
                            "when the file is complete (its output may mix old and new "
                            "records)"
                        )
            _csv(out / CLUSTERS_CSV, run.clusters, run_id)
            _csv(out / NEW_TYPES_CSV, run.new_types, run_id)
            _csv(out / run_report.FEATURES_CSV, run.features, run_id)
            _json(out / SUMMARY, summary, run_id)
            if page is not None:
                _atomic_write(out / run_report.REPORT_HTML,
                              lambda p: Path(p).write_text(page, encoding="utf-8"), run_id)
            else:  # an earlier run's page would sit beside this run's tables
                (out / run_report.REPORT_HTML).unlink(missing_ok=True)
            store.finish_run(
                run_id, {j.source: (out / j.output, rows[j.index]) for j in jobs}, summary
            )
        except BaseException as err:
            try:
                store.fail_run(run_id, f"{type(err).__name__}: {err}".splitlines()[0])
            except OutputError:
                pass  # the state cannot be written either (a full disk): `err` says why
            raise
    return ScoreResult(
        run_id, out, summary,
        [(by_path[j.source.path], out / j.output, rows[j.index]) for j in jobs],
        [f.path for f in skipped], table,
    )


def _warn_unknown_categories(scoring: Scoring, tally: Tally, specs: Sequence[str]) -> None:
    """A categorical feature none of whose values the model knows is usually exported
    differently than at fit (case, codes instead of names): said once per run."""
    for col in scoring.art.schema.categorical:
        if tally.rows and tally.other.get(col, 0) >= tally.rows:
            known = ", ".join(repr(v) for v in scoring.art.normaliser.categories[col][:5])
            log.warning(
                "%s: column '%s' has no value the model knows in any of the %d records "
                "(known: %s); all are scored as '(other)', so check that the column is "
                "exported as at fit (spelling, case, codes)",
                ", ".join(specs), col, tally.rows, known,
            )


def _remove_leftovers(out: Path) -> None:
    """Temporary files of a killed run (we hold the lock, so no live run owns them)."""
    for tmp in out.rglob(".*.tmp"):
        if tmp.is_file() and _TMP_NAME.fullmatch(tmp.name):
            tmp.unlink(missing_ok=True)
    shutil.rmtree(out / WORK_NAME, ignore_errors=True)


def _run_local(
    scoring: Scoring, jobs: list[Job], out: Path, run_id: str, quiet: bool
) -> tuple[Tally, NewTypes, dict[tuple[int, int], dict[str, Any]], dict[int, int]]:
    cfg = scoring.cfg
    work = out / WORK_NAME
    shutil.rmtree(work, ignore_errors=True)  # a killed run's leftovers; we hold the lock
    work.mkdir()
    total = sum(j.rows or 0 for j in jobs) or None
    tally = Tally()
    sample = Sample(cfg.max_new_points)
    rows: dict[int, int] = {}
    try:
        # Pass 1: check every input and assess every record before writing any output.
        for job in jobs:
            path = job.source.path
            scoring.check_schema(path, input_schema(path, scoring.features, scoring.numeric))
        bar = _progress(total, "scoring", quiet)
        for job in jobs:
            path = job.source.path
            bar.set_description_str(f"scoring {job.index + 1}/{len(jobs)} {path.name}")
            try:
                with open(work / f"{job.index}.spool", "wb") as fh, \
                        open(work / f"{job.index}.emb", "wb") as fe:

                    def spill(spool: np.ndarray, emb_u: np.ndarray,
                              fh: BinaryIO = fh, fe: BinaryIO = fe) -> None:
                        spool.tofile(fh)
                        emb_u.tofile(fe)

                    chunks = iter_chunks(path, scoring.features, cfg.batch_size,
                                         scoring.features, scoring.numeric)
                    rows[job.index] = assess_file(scoring, job, chunks, tally, sample, spill,
                                                  bar.update)
            except OSError as err:  # reading errors are InputErrors already: this is the spool
                raise _write_failed(work / f"{job.index}.spool", err) from None
            if not quiet and bar.disable:
                log.info("assessed %s (%d records)", path, rows[job.index])
        bar.close()

        new_types = discover(sample, cfg, scoring.good_x, scoring.art.normaliser)
        if len(new_types.names):
            log.info("%d candidate new error type(s) among %d unexplained records sampled",
                     len(new_types.names), len(sample))

        # Pass 2: every column, plus ts_*, written beside a temporary name.
        examples: dict[tuple[int, int], dict[str, Any]] = {}
        bar = _progress(total, "writing", quiet)
        for job in jobs:
            path = job.source.path
            bar.set_description_str(f"writing {job.index + 1}/{len(jobs)} {path.name}")
            target = out / job.output
            target.parent.mkdir(parents=True, exist_ok=True)

            def write(tmp: Path, job: Job = job, path: Path = path) -> None:
                with open(work / f"{job.index}.spool", "rb") as fh, \
                        open(work / f"{job.index}.emb", "rb") as fe:
                    write_output(tmp, scoring, job, prefetch(_spooled(scoring, path, fh, fe)),
                                 new_types,
                                 rows[job.index], tally, examples, bar.update)

            _atomic_write(target, write, run_id)
            if not quiet and bar.disable:
                log.info("wrote %s (%d records)", target, rows[job.index])
        bar.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tally, new_types, examples, rows


# --- one input file, shared by the local and the Dask engines ------------------------------


def assess_file(
    scoring: Scoring, job: Job, chunks: Iterable[tuple[int, pa.Table]], tally: Tally,
    sample: Sample, spill: Callable[[np.ndarray, np.ndarray], None] | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Pass 1 over the (first row, table) chunks of one input: assess every record, count
    the cleaning into `tally`, offer the unexplained records to `sample`, and hand each
    chunk's spool records and unexplained embeddings to `spill` (where pass 2 will not
    recompute them). Returns the number of records."""
    path = job.source.path

    def assess(chunk: tuple[int, pa.Table]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      TransformCounts]:
        return scoring.assess(chunk[1], path, chunk[0])

    # Two batches at once, each on one core, instead of one batch at a time on both:
    # kernels split over 2 cores idle between them (pandas, Python), and two batches each
    # on 2 threads oversubscribe the machine. Measured 1M/5M rows: 106-110k / 137k rows/s
    # with 2-thread kernels, 158k / 187k with this (BENCHMARKS.md).
    with one_thread():
        return _assess_chunks(ahead(chunks, assess, initializer=_single_threaded_openmp),
                              job, tally, sample, spill, progress)


def _assess_chunks(
    assessed: Iterable[tuple[tuple[int, pa.Table],
                             tuple[np.ndarray, np.ndarray, np.ndarray, TransformCounts]]],
    job: Job, tally: Tally, sample: Sample,
    spill: Callable[[np.ndarray, np.ndarray], None] | None,
    progress: Callable[[int], object] | None,
) -> int:
    """The bookkeeping of `assess_file` for each assessed chunk, in order."""
    n = 0
    for (start, _), (spool, emb, x, cleaned) in assessed:
        tally.add_cleaning(cleaned)
        u = np.flatnonzero(~spool["explained"].astype(bool))
        if spill is not None:
            spill(spool, emb[u])
        sample.offer(row_keys(job.source.sha256, start + u), job.index, start + u,
                     emb[u], x[u], spool["novelty"][u])
        n += len(spool)
        if progress is not None:
            progress(len(spool))
    return n


def write_output(
    tmp: Path, scoring: Scoring, job: Job,
    chunks: Iterable[tuple[int, pa.Table, np.ndarray, np.ndarray]], new_types: NewTypes,
    expected: int, tally: Tally, examples: dict[tuple[int, int], dict[str, Any]],
    progress: Callable[[int], object] | None = None,
) -> None:
    """Pass 2 for one input: each chunk (first row, every input column, its spool records,
    the embeddings of its unexplained rows) gains the ts_* columns and is written to the
    parquet file `tmp`; the verdicts go into `tally`, the example records of `new_types`
    that lie in this input into `examples`. `expected` is the record count of pass 1."""
    path = job.source.path
    wanted = [ex for exs in new_types.examples.values() for ex in exs if ex[0] == job.index]
    writer: pq.ParquetWriter | None = None
    written = 0

    sample = tally.report_sample(scoring)  # added to by the thread below alone

    def finished() -> Iterator[pa.Table]:
        for start, table, spool, emb_u in chunks:
            result, verdict, new_type = _finish(scoring, spool, emb_u, new_types)
            for name, arr in result.items():
                table = table.append_column(name, arr)
            sample.add(job.source.sha256, job.index, start, table, verdict, new_type)
            tally.add_batch(spool, verdict, new_type)
            for f, r in wanted:
                if start <= r < start + table.num_rows:
                    examples[(f, r)] = table.slice(r - start, 1).to_pylist()[0]
            yield table

    # The ts_* columns of the next chunk, its counts and the report's sample of it are
    # built in a thread while this one is encoded and written (parquet encoding releases
    # the GIL), which leaves the writer alone in this thread: pass 2 takes about as long
    # as the write alone instead of the sum (BENCHMARKS.md). Everything the thread adds
    # to is read only after the last chunk.
    for table in prefetch(finished(), depth=1):
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
        written += table.num_rows
        if progress is not None:
            progress(table.num_rows)
    if writer is None:  # an input with no rows still gets its (empty) output
        empty = input_schema(path, scoring.features, scoring.numeric).empty_table()
        arrays, _ = scoring.columns(np.zeros(0, SPOOL), np.zeros(0, object))
        for name, arr in arrays.items():
            empty = empty.append_column(name, arr)
        writer = pq.ParquetWriter(tmp, empty.schema)
        writer.write_table(empty)
    writer.close()
    if written != expected:
        raise OutputError(
            f"{path}: read {written} records in the second pass but {expected} in the "
            "first; the file changed during scoring, rerun when it is complete"
        )


def ahead(
    items: Iterable[T], fn: Callable[[T], R], depth: int = 1,
    initializer: Callable[[], object] | None = None,
) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) in order, with up to `depth` later items computed meanwhile in
    `depth + 1` threads (each started with `initializer`). Each batch is computed alone,
    so the results do not depend on it; the kNN, BLAS and torch kernels release the GIL."""
    with ThreadPoolExecutor(max_workers=depth + 1, initializer=initializer) as pool:
        pending: deque[tuple[T, Future[R]]] = deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > depth:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()


def _single_threaded_openmp() -> None:
    """OpenMP regions started by this thread (pykdtree's kNN) use one thread."""
    ThreadpoolController().limit(limits=1, user_api="openmp")


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """The items of `items`, produced by a background thread up to `depth` ahead (pass 2
    reads the next chunk while this one is written)."""
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((True, item), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((False, None))
        except BaseException as err:  # handed to the consumer, raised there
            queue.put((False, err))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            ok, value = queue.get()
            if not ok:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                queue.get(timeout=0.1)
            except Empty:
                pass


def _spooled(
    scoring: Scoring, path: Path, spool_file: BinaryIO, emb_file: BinaryIO
) -> Iterator[tuple[int, pa.Table, np.ndarray, np.ndarray]]:
    """The local engine's pass 2 chunks: every column read again, pass 1's results from
    its spool files."""
    dim = scoring.art.model.embedding_dim
    for start, table in iter_chunks(path, None, scoring.cfg.batch_size, scoring.features,
                                    scoring.numeric):
        spool = np.fromfile(spool_file, dtype=SPOOL, count=table.num_rows)
        n_u = int(np.count_nonzero(spool["explained"] == 0))
        emb_u = np.fromfile(emb_file, dtype=np.float32, count=n_u * dim).reshape(n_u, dim)
        yield start, table, spool, emb_u


def _finish(
    scoring: Scoring, spool: np.ndarray, emb_u: np.ndarray, new_types: NewTypes
) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray]:
    """ts_* columns, verdicts and candidate names of one chunk; `emb_u` holds the
    embeddings of its unexplained rows, in row order."""
    u = np.flatnonzero(~spool["explained"].astype(bool))
    new_type = np.full(len(spool), None, dtype=object)
    new_type[u] = new_types.assign(emb_u)
    result, verdict = scoring.columns(spool, new_type)
    return result, verdict, new_type


def _reports(
    scoring: Scoring, jobs: list[Job], rows: dict[int, int], tally: Tally,
    new_types: NewTypes, examples: dict[tuple[int, int], dict[str, Any]], run_id: str,
    out: Path, skipped: list[InputFile], seconds: float, engine: str,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
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
    type_rows = []
    for _, row in new_types.table.iterrows():
        name = str(row["new_type"])
        near = {c: k for (t, c), k in tally.by_new_type.items() if t == name}
        size = sum(near.values())
        nearest = max(near, key=lambda c: (near[c], -c)) if near else -1
        exs = new_types.examples.get(name, [])
        type_rows.append({
            "new_type": name,
            "records": size,
            "share": size / total,
            "sample_records": int(row["sample_records"]),
            "median_novelty": round(float(row["median_novelty"]), 4),
            "nearest_known": names.get(nearest, "none") if nearest >= 0 else "none",
            "top_features": row["top_features"],
            "examples": "; ".join(f"{inputs_of[f].source.path}:{r}" for f, r in exs),
            "_features": row["features"],
            "_examples": [
                {"input": str(inputs_of[f].source.path), "row": r,
                 "record": {k: v for k, v in examples.get((f, r), {}).items()}}
                for f, r in exs
            ],
        })
    table = pd.DataFrame(type_rows, columns=[
        "new_type", "records", "share", "sample_records", "median_novelty", "nearest_known",
        "top_features", "examples", "_features", "_examples"])
    summary = {
        "run_id": run_id,
        "model": {"id": art.model_id, "path": str(art.path)},
        "engine": engine,
        "records": tally.rows,
        "verdicts": tally.verdicts(),
        "clusters": clusters.to_dict(orient="records"),
        "new_types": [
            {**{k: v for k, v in r.items() if not k.startswith("_") and k != "examples"},
             "features": r["_features"], "examples": r["_examples"]}
            for r in type_rows
        ],
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
    return summary, clusters, table.drop(columns=["_features", "_examples"])
