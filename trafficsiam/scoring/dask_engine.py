"""The Dask engine: the local engine's two passes as two `map_partitions`.

    one dask.dataframe per parquet input (one partition: the whole file)
    -> stage 1 on the workers: assess in batches -> bottom-k sample, cleaning counts, rows
    -> client: merge the samples, discover the new types (exactly as the local engine)
    -> stage 2 on the workers: assess again, assign, add ts_*, write the output atomically
       -> verdict counts, example records -> merged on the client

A partition is cut into batches of exactly `score.batch_size` rows from its first row,
as the local engine cuts the file, and the same `passes.assess_file` / `passes.write_output`
run on them, so every output equals the local engine's record for record. Stage 2
recomputes the embeddings rather than spooling them: workers need not share a disk, and
the same batches give the same numbers.

Each input is its own `read_parquet`, not one call over the list, because dask sorts a
list of paths in natural order ("f2" before "f10", where the jobs are sorted as text)
and gives all files the first one's columns, where every input keeps its own.

A worker holds one whole input at a time (as pandas and as arrow), where the local
engine streams a batch at a time: split very large files before scoring them here.
The workers must see the model folder, the inputs and --out at the same paths as the
client. Each worker process loads the model once, on its first task (`worker_scoring`).
Dask is an optional extra: nothing here imports it before `run_dask` is called.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from trafficsiam import artifact, read, write
from trafficsiam.assign import Assigner
from trafficsiam.config import ScoreConfig
from trafficsiam.errors import ArtifactError, ConfigError, InputError
from trafficsiam.newtypes import NewTypes, Sample
from trafficsiam.scoring.batch import Scoring
from trafficsiam.scoring.local import NOT_RECORDED
from trafficsiam.scoring.passes import (
    Examples,
    Outcome,
    assess_file,
    assessed,
    batches,
    find_new_types,
    write_output,
)
from trafficsiam.scoring.plan import Job
from trafficsiam.scoring.tally import Tally

log = logging.getLogger("trafficsiam")

# What a partition task returns: one Python object in a one-row object Series.
_META = pd.Series([], dtype=object)
# A LocalCluster started for one run: more workers than this rarely pays for loading the
# model once more in each (a batch is already vectorised in numpy and torch).
MAX_LOCAL_WORKERS = 4
# A long-lived cluster may score with several models in turn; keep the latest few.
_CACHE_SIZE = 4
# Seconds to wait for the first worker of a --scheduler that has none yet.
WORKER_WAIT = 60


# --- the model, once per worker process --------------------------------------------------

_LOCK = threading.Lock()
_SCORINGS: dict[tuple[str, str, str], Scoring] = {}
_LOADS = 0


def worker_scoring(model_path: str, model_id: str, cfg: dict[str, Any]) -> Scoring:
    """The `Scoring` of this process for a model and score config, loaded on first use.

    Tasks receive the model's path and the config as a dict, never the loaded model, so
    the graph stays small and each worker reads the model folder once, not per task.
    """
    global _LOADS
    key = (model_path, model_id, json.dumps(cfg, sort_keys=True))
    with _LOCK:  # threads of one worker wait for the first load instead of repeating it
        found = _SCORINGS.get(key)
        if found is None:
            art = artifact.load(model_path)
            _LOADS += 1
            if art.model_id != model_id:
                raise ArtifactError(
                    f"{model_path}: now holds model {art.model_id}, but this run scores "
                    f"with {model_id}; the folder was replaced during the run, score again"
                )
            found = _SCORINGS[key] = Scoring(art, ScoreConfig(**cfg))
            while len(_SCORINGS) > _CACHE_SIZE:
                del _SCORINGS[next(iter(_SCORINGS))]
        return found


def loads() -> int:
    """How many times this process has loaded a model (for tests: `client.run(loads)`)."""
    return _LOADS


# --- new types, shipped to the workers -----------------------------------------------------

Shipped = tuple[NewTypes, dict[str, Any] | None]


def _ship(new_types: NewTypes) -> Shipped:
    """The new types without their Assigner, and the Assigner's fields: its kd-tree
    (pykdtree) cannot be pickled, so each task rebuilds it from the same points."""
    a = new_types.assigner
    fields = None if a is None else {
        f.name: getattr(a, f.name) for f in dataclasses.fields(a) if f.init
    }
    return dataclasses.replace(new_types, assigner=None), fields


def _unship(shipped: Shipped) -> NewTypes:
    bare, fields = shipped
    return bare if fields is None else dataclasses.replace(bare, assigner=Assigner(**fields))


# --- partition tasks ---------------------------------------------------------------------


def _arrow(frame: pd.DataFrame, scoring: Scoring, path: Path) -> pa.Table:
    """The partition as the arrow table the local engine reads from the file: the file's
    own schema (types and metadata), so outputs and example records match exactly."""
    schema = read.input_schema(path)
    # A stored pandas index is the frame's index (see `_read`): preserve_index makes it the
    # column the file holds again; a RangeIndex, which no column holds, is dropped.
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=True)
    return table.replace_schema_metadata(schema.metadata)


def _assess_partition(
    frame: pd.DataFrame, model_path: str, model_id: str, cfg: dict[str, Any], job: Job
) -> pd.Series:
    """Stage 1: (sample, cleaning counts, records) of one input."""
    scoring = worker_scoring(model_path, model_id, cfg)
    table = _arrow(frame, scoring, job.source.path)
    tally, sample = Tally(), Sample(scoring.cfg.max_new_points)
    rows = assess_file(scoring, job, batches(table, scoring.cfg.batch_size), tally, sample)
    return pd.Series([(sample, tally, rows)], dtype=object)


def _write_partition(
    frame: pd.DataFrame, model_path: str, model_id: str, cfg: dict[str, Any], job: Job,
    shipped: Shipped, target: str, run_id: str, expected: int,
) -> pd.Series:
    """Stage 2: stage one output beside its final name (the client publishes them all
    once every partition is written); (verdict counts, example records, staged path)."""
    scoring = worker_scoring(model_path, model_id, cfg)
    new_types = _unship(shipped)
    path = job.source.path
    table = _arrow(frame, scoring, path)
    tally, examples = Tally(), Examples()

    def write_one(tmp: Path) -> None:
        write_output(tmp, scoring, job, assessed(scoring, table, path), new_types, expected,
                     tally, examples, table.schema)

    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = write.stage(out, write_one, run_id, then=NOT_RECORDED)
    return pd.Series([(tally, examples, str(tmp))], dtype=object)


# --- the run on the client ---------------------------------------------------------------


def _read(dd: Any, path: Path, schema: pa.Schema) -> Any:
    """One input as a one-partition dask.dataframe, every column an arrow-backed dtype so
    that the partition converts back to exactly the arrow table the file holds (`_arrow`).

    A pandas index stored as a column (`__index_level_0__` after a filter, or a named one)
    is read as the frame's index, as dask insists, and `_arrow` makes it a column again;
    a RangeIndex is metadata only, and reading it as an index fails in dask when it has a
    name, so it is not read at all.
    """
    index_columns = (schema.pandas_metadata or {}).get("index_columns", [])
    stored = [c for c in index_columns if isinstance(c, str)]  # a RangeIndex is a dict
    if stored and len(index_columns) > 1:
        raise InputError(
            f"{path}: holds a pandas MultiIndex (index columns {index_columns}), which the "
            "Dask engine cannot read back; score it with --engine local, or write it "
            "with reset_index() first"
        )
    try:
        return dd.read_parquet(str(path), split_row_groups=False, dtype_backend="pyarrow",
                               index=None if stored else False)
    except (KeyError, ValueError, OSError) as err:
        raise InputError(
            f"{path}: Dask cannot read this parquet file ({read.first_line(err)}); "
            "score it with --engine local"
        ) from None


def preflight(paths: Sequence[Path]) -> None:
    """Refuse a Dask run before it starts: Dask missing, or CSV inputs."""
    try:
        import dask.dataframe  # noqa: F401
        import dask.distributed  # noqa: F401
    except ImportError:
        raise InputError("--engine dask needs Dask: pip install 'trafficsiam[dask]'") from None
    for path in paths:
        if read.is_csv(path):
            raise InputError(
                f"{path}: the Dask engine reads parquet only; score CSV with "
                "--engine local, or convert it to parquet first"
            )


def run_dask(
    scoring: Scoring, jobs: list[Job], out: Path, run_id: str, scheduler: str | None,
    quiet: bool,
) -> Outcome:
    """Score `jobs` on a Dask cluster: the `scheduler` address, or a LocalCluster started
    for this run. Returns what the local engine's `run_local` returns. Workers load the
    model from `scoring.art.path` and refuse a folder whose model id differs."""
    preflight([job.source.path for job in jobs])
    import dask
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    cfg = scoring.cfg
    model_path = scoring.art.path
    files = []
    for job in jobs:  # every input checked before any work, as the local engine does
        path = job.source.path
        schema = read.input_schema(path)
        scoring.check_schema(path, schema)
        files.append(_read(dd, path, schema))
    common = (str(Path(model_path).resolve()), scoring.model_id, cfg.model_dump())
    out = out.resolve()

    cluster: Any = None
    if scheduler is None:
        workers = min(os.cpu_count() or 1, MAX_LOCAL_WORKERS)
        # No dashboard, and the scheduler's HTTP routes on a free port: no warning about
        # port 8787 when another Dask runs on this machine. Errors only: a cluster that
        # lives for one run need not report its workers' comings and goings.
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"},
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler)
        except (OSError, ValueError) as err:  # unreachable, or not an address
            raise ConfigError(
                f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({err}); "
                "check the address, or leave --scheduler out to start a local cluster"
            ) from None
    try:
        if scheduler is not None:
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT)
            except TimeoutError:
                raise ConfigError(
                    f"--scheduler {scheduler}: no Dask worker joined within {WORKER_WAIT} s; "
                    f"start some with `dask worker {scheduler}`"
                ) from None
        n_workers = len(client.nthreads())

        def info(message: str, *args: Any) -> None:
            if not quiet:
                log.info("dask: " + message, *args)

        info("assessing %d partitions on %d workers", len(jobs), n_workers)
        assessed = client.gather(client.compute([
            frame.map_partitions(_assess_partition, *common, job, meta=_META)
            for frame, job in zip(files, jobs, strict=True)
        ]))
        tally, sample, rows = Tally(), Sample(cfg.max_new_points), {}
        for job, part in zip(jobs, assessed, strict=True):
            part_sample, part_tally, rows[job.index] = part.iloc[0]
            sample.merge(part_sample)
            tally.merge(part_tally)

        new_types = find_new_types(scoring, sample, "" if quiet else "dask: ")

        info("writing %d partitions on %d workers", len(jobs), n_workers)
        # One task holds the new types; every partition of stage 2 depends on it.
        shipped = dask.delayed(_ship(new_types), name=f"trafficsiam-new-types-{run_id}",
                               traverse=False)
        try:
            written = client.gather(client.compute([
                frame.map_partitions(_write_partition, *common, job, shipped,
                                     str(out / job.output), run_id, rows[job.index],
                                     meta=_META)
                for frame, job in zip(files, jobs, strict=True)
            ]))
        except BaseException:
            # the partitions that were staged: none of a failed run's outputs stay
            write.discard([(write.staged_name(out / job.output, run_id), out / job.output)
                           for job in jobs])
            raise
        examples: Examples = {}
        staged = []
        for job, part in zip(jobs, written, strict=True):
            part_tally, part_examples, tmp = part.iloc[0]
            tally.merge(part_tally)
            examples.update(part_examples)
            staged.append((Path(tmp), out / job.output))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return tally, new_types, examples, rows, staged
