"""Counts of a scoring run that add up across batches, files and workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam.contract import NEW, VERDICTS
from trafficsiam.normalise import TransformCounts
from trafficsiam.report.collect import RecordSample
from trafficsiam.scoring.batch import Scoring


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
        # One bincount over (cluster + 1) * 4 + verdict: np.unique(axis=1) sorts, and cost
        # seconds per million rows (BENCHMARKS.md, "Scoring throughput").
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

