"""A loaded model turning record batches into the ts_* columns: both engines' core.

`Scoring` holds a model and its score config. `assess` turns one batch of records into
its per-record results (`SPOOL`: what pass 2 needs of pass 1), its embeddings and its
normalised inputs; `columns` turns those results and the candidate new types into the
ts_* arrays of `contract.TS_COLUMNS`. The checks of an input's columns and types sit
here too, so both engines refuse the same inputs with the same line.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from trafficsiam.artifact import Artifact
from trafficsiam.calibrate import Assessment, KnownScorer
from trafficsiam.config import ScoreConfig
from trafficsiam.contract import TS_COLUMNS, VERDICTS
from trafficsiam.decide import verdict_codes
from trafficsiam.errors import InputError
from trafficsiam.model import embed
from trafficsiam.newtypes import Background, Seen
from trafficsiam.normalise import MISSING_TOKEN, TransformCounts
from trafficsiam.parse import parse_numbers
from trafficsiam.validate import show

# Rows per forward pass while scoring: the hidden activations stay in cache
# (BENCHMARKS.md, "Scoring throughput").
SCORE_EMBED_BATCH = 2048
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
# The ts_* columns copied from `calibrate.Assessment` as they are: (column, field, arrow
# type). ts_scenario (the voted code as a name), ts_verdict and ts_new_type are built in
# `Scoring.columns`.
AS_IS = (("ts_cluster", "cluster", pa.int64()), ("ts_strength", "strength", pa.float64()),
         ("ts_novelty", "novelty", pa.float64()), ("ts_anomaly", "anomaly", pa.float64()),
         ("ts_p_good", "p_good", pa.float64()))
# Pass 1 -> pass 2, one record per input row: the `Assessment` fields the columns need.
SPOOL = np.dtype([(f, "<i8" if t == pa.int64() else "<f8") for _, f, t in AS_IS]
                 + [("voted", "<i8"), ("explained", "u1"), ("good", "u1")])


def fixed_mmap_threshold(nbytes: int = 4 << 20) -> bool:
    """Make glibc serve every allocation of `nbytes` or more with its own mmap.

    glibc raises its mmap threshold each time a large block is freed, after which the
    per-batch temporaries (tens of MB: kNN results, prototype distances) come from the
    heap arenas of the scoring threads and fragment them, and memory grows with the
    number of batches (BENCHMARKS.md, "Scoring throughput"). Process-wide and idempotent;
    False where there is no glibc."""
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
    """A type `read.parse_numbers` reads as numbers (a duration: its seconds)."""
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind) or pa.types.is_decimal(kind)
                or pa.types.is_duration(kind))


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
        self._scenario_dictionary = pa.array([str(n) for n in self.scenario_names], pa.string())
        self.features = list(art.schema.columns)
        self.numeric = set(art.schema.numeric)
        # candidates of earlier runs of this model into the same folder (`newtypes.track`)
        self.earlier: list[Seen] = []
        self.good_x = art.inputs["holdout"][art.holdout_good]
        if len(self.good_x) == 0:
            self.good_x = art.inputs["holdout"]

    @property
    def model_id(self) -> str:
        return self.art.model_id

    @cached_property
    def background(self) -> Background:
        """The false alarms the decision makes at this run's rate on the fit's held-out
        records (new-type discovery weighs candidates against them)."""
        hold = self.art.holdout
        emb = hold[self.art.embedding_columns].to_numpy(np.float64)
        codes = self.art.codes_of(hold["scenario"])
        explained = self.scorer.held_out_explained(emb, self.art.inputs["holdout"], codes,
                                                   self.cfg.false_alarm_rate)
        return Background(emb[~explained], codes[~explained],
                          np.bincount(codes, minlength=len(self.scenario_names)))

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
            arr, bad = parse_numbers(values)
            _refuse(path, start, col, values, bad,
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
        return spool_of(a), emb, x, cleaned

    def columns(
        self, spool: np.ndarray, new_type: np.ndarray
    ) -> tuple[dict[str, pa.Array], np.ndarray]:
        """The ts_* arrays of a batch and its verdict codes.

        `new_type` holds the candidate name of each unexplained row (None: outlier) and is
        ignored for explained rows.
        """
        n = len(spool)
        explained = spool["explained"].astype(bool)
        verdict = verdict_codes(explained, spool["good"].astype(bool), pd.notna(new_type))
        new_col = np.asarray(new_type, dtype=object).copy()
        new_col[explained] = None
        made = {name: pa.array(spool[f], kind) for name, f, kind in AS_IS}
        # names looked up by Arrow, not as a Python string per row
        made["ts_scenario"] = pa.DictionaryArray.from_arrays(
            pa.array(spool["voted"], pa.int64()),
            self._scenario_dictionary).dictionary_decode()
        made["ts_verdict"] = pa.DictionaryArray.from_arrays(
            pa.array(verdict, pa.int8()), pa.array(VERDICTS)).dictionary_decode()
        made["ts_new_type"] = pa.array(new_col if n else [], pa.string())
        arrays = {name: made[name] for name in TS_COLUMNS}
        return arrays, verdict



def spool_of(a: Assessment) -> np.ndarray:
    """The `SPOOL` records of an assessed batch."""
    spool = np.zeros(len(a.cluster), dtype=SPOOL)
    for name in SPOOL.names or ():
        spool[name] = getattr(a, name)
    return spool
