"""The passes over one input that both engines share (and `score_frame` in memory).

    pass 1, `assess_file`: every record assessed; cleaning counted; the unexplained
            offered to the run's sample of them (new types are found on it)
    pass 2, `scored_chunks`: each chunk gains the ts_* columns; verdicts counted, the
            report's sample and the new types' example records kept
            `write_output`: pass 2 written to one parquet file

An input is cut into chunks of exactly `score.batch_size` rows from its first row,
whatever reads it (a file streamed by the local engine, a Dask partition, a frame in
memory), so every engine computes the same numbers for the same records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trafficsiam.errors import OutputError
from trafficsiam.model import one_thread
from trafficsiam.newtypes import NewTypes, Sample, content_keys, discover, track
from trafficsiam.normalise import TransformCounts
from trafficsiam.scoring.batch import SPOOL, Scoring
from trafficsiam.scoring.plan import Job
from trafficsiam.scoring.tally import Tally
from trafficsiam.scoring.threads import ahead, prefetch, single_threaded_openmp

log = logging.getLogger("trafficsiam")
Examples = dict[tuple[int, int], dict[str, Any]]
# A chunk of pass 2: (first row, every input column, its spool records, the embeddings of
# its unexplained rows in row order).
Chunk = tuple[int, pa.Table, np.ndarray, np.ndarray]
# What an engine returns: the run's counts, its new types, their example records, the
# records of each input (by job index), and the scored files staged but not yet in place
# (temporary, final): the run publishes them with its tables, or discards them.
Outcome = tuple[Tally, NewTypes, Examples, dict[int, int], list[tuple[Path, Path]]]


def find_new_types(scoring: Scoring, sample: Sample, prefix: str = "") -> NewTypes:
    """The run's candidate new error types, from its sample of unexplained records."""
    new_types = track(discover(sample, scoring.cfg, scoring.good_x, scoring.art.normaliser,
                               scoring.background), scoring.earlier)
    if len(new_types.names) or prefix:
        log.info("%s%d candidate new error type(s) among %d unexplained records sampled",
                 prefix, len(new_types.names), len(sample))
    return new_types


def batches(table: pa.Table, size: int) -> Iterator[tuple[int, pa.Table]]:
    """(first row, slice) of `table` in chunks of `size` rows, as a file is streamed."""
    for start in range(0, table.num_rows, size):
        yield start, table.slice(start, size)


def assessed(scoring: Scoring, table: pa.Table, path: Path) -> Iterator[Chunk]:
    """Pass 2's chunks of a table held in memory, assessed again (no spool files)."""
    for start, chunk in batches(table, scoring.cfg.batch_size):
        spool, emb, _, _ = scoring.assess(chunk, path, start)
        yield start, chunk, spool, emb[~spool["explained"].astype(bool)]


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
    # on 2 threads oversubscribe the machine (BENCHMARKS.md, "Scoring throughput").
    with one_thread():
        return _assess_chunks(ahead(chunks, assess, initializer=single_threaded_openmp),
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
        sample.offer(content_keys(x[u], start + u), job.index, start + u,
                     emb[u], x[u], spool["novelty"][u])
        sample.count(spool["voted"], len(u))
        n += len(spool)
        if progress is not None:
            progress(len(spool))
    return n


def scored_chunks(
    scoring: Scoring, job: Job, chunks: Iterable[Chunk], new_types: NewTypes, tally: Tally,
    examples: Examples, report: bool = True,
) -> Iterator[pa.Table]:
    """Pass 2 for one input: each chunk with the ts_* columns appended, in order; the
    verdicts go into `tally` (and, with `report`, its report sample), the example records
    of `new_types` that lie in this input into `examples`."""
    wanted = [ex for exs in new_types.examples.values() for ex in exs if ex[0] == job.index]
    sample = tally.report_sample(scoring) if report else None
    for start, table, spool, emb_u in chunks:
        result, verdict, new_type = finish(scoring, spool, emb_u, new_types)
        for name, arr in result.items():
            table = table.append_column(name, arr)
        if sample is not None:
            sample.add(job.source.sha256, job.index, start, table, verdict, new_type)
        tally.add_batch(spool, verdict, new_type)
        for f, r in wanted:
            if start <= r < start + table.num_rows:
                examples[(f, r)] = table.slice(r - start, 1).to_pylist()[0]
        yield table


def empty_output(scoring: Scoring, schema: pa.Schema) -> pa.Table:
    """The output of an input with no rows: its columns and the ts_* columns."""
    empty = schema.empty_table()
    arrays, _ = scoring.columns(np.zeros(0, SPOOL), np.zeros(0, object))
    for name, arr in arrays.items():
        empty = empty.append_column(name, arr)
    return empty


def write_output(
    tmp: Path, scoring: Scoring, job: Job, chunks: Iterable[Chunk], new_types: NewTypes,
    expected: int, tally: Tally, examples: Examples, schema: pa.Schema,
    progress: Callable[[int], object] | None = None,
) -> None:
    """`scored_chunks` written to the parquet file `tmp`; `schema` is the input's (for
    an input with no rows), `expected` the record count of pass 1."""
    written = 0
    # An open file, not the name: pyarrow cannot encode a name that is not UTF-8.
    with open(tmp, "wb") as sink:
        writer: pq.ParquetWriter | None = None
        # The ts_* columns of the next chunk, its counts and the report's sample of it are
        # built in a thread while this one is encoded and written (parquet encoding
        # releases the GIL), which leaves the writer alone in this thread: pass 2 takes
        # about as long as the write alone instead of the sum (BENCHMARKS.md, "Scoring
        # throughput"). Everything the thread adds to is read only after the last chunk.
        tally.report_sample(scoring)
        for table in prefetch(scored_chunks(scoring, job, chunks, new_types, tally, examples),
                              depth=1):
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema)
            writer.write_table(table)
            written += table.num_rows
            if progress is not None:
                progress(table.num_rows)
        if writer is None:  # an input with no rows still gets its (empty) output
            empty = empty_output(scoring, schema)
            writer = pq.ParquetWriter(sink, empty.schema)
            writer.write_table(empty)
        writer.close()
    check_count(job, written, expected)


def check_count(job: Job, written: int, expected: int) -> None:
    """Pass 2 must read what pass 1 read."""
    if written != expected:
        raise OutputError(
            f"{job.source.path}: read {written} records in the second pass but {expected} in "
            "the first; the file changed during scoring, rerun when it is complete"
        )


def finish(
    scoring: Scoring, spool: np.ndarray, emb_u: np.ndarray, new_types: NewTypes
) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray]:
    """ts_* columns, verdicts and candidate names of one chunk; `emb_u` holds the
    embeddings of its unexplained rows, in row order."""
    u = np.flatnonzero(~spool["explained"].astype(bool))
    new_type = np.full(len(spool), None, dtype=object)
    new_type[u] = new_types.assign(emb_u)
    result, verdict = scoring.columns(spool, new_type)
    return result, verdict, new_type

