"""The local engine: the two passes in this process, input after input.

Pass 1 keeps what pass 2 needs in a spool file per input (a fixed-size record per row,
the embedding only for unexplained rows), so the model runs once per record; pass 2
re-reads the input with all its columns and writes the output beside a temporary name,
renamed into place when complete. Nothing is renamed before every input has been read
and checked, so bad input leaves no output at all.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from trafficsiam import read, write
from trafficsiam.contract import WORK_NAME
from trafficsiam.newtypes import Sample
from trafficsiam.scoring.batch import SPOOL, Scoring
from trafficsiam.scoring.passes import (
    Chunk,
    Examples,
    Outcome,
    assess_file,
    find_new_types,
    write_output,
)
from trafficsiam.scoring.plan import Job
from trafficsiam.scoring.tally import Tally
from trafficsiam.scoring.threads import prefetch

log = logging.getLogger("trafficsiam")
# The end of the message when an output cannot be written.
NOT_RECORDED = "; nothing was recorded as scored"


def _progress(total: int | None, desc: str, quiet: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, leave=False,
                disable=quiet or not sys.stderr.isatty(), file=sys.stderr)


def run_local(
    scoring: Scoring, jobs: list[Job], out: Path, run_id: str, quiet: bool
) -> Outcome:
    """Score `jobs` into `out` in this process (see the module doc)."""
    cfg = scoring.cfg
    work = out / WORK_NAME
    shutil.rmtree(work, ignore_errors=True)  # a killed run's leftovers; we hold the lock
    work.mkdir()
    total = sum(j.rows or 0 for j in jobs) or None
    tally = Tally()
    sample = Sample(cfg.max_new_points)
    rows: dict[int, int] = {}
    staged: list[tuple[Path, Path]] = []
    try:
        # Pass 1: check every input and assess every record before writing any output.
        schemas: dict[int, pa.Schema] = {}
        for job in jobs:
            path = job.source.path
            schemas[job.index] = read.input_schema(path, scoring.numeric)
            scoring.check_schema(path, schemas[job.index])
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

                    chunks = read.iter_chunks(path, scoring.features, cfg.batch_size)
                    rows[job.index] = assess_file(scoring, job, chunks, tally, sample, spill,
                                                  bar.update)
            except OSError as err:  # reading errors are InputErrors already: this is the spool
                raise write.failed(work / f"{job.index}.spool", err,
                                   then=NOT_RECORDED) from None
            if not quiet and bar.disable:
                log.info("assessed %s (%d records)", path, rows[job.index])
        bar.close()

        new_types = find_new_types(scoring, sample)

        # Pass 2: every column, plus ts_*, staged beside a temporary name; the run moves
        # them into place with its tables once all are written (none if any fails).
        examples: Examples = {}
        bar = _progress(total, "writing", quiet)
        for job in jobs:
            path = job.source.path
            bar.set_description_str(f"writing {job.index + 1}/{len(jobs)} {path.name}")
            target = out / job.output
            target.parent.mkdir(parents=True, exist_ok=True)

            def write_one(tmp: Path, job: Job = job, path: Path = path) -> None:
                with open(work / f"{job.index}.spool", "rb") as fh, \
                        open(work / f"{job.index}.emb", "rb") as fe:
                    write_output(tmp, scoring, job, prefetch(_spooled(scoring, path, fh, fe)),
                                 new_types, rows[job.index], tally, examples,
                                 schemas[job.index], bar.update)

            staged.append((write.stage(target, write_one, run_id, then=NOT_RECORDED),
                           target))
            if not quiet and bar.disable:
                log.info("wrote %s (%d records)", target, rows[job.index])
        bar.close()
    except BaseException:
        write.discard(staged)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tally, new_types, examples, rows, staged


def _spooled(
    scoring: Scoring, path: Path, spool_file: BinaryIO, emb_file: BinaryIO
) -> Iterator[Chunk]:
    """Pass 2's chunks: every column read again, pass 1's results from its spool files."""
    dim = scoring.art.model.embedding_dim
    for start, table in read.iter_chunks(path, None, scoring.cfg.batch_size,
                                         scoring.numeric):
        spool = np.fromfile(spool_file, dtype=SPOOL, count=table.num_rows)
        n_u = int(np.count_nonzero(spool["explained"] == 0))
        emb_u = np.fromfile(emb_file, dtype=np.float32, count=n_u * dim).reshape(n_u, dim)
        yield start, table, spool, emb_u
