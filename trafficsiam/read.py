"""Read: traffic records from a parquet file, a folder of parquet files, a glob, or CSV.

Two ways in, used by every stage alike: `read_records` loads the columns a stage needs
into one frame (fit, evaluate), and every row remembers which file it came from, so later
stages can name the file and the row in their messages; `iter_chunks` streams one file in
chunks of a fixed number of rows (score, and the report re-reading scored files).
"""

from __future__ import annotations

import csv
import glob as globlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from trafficsiam.errors import InputError, cut
from trafficsiam.parse import as_numbers

log = logging.getLogger("trafficsiam")
PARQUET_SUFFIXES = (".parquet", ".pq")
# How a DataFrame given in memory is named in messages and in the manifest.
FRAME_NAME = "DataFrame"
CSV_SUFFIXES = (".csv",)


@dataclass
class Records:
    """Rows read from one or more files, with each row's origin."""

    frame: pd.DataFrame
    paths: list[Path]
    # Row i came from paths[file_index[i]], row number row_in_file[i] (0-based).
    file_index: np.ndarray
    row_in_file: np.ndarray
    # When the input was larger than what fit keeps (`data.max_records`): what was read
    # and what was kept (`training_records`).
    sampled: dict[str, Any] | None = None

    def where(self, row: int) -> str:
        """'file.parquet row 12' for the i-th row of the frame (rows counted from 0)."""
        return f"{self.paths[int(self.file_index[row])]} row {int(self.row_in_file[row])}"

    def refuse_rows(self, bad: np.ndarray, text: str) -> None:
        """Refuse the records where `bad` holds, in one line naming the first (file and
        row); `text` says what is wrong and the fix, `{n}` in it the count."""
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InputError(f"{self.where(first)}: {text.format(n=int(bad.sum()))}")

    def subset(self, mask: np.ndarray) -> Records:
        """The rows where `mask` is true, keeping each row's origin."""
        return Records(
            frame=self.frame[mask].reset_index(drop=True),
            paths=self.paths,
            file_index=self.file_index[mask],
            row_in_file=self.row_in_file[mask],
            sampled=self.sampled,
        )

    def inputs(self) -> list[dict[str, object]]:
        """The inputs as the manifest lists them: each file's path and size (a frame
        given in memory: its name and no size)."""
        return [{"path": str(p), "bytes": None if str(p) == FRAME_NAME else p.stat().st_size}
                for p in self.paths]

    @property
    def source(self) -> str:
        """The input as a user would name it: one path, or the first path and a count."""
        if len(self.paths) == 1:
            return str(self.paths[0])
        return f"{self.paths[0].parent}/ ({len(self.paths)} files)"


def _is_supported(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES


def require_column(source: object, columns: Sequence[object], column: str, what: str,
                   fix: str) -> None:
    """Refuse, in one line naming the input and its first columns, records without
    `column` (`what` says which column it is to us, `fix` what to do)."""
    names = [str(c) for c in columns]
    if column in names:
        return
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise InputError(f"{source}: {what} '{column}' not found (columns: {shown}); {fix}")


def resolve_inputs(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expand a file, a folder (its parquet/CSV files, recursively) or a glob into files.

    The result is sorted, so row order does not depend on the file system.
    """
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not specs:
        raise InputError("no input given; pass a parquet file, a folder of parquet files or a glob")
    found: list[Path] = []
    for item in specs:
        text = str(item)
        path = Path(text)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_supported(p))
            if not files:
                raise InputError(
                    f"{path}: folder holds no .parquet or .csv files; "
                    "point at the folder that holds the exported records"
                )
            found.extend(files)
        elif globlib.has_magic(text):
            # a matched folder (a Spark-style `x.parquet/` dataset) is read like a folder
            # input, never skipped
            files = sorted(
                f for p in map(Path, globlib.glob(text, recursive=True))
                for f in ([p] if p.is_file() else
                          [q for q in p.rglob("*") if q.is_file() and _is_supported(q)]
                          if p.is_dir() else [])
            )
            if not files:
                raise InputError(
                    f"{text}: the pattern matches no files; check the pattern and quote it "
                    "so that the shell does not expand it"
                )
            found.extend(files)
        else:
            raise InputError(f"{text}: no such file or folder; check the path")
    # one file under two spellings (a link, `a/../a`, a symlink loop under `**`) is read
    # once: the first spelling, by resolved path
    first: dict[Path, Path] = {}
    for path in found:
        first.setdefault(path.resolve(), path)
    unique = sorted(first.values())
    for path in unique:
        if not _is_supported(path):
            raise InputError(
                f"{path}: unsupported file type '{path.suffix}'; "
                "export the records as .parquet or .csv"
            )
    return unique


def is_csv(path: Path) -> bool:
    return path.suffix.lower() in CSV_SUFFIXES


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a reader's exception into one line that names the file and the fix."""
    kind = "CSV" if is_csv(path) else "parquet"
    try:
        yield
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty; re-export it or remove it") from None
    except (pa.ArrowException, OSError, pd.errors.ParserError, UnicodeDecodeError,
            ValueError, csv.Error) as err:
        raise InputError(
            f"{path}: not a readable {kind} file ({first_line(err)}); "
            "re-export it or remove it from the input"
        ) from None
    except (KeyError, TypeError, IndexError) as err:
        # A damaged footer whose pandas metadata (JSON) still parses but lacks keys.
        raise InputError(
            f"{path}: not a readable {kind} file (damaged metadata: {type(err).__name__} "
            f"{first_line(err)}); re-export it or remove it from the input"
        ) from None


def read_columns(path: Path) -> list[str]:
    """Column names of one file, read from its schema or header without loading rows;
    a name that appears twice is refused (every command reads a file's columns here)."""
    names = _read_names(path)
    seen: set[str] = set()
    dupes: list[str] = []
    for name in names:
        if name in seen:
            dupes.append(name)
        seen.add(name)
    if dupes:
        raise InputError(
            f"{path}: column '{cut(dupes[0])}' appears more than once; "
            "give every column a unique name"
        )
    return names


def _read_names(path: Path) -> list[str]:
    with reading(path):
        if is_csv(path):
            # The csv module, not pandas: pandas renames duplicate headers to 'a.1'.
            # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first
            # name; pyarrow's reader skips it too
            with path.open(newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), None)
            if header is None:
                raise pd.errors.EmptyDataError
            if len(header) == 1:
                _refuse_other_separator(path, header[0])
            if not _quotes_closed(path, path.stat().st_mtime_ns, path.stat().st_size):
                raise ValueError("a quoted value is never closed: the file holds an odd "
                                 "number of '\"'")
            return header
        with _source(path) as src:
            schema = pq.read_schema(src)
        return [c for c in schema.names if c not in _index_columns(schema)]
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse_other_separator(path: Path, name: str) -> None:
    """A header read as one column that holds `;`, a tab or `|`: an export with another
    separator (Excel's in many locales), which would otherwise fail as 'label column not
    found' with every name run together."""
    for sep, said in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if sep in name:
            raise InputError(
                f"{path}: the header is one column that holds {said} "
                f"('{cut(name)}'): the file seems separated by {said}, not commas; "
                "export it as comma-separated CSV (or as parquet)")


@lru_cache(maxsize=256)
def _quotes_closed(path: Path, mtime_ns: int, size: int) -> bool:
    """Whether every quote of a CSV is closed (CSV doubles a quote inside quotes, so an
    odd count is an unclosed one). pyarrow reads an unclosed quote to the end of the file
    as one value, silently: one pass over the bytes, once per file version."""
    count = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            count += block.count(b'"')
    return count % 2 == 0


def _index_columns(schema: pa.Schema) -> set[str]:
    """The columns in which pandas stored a frame's index (`__index_level_0__` after
    filtering rows): not records' fields, so never read as a column."""
    meta = schema.pandas_metadata or {}
    return {c for c in meta.get("index_columns", []) if isinstance(c, str)}


def common_columns(paths: Iterable[Path]) -> list[str]:
    """The columns of the first file; every other file must have at least these."""
    paths = list(paths)
    first = read_columns(paths[0])
    for path in paths[1:]:
        cols = set(read_columns(path))
        missing = [c for c in first if c not in cols]
        if missing:
            raise InputError(
                f"{path}: column '{missing[0]}' is missing but present in {paths[0]}; "
                "give every input file the same columns"
            )
    return first


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _read_one(path: Path, columns: list[str] | None) -> pd.DataFrame:
    with reading(path):
        if is_csv(path):
            with _source(path) as src:
                table = pacsv.read_csv(src, parse_options=CSV_PARSE,
                                       convert_options=_csv_text(read_columns(path), columns))
            return table.to_pandas()
        # a stored pandas index comes back as the frame's index: dropped (`_index_columns`)
        with _source(path) as src:
            table = pq.read_table(src, columns=columns)
        frame = table.to_pandas().reset_index(drop=True)
        index = _index_columns(table.schema)
        lost = [c for c in columns or table.column_names
                if c not in frame.columns and c not in index]
        if lost:  # pandas metadata that renames a column: a damaged footer
            raise ValueError(f"damaged metadata: column '{lost[0]}' comes back under "
                             "another name")
        return frame
    raise AssertionError("unreachable")  # pragma: no cover


def _csv_text(header: list[str], columns: Sequence[str] | None = None
              ) -> pacsv.ConvertOptions:
    """How every command reads a CSV: every column as text exactly as written (ids with
    leading zeros survive), the usual spellings of a missing value (empty, NA, null, NaN,
    ...) missing; numbers are parsed by `parse.parse_numbers`, the one rule for CSV and
    parquet alike, once a column is known to be numeric."""
    return pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                include_columns=list(columns) if columns else None,
                                strings_can_be_null=True)


# A quoted value may span lines, as CSV allows (and pandas read it): an unclosed quote is
# then an error at the end of the file, not a record cut in two.
CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True)
def read_records(paths: Sequence[Path], columns: list[str] | None = None) -> Records:
    """Load the given columns (all when None) of every file into one frame."""
    frames: list[pd.DataFrame] = []
    file_index: list[np.ndarray] = []
    row_in_file: list[np.ndarray] = []
    for i, path in enumerate(paths):
        frame = _read_one(path, columns)
        if columns is not None:
            frame = frame[columns]
        frames.append(frame)
        file_index.append(np.full(len(frame), i, dtype=np.int32))
        row_in_file.append(np.arange(len(frame), dtype=np.int64))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frame = frame.reset_index(drop=True)
    records = Records(
        frame=frame,
        paths=list(paths),
        file_index=np.concatenate(file_index),
        row_in_file=np.concatenate(row_in_file),
    )
    if len(frame) == 0:
        raise InputError(
            f"{records.source}: no rows to read; export a non-empty set of records"
        )
    return records


def from_frame(frame: pd.DataFrame, columns: list[str] | None = None) -> Records:
    """A DataFrame held in memory as `Records` of one input named `FRAME_NAME`."""
    frame = (frame if columns is None else frame[columns]).reset_index(drop=True)
    records = Records(frame=frame, paths=[Path(FRAME_NAME)],
                      file_index=np.zeros(len(frame), dtype=np.int32),
                      row_in_file=np.arange(len(frame), dtype=np.int64))
    if len(frame) == 0:
        raise InputError(f"{FRAME_NAME}: no rows to read; pass a non-empty set of records")
    return records


Chooser = Callable[[np.ndarray, int], np.ndarray]


def training_records(
    data: pd.DataFrame | str | Path | Sequence[str | Path], label_column: str,
    ignore: Sequence[str] = (), max_records: int | None = None,
    choose: Chooser | None = None,
) -> Records:
    """What fit reads: every column of `data` (files, or a DataFrame) but the ignored
    ones, the label column always. With more than `max_records` records, only the rows
    `choose(labels, max_records)` picks (sorted row positions) are kept: the labels are
    read first, then the files streamed in chunks, so memory holds the kept rows, not the
    input."""
    if max_records is not None and choose is not None and not isinstance(data, pd.DataFrame):
        paths = resolve_inputs(data)
        # a CSV row takes two bytes at least: smaller files need not be counted (a pass
        # over the file before reading it)
        total = sum(p.stat().st_size // 2 if is_csv(p) and p.stat().st_size < 2 * max_records
                    else _rows(p) for p in paths)
        if total > max_records:
            columns = common_columns(paths)
            require_column(paths[0], columns, label_column, "label column",
                           "name the scenario column with --label-column")
            wanted = [c for c in columns if c not in set(ignore) or c == label_column]
            return _sampled(paths, wanted, label_column, total, max_records, choose)
    records = _all_records(data, label_column, ignore)
    if (max_records is not None and choose is not None
            and len(records.frame) > max_records):
        names, codes = np.unique(records.frame[label_column].astype(str).to_numpy(),
                                 return_inverse=True)
        keep = np.zeros(len(codes), dtype=bool)
        keep[choose(codes, max_records)] = True
        facts = _sample_facts(codes, names, keep, max_records)
        records = records.subset(keep)
        records.sampled = facts
    return records


def _rows(path: Path) -> int:
    """Rows of a file, at least as many as it holds: a parquet footer, or a CSV's lines
    counted (no parsing)."""
    counted = count_rows(path)
    if counted is not None:
        return counted
    with reading(path), path.open("rb") as fh:
        return max(sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
                   - 1, 0)


def _label_categories(path: Path, column: str) -> pd.Categorical:
    """One file's label column as a pandas Categorical, read without a Python string per
    record where the format allows (parquet dictionary decoding, CSV category parsing)."""
    with reading(path):
        if is_csv(path):
            opts = _csv_text(read_columns(path), [column])
            opts.column_types = {column: pa.dictionary(pa.int32(), pa.string())}
            with _source(path) as src:
                values = pacsv.read_csv(src, parse_options=CSV_PARSE,
                                        convert_options=opts).column(0).to_pandas()
        else:
            with _source(path) as src:
                table = pq.read_table(src, columns=[column], read_dictionary=[column])
            values = table.column(0).to_pandas()
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(str).astype("category")
    cats = values.cat.categories
    if not all(isinstance(c, str) for c in cats):
        values = values.cat.rename_categories([str(c) for c in cats])
    return values.values


def _sample_facts(codes: np.ndarray, names: np.ndarray, keep: np.ndarray,
                  max_records: int) -> dict[str, Any]:
    """What was read and what was kept, per scenario (`codes` index `names`)."""
    counts = np.bincount(codes, minlength=len(names))
    kept = np.bincount(codes[keep], minlength=len(names))
    log.warning("%d records are more than data.max_records (%d): fit keeps %d, every "
                "scenario up to an equal share and the rarer ones whole", len(codes),
                max_records, int(keep.sum()))
    return {"records": int(len(codes)), "kept": int(keep.sum()),
            "max_records": int(max_records),
            "per_scenario": {str(names[i]): {"records": int(counts[i]), "kept": int(kept[i])}
                             for i in np.flatnonzero(counts)}}


def _sampled(paths: list[Path], wanted: list[str], label_column: str, total: int,
             max_records: int, choose: Chooser) -> Records:
    """Two passes over files larger than memory: the label column of every file, then
    each file streamed in chunks keeping the chosen rows (their origin kept for messages)."""
    log.info("reading the labels of %d record(s) in %d file(s) to sample them", total,
             len(paths))
    per_file = [_label_categories(p, label_column) for p in paths]
    both = pd.api.types.union_categoricals(per_file)
    # codes, not strings: 10M labels as Python strings would outweigh the kept records
    codes = np.asarray(both.codes, dtype=np.int32)
    if len(codes) <= max_records:  # the row count was a bound (CSV sizes): all fit
        keep, facts = np.ones(len(codes), dtype=bool), None
    else:
        keep = np.zeros(len(codes), dtype=bool)
        keep[choose(codes, max_records)] = True
        facts = _sample_facts(codes, np.asarray(both.categories.astype(str)), keep,
                              max_records)
    frames, file_index, row_in_file = [], [], []
    offset = 0
    for i, path in enumerate(paths):
        for start, chunk in _chunks(path, wanted):
            rows = np.flatnonzero(keep[offset + start : offset + start + len(chunk)])
            if len(rows):
                frames.append(chunk.iloc[rows])
                file_index.append(np.full(len(rows), i, dtype=np.int32))
                row_in_file.append(start + rows.astype(np.int64))
        offset += len(per_file[i])
    frame = pd.concat(frames, ignore_index=True)[wanted]
    return Records(frame=frame, paths=list(paths), file_index=np.concatenate(file_index),
                   row_in_file=np.concatenate(row_in_file), sampled=facts)


def _chunks(path: Path, columns: list[str], size: int = 262_144
            ) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row, frame) chunks of a file, typed as `_read_one` types the whole file."""
    for start, table in iter_chunks(path, columns, size):
        yield start, table.to_pandas()


def _all_records(
    data: pd.DataFrame | str | Path | Sequence[str | Path], label_column: str,
    ignore: Sequence[str] = (),
) -> Records:
    """Every record of `data` (files, or a DataFrame): its columns but the ignored ones,
    the label column always."""
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        where: object = FRAME_NAME
    else:
        paths = resolve_inputs(data)
        names = common_columns(paths)
        where = paths[0]
    wanted = [c for c in names if c not in set(ignore) or c == label_column]
    for col in ignore:
        if col not in names:
            log.warning("--ignore %s: no such column in %s; nothing to ignore", col, where)
    if isinstance(data, pd.DataFrame):
        frame = data.copy(deep=False)
        frame.columns = names
        return from_frame(frame, wanted)
    log.info("reading %d file(s): %s", len(paths), paths[0] if len(paths) == 1 else paths[0].parent)
    return read_records(paths, wanted)


# --- streaming -----------------------------------------------------------------------------


@contextmanager
def _source(path: Path) -> Iterator[str | BinaryIO]:
    """The file as pyarrow takes it: its name, or the open file where the name is not
    UTF-8 (a Latin-1 name: pyarrow cannot encode it and called the file unreadable)."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        with open(path, "rb") as fh:
            yield fh
        return
    yield name


def iter_chunks(
    path: Path, columns: Sequence[str] | None, batch_size: int, numbers: Iterable[str] = (),
) -> Iterator[tuple[int, pa.Table]]:
    """(first row, table) for consecutive chunks of exactly `batch_size` rows (the last
    may be shorter), whatever the file's row groups or CSV blocks; `columns` None reads
    them all. CSV columns are text (`_csv_text`), but those named in `numbers`, whose
    values were checked already, come as float64 (`as_numbers`). Parquet is streamed
    with `ParquetFile.iter_batches`, CSV with pyarrow's streaming CSV reader."""
    if is_csv(path) and numbers:
        for start, table in iter_chunks(path, columns, batch_size):
            yield start, as_numbers(table, numbers)
        return
    with reading(path), _source(path) as src:
        cols = list(columns) if columns else None
        if is_csv(path):
            batches: Iterator[pa.RecordBatch] = pacsv.open_csv(
                src, parse_options=CSV_PARSE,
                convert_options=_csv_text(read_columns(path), cols))
        else:
            # Not pyarrow.dataset for parquet: its scanner reads row groups ahead and keeps
            # them, so peak memory grew with the file; iter_batches without pre-buffering
            # holds about one row group, and reads faster (BENCHMARKS.md, "Scoring throughput").
            batches = pq.ParquetFile(src, pre_buffer=False).iter_batches(
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
                    # the next one is decoded.
                    table = table.combine_chunks()
                yield start, table.slice(0, batch_size)
                start += batch_size
                held -= batch_size
                rest = table.slice(batch_size)
                pending = rest.to_batches() if held else []
        if held:
            yield start, pa.Table.from_batches(pending)


def count_rows(path: Path) -> int | None:
    """Rows of a parquet file from its footer; None for CSV (counted while reading)."""
    if is_csv(path):
        return None
    with reading(path), _source(path) as src:
        return int(pq.ParquetFile(src).metadata.num_rows)


def input_schema(path: Path, numbers: Iterable[str] = ()) -> pa.Schema:
    """The arrow schema `iter_chunks` yields for `path`."""
    names = read_columns(path)
    if is_csv(path):
        schema = pa.schema([(name, pa.string()) for name in names])
    else:
        with reading(path), _source(path) as src:
            schema = pq.read_schema(src)
    if is_csv(path):
        for name in set(numbers) & set(schema.names):
            schema = schema.set(schema.get_field_index(name), pa.field(name, pa.float64()))
    return schema
