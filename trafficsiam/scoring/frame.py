"""Score records held in memory: the two passes over one pandas DataFrame.

The frame is one input: the same chunks, the same passes and the same new-type discovery
as `trafficsiam score` over a file of the same records, so its ts_* columns are the ones
the command writes. Nothing is written and no state is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from trafficsiam.contract import TS_COLUMNS
from trafficsiam.newtypes import Sample
from trafficsiam.scoring.batch import Scoring
from trafficsiam.scoring.passes import (
    Chunk,
    assess_file,
    batches,
    empty_output,
    find_new_types,
    scored_chunks,
)
from trafficsiam.scoring.plan import Job
from trafficsiam.scoring.tally import Tally
from trafficsiam.state import InputFile

# How a frame is named in messages ("DataFrame row 12: column 'bytes_in' has value ...").
NAME = "DataFrame"


def feature_table(scoring: Scoring, frame: pd.DataFrame, name: str = NAME) -> pa.Table:
    """The frame's feature columns as arrow, checked as a file's are."""
    path = Path(name)
    scoring.check_columns(path, [str(c) for c in frame.columns])
    features = frame[scoring.features]
    try:
        table = pa.Table.from_pandas(features, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # A column of mixed Python values (numbers and text): read as text, as a file
        # holding them would be, so the numeric check names the first bad value.
        table = pa.Table.from_pandas(_as_text(features), preserve_index=False)
    scoring.check_schema(path, table.schema)
    return table


def _as_text(features: pd.DataFrame) -> pd.DataFrame:
    out = features.copy()
    for col in out.columns:
        if out[col].dtype == object:
            values = out[col]
            out[col] = values.map(str).where(values.notna(), None)
    return out


def score_frame(scoring: Scoring, frame: pd.DataFrame, name: str = NAME) -> pd.DataFrame:
    """`frame` with the ts_* columns appended: same rows, same order, same index, the
    input columns untouched (the result is a new frame)."""
    table = feature_table(scoring, frame, name)
    # no content hash: the discovery sample is keyed by the records themselves
    # (`newtypes.content_keys`), and a frame keeps no state or report sample
    job = Job(0, InputFile(Path(name), 0, ""), "", table.num_rows)
    tally, sample = Tally(), Sample(scoring.cfg.max_new_points)
    spooled: list[tuple[np.ndarray, np.ndarray]] = []

    def keep(spool: np.ndarray, emb_u: np.ndarray) -> None:
        spooled.append((spool, emb_u))

    chunks = list(batches(table, scoring.cfg.batch_size))
    assess_file(scoring, job, chunks, tally, sample, keep)
    new_types = find_new_types(scoring, sample)
    pass2: list[Chunk] = [(start, chunk, spool, emb_u) for (start, chunk), (spool, emb_u)
                          in zip(chunks, spooled, strict=True)]
    parts = list(scored_chunks(scoring, job, pass2, new_types, tally, {}, report=False))
    scored = pa.concat_tables(parts) if parts else empty_output(scoring, table.schema)
    ts = scored.select(list(TS_COLUMNS)).to_pandas()
    ts.index = frame.index
    return pd.concat([frame, ts], axis=1)
