"""Read: traffic records from a parquet file, a folder of parquet files, a glob, or CSV.

Only the columns a stage needs are loaded. Every row remembers which file it came
from, so later stages can name the file and the row in their messages.
"""

from __future__ import annotations

import csv
import glob as globlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trafficsiam.errors import InputError

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)


@dataclass
class Records:
    """Rows read from one or more files, with each row's origin."""

    frame: pd.DataFrame
    paths: list[Path]
    # Row i came from paths[file_index[i]], row number row_in_file[i] (0-based).
    file_index: np.ndarray
    row_in_file: np.ndarray

    def where(self, row: int) -> str:
        """'file.parquet row 12' for the i-th row of the frame (rows counted from 0)."""
        return f"{self.paths[int(self.file_index[row])]} row {int(self.row_in_file[row])}"

    def subset(self, mask: np.ndarray) -> Records:
        """The rows where `mask` is true, keeping each row's origin."""
        return Records(
            frame=self.frame[mask].reset_index(drop=True),
            paths=self.paths,
            file_index=self.file_index[mask],
            row_in_file=self.row_in_file[mask],
        )

    @property
    def source(self) -> str:
        """The input as a user would name it: one path, or the first path and a count."""
        if len(self.paths) == 1:
            return str(self.paths[0])
        return f"{self.paths[0].parent}/ ({len(self.paths)} files)"


def _is_supported(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES


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
            files = sorted(
                Path(p) for p in globlib.glob(text, recursive=True) if Path(p).is_file()
            )
            if not files:
                raise InputError(
                    f"{text}: the pattern matches no files; check the pattern and quote it "
                    "so that the shell does not expand it"
                )
            found.extend(files)
        else:
            raise InputError(f"{text}: no such file or folder; check the path")
    unique = sorted(set(found))
    for path in unique:
        if not _is_supported(path):
            raise InputError(
                f"{path}: unsupported file type '{path.suffix}'; "
                "export the records as .parquet or .csv"
            )
    return unique


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() in CSV_SUFFIXES


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a reader's exception into one line that names the file and the fix."""
    kind = "CSV" if _is_csv(path) else "parquet"
    try:
        yield
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty; re-export it or remove it") from None
    except (pa.ArrowException, OSError, pd.errors.ParserError, UnicodeDecodeError,
            ValueError, csv.Error) as err:
        raise InputError(
            f"{path}: not a readable {kind} file ({_first_line(err)}); "
            "re-export it or remove it from the input"
        ) from None
    except (KeyError, TypeError, IndexError) as err:
        # A damaged footer whose pandas metadata (JSON) still parses but lacks keys.
        raise InputError(
            f"{path}: not a readable {kind} file (damaged metadata: {type(err).__name__} "
            f"{_first_line(err)}); re-export it or remove it from the input"
        ) from None


def read_columns(path: Path) -> list[str]:
    """Column names of one file, read from its schema or header without loading rows."""
    with _reading(path):
        if _is_csv(path):
            # The csv module, not pandas: pandas renames duplicate headers to 'a.1'.
            with path.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), None)
            if header is None:
                raise pd.errors.EmptyDataError
            return header
        return list(pq.read_schema(path).names)
    raise AssertionError("unreachable")  # pragma: no cover


def common_columns(paths: Iterable[Path]) -> list[str]:
    """The columns of the first file; every other file must have at least these."""
    paths = list(paths)
    first = read_columns(paths[0])
    dupes = sorted({c for c in first if first.count(c) > 1})
    if dupes:
        raise InputError(
            f"{paths[0]}: column '{dupes[0]}' appears more than once; "
            "give every column a unique name"
        )
    for path in paths[1:]:
        cols = set(read_columns(path))
        missing = [c for c in first if c not in cols]
        if missing:
            raise InputError(
                f"{path}: column '{missing[0]}' is missing but present in {paths[0]}; "
                "give every input file the same columns"
            )
    return first


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _read_one(path: Path, columns: list[str] | None) -> pd.DataFrame:
    with _reading(path):
        if _is_csv(path):
            return pd.read_csv(path, usecols=columns, low_memory=False)
        return pq.read_table(path, columns=columns).to_pandas()
    raise AssertionError("unreachable")  # pragma: no cover


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
