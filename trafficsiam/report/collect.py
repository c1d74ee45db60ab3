"""Collect what a scoring run's report needs while pass 2 streams the records.

Records fall into *groups*: the members of each known cluster (records it explains:
verdict good or known_error), each candidate new error type, the outliers, and, as the
reference every profile is compared with, all good records. For each group it keeps

- exact counts over every record: records, summed membership strength, and the values of
  the label column when the inputs carry one (the scenario mix and purity);
- a bottom-k sample of its rows by a hash of (input content hash, row number): the
  features, a few context columns and the ts_* columns of at most `CAPACITY[kind]` rows.

The sample is the map's points, the cards' examples and the rows the feature profiles are
computed on. It depends only on the data and the verdicts, never on batches, files'
order or workers, so the local and the Dask engines, and `trafficsiam report` re-reading
the scored files, keep exactly the same rows. Memory is bounded by the number of groups
times their capacity (twice that between compactions), whatever the input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trafficsiam.contract import GOOD as V_GOOD
from trafficsiam.contract import KNOWN as V_KNOWN
from trafficsiam.contract import NEW as V_NEW
from trafficsiam.contract import OUTLIER as V_OUTLIER
from trafficsiam.contract import TS_COLUMNS
from trafficsiam.newtypes import row_keys
from trafficsiam.parse import parse_numbers

# Group kinds.
CLUSTER, NEW_TYPE, OUTLIER, GOOD = "cluster", "new_type", "outlier", "good"
# Rows kept per group: enough for stable medians and effect sizes (the standard error of
# a share is at most 1.1 points at 2,000 rows), and for every record of a candidate new
# error type up to 10,000 to be drawn on the map.
CAPACITY = {CLUSTER: 2000, NEW_TYPE: 10_000, OUTLIER: 3000, GOOD: 4000}
# Pass-through columns kept besides the features (the label column and ids first).
MAX_CONTEXT = 4
# The ts_* columns the report does not use: neither kept nor context.
TS_NOT_KEPT = ("ts_scenario", "ts_p_good")
TS_KEPT = tuple(c for c in TS_COLUMNS if c not in TS_NOT_KEPT)
# Where a kept row came from (input index, row number), beside the kept columns.
FILE, ROW = "ts_sample_file", "ts_sample_row"
MISSING_LABEL = "(missing)"


@dataclass
class Group:
    kind: str
    name: str  # cluster id as text, the candidate's name, "outlier" or "good"
    records: int = 0
    strength_sum: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    file: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tables: list[pa.Table] = field(default_factory=list)
    threshold: int | None = None  # largest kept key once full: larger keys cannot enter

    @property
    def kept(self) -> int:
        return int(self.keys.shape[0])


@dataclass
class RecordSample:
    """Per-group counts and bottom-k row samples of one scoring run (see module doc)."""

    features: list[str]
    numeric: list[str]
    label: str | None
    preferred_context: list[str]
    capacity: dict[str, int] = field(default_factory=lambda: dict(CAPACITY))
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)

    @classmethod
    def for_model(cls, manifest: dict[str, Any], capacity: dict[str, int] | None = None
                  ) -> RecordSample:
        schema = manifest["schema"]
        label = str(manifest["label_column"])
        ignore = [str(c) for c in manifest["config"]["data"]["ignore"]]
        return cls(
            features=[*schema["numeric"], *schema["categorical"]],
            numeric=list(schema["numeric"]),
            label=label,
            preferred_context=[label, *ignore],
            capacity=dict(capacity or CAPACITY),
        )

    # --- filling -----------------------------------------------------------------------

    def add(self, file_key: str, file_index: int, start: int, table: pa.Table,
            verdict: np.ndarray, new_type: np.ndarray) -> None:
        """One chunk of scored records (all input columns and the ts_* columns) whose first
        row is row `start` of the input with content hash `file_key`; `verdict` holds the
        verdict codes and `new_type` the candidate names (None elsewhere)."""
        n = table.num_rows
        if n == 0:
            return
        cluster = np.asarray(table.column("ts_cluster").to_numpy(), dtype=np.int64)
        strength = np.asarray(table.column("ts_strength").to_numpy(), dtype=np.float64)
        verdict = np.asarray(verdict)
        ids: list[tuple[str, str]] = []
        gid = np.empty(n, np.int64)
        ex = np.flatnonzero(verdict <= V_KNOWN)
        if len(ex):
            uc, inv = np.unique(cluster[ex], return_inverse=True)
            gid[ex] = inv
            ids += [(CLUSTER, str(int(c))) for c in uc]
        nw = np.flatnonzero(verdict == V_NEW)
        if len(nw):
            names, inv = np.unique(np.asarray(new_type, dtype=object)[nw].astype(str),
                                   return_inverse=True)
            gid[nw] = len(ids) + inv
            ids += [(NEW_TYPE, str(s)) for s in names]
        ou = np.flatnonzero(verdict == V_OUTLIER)
        if len(ou):
            gid[ou] = len(ids)
            ids.append((OUTLIER, OUTLIER))
        order = np.argsort(gid, kind="stable")
        bounds = np.searchsorted(gid[order], np.arange(len(ids) + 1))
        parts = [(ids[g], order[bounds[g]:bounds[g + 1]]) for g in range(len(ids))]
        parts.append(((GOOD, GOOD), np.flatnonzero(verdict == V_GOOD)))

        keys = row_keys(file_key, start + np.arange(n))
        labels, label_names = self._label_codes(table)
        columns = self._columns(table)
        for gkey, idx in parts:
            if len(idx) == 0:
                continue
            group = self._group(gkey)
            group.records += len(idx)
            group.strength_sum += float(strength[idx].sum())
            if labels is not None:
                counts = np.bincount(labels[idx] + 1, minlength=len(label_names) + 1)
                for code in np.flatnonzero(counts).tolist():
                    name = MISSING_LABEL if code == 0 else label_names[code - 1]
                    group.labels[name] = group.labels.get(name, 0) + int(counts[code])
            k = keys[idx]
            if group.threshold is not None:
                keep = k <= np.uint64(group.threshold)
                idx, k = idx[keep], k[keep]
                if len(idx) == 0:
                    continue
            cap = self.capacity[group.kind]
            if len(idx) > cap:  # only the cap smallest keys of this chunk can be kept
                first = np.argpartition(k, cap - 1)[:cap]
                idx, k = idx[first], k[first]
            rows = table.select(columns).take(pa.array(idx))
            self._offer(group, k, np.full(len(idx), file_index, np.int64), start + idx, rows)

    def merge(self, other: RecordSample) -> None:
        """Add the counts and samples of another part of the same run (Dask workers)."""
        for gkey, theirs in other.groups.items():
            mine = self._group(gkey)
            mine.records += theirs.records
            mine.strength_sum += theirs.strength_sum
            for k, v in theirs.labels.items():
                mine.labels[k] = mine.labels.get(k, 0) + v
            if theirs.tables:
                other._compact(theirs)
                self._offer(mine, theirs.keys, theirs.file, theirs.row, theirs.tables[0])

    # --- reading -----------------------------------------------------------------------

    def frame(self, kind: str, name: str) -> pd.DataFrame:
        """The kept rows of a group in key order, with `FILE` and `ROW` (input index and
        row number); empty when the group has none."""
        group = self.groups.get((kind, name))
        if group is None or not group.tables:
            return pd.DataFrame(columns=[*self.features, *TS_KEPT, FILE, ROW])
        self._compact(group)
        frame = group.tables[0].to_pandas()
        frame[FILE] = group.file
        frame[ROW] = group.row
        return frame

    # --- internals ---------------------------------------------------------------------

    def _group(self, gkey: tuple[str, str]) -> Group:
        if gkey not in self.groups:
            self.groups[gkey] = Group(*gkey)
        return self.groups[gkey]

    def _columns(self, table: pa.Table) -> list[str]:
        names = table.column_names
        taken = set(self.features) | set(TS_KEPT) | set(TS_NOT_KEPT) | {FILE, ROW}
        context = [c for c in self.preferred_context if c in names]
        context += [c for c in names if c not in taken and c not in context]
        return [*context[:MAX_CONTEXT], *[c for c in self.features if c in names],
                *[c for c in TS_KEPT if c in names]]

    def _label_codes(self, table: pa.Table) -> tuple[np.ndarray | None, list[str]]:
        if self.label is None or self.label not in table.column_names:
            return None, []
        values = _as_text(table.column(self.label).combine_chunks())
        encoded = pc.dictionary_encode(values)
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        return np.asarray(codes, np.int64), [str(v) for v in encoded.dictionary.to_pylist()]

    def _offer(self, group: Group, keys: np.ndarray, file: np.ndarray, row: np.ndarray,
               table: pa.Table) -> None:
        group.keys = np.concatenate([group.keys, keys.astype(np.uint64)])
        group.file = np.concatenate([group.file, file.astype(np.int64)])
        group.row = np.concatenate([group.row, row.astype(np.int64)])
        group.tables.append(table)
        if group.kept > 2 * self.capacity[group.kind]:
            self._compact(group)

    def _compact(self, group: Group) -> None:
        """Keep the `cap` smallest keys, in key order, as one table of uniform types.
        Rows are offered as read and made uniform here, once kept: the timestamps and
        casts of rows a later chunk pushes out are never computed (a third of pass 2's
        sampling time at 1M rows)."""
        cap = self.capacity[group.kind]
        # (key, file, row): ties (astronomically rare) still break the same way everywhere.
        order = np.lexsort((group.row, group.file, group.keys))[:cap]
        starts = np.cumsum([0, *(t.num_rows for t in group.tables)])
        owner = np.searchsorted(starts, order, side="right") - 1
        parts, where = [], []
        for i, table in enumerate(group.tables):
            at = np.flatnonzero(owner == i)
            if len(at):
                rows = table.take(pa.array(order[at] - starts[i]))
                parts.append(_uniform(rows, self.numeric))
                where.append(at)
        kept = pa.concat_tables(parts, promote_options="default")
        position = np.concatenate(where)  # the place in `order` of each row of `kept`
        back = np.empty_like(position)
        back[position] = np.arange(len(position))
        group.keys, group.file, group.row = group.keys[order], group.file[order], group.row[order]
        group.tables = [kept.take(pa.array(back)).combine_chunks()]
        if group.kept == cap:
            group.threshold = int(group.keys[-1])


def _as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Any column as `string` (not `large_string`: files written by two tools concatenate)."""
    if pa.types.is_string(values.type):
        return values
    try:
        if pa.types.is_timestamp(values.type):  # to the second: what a reader compares
            seconds = pc.cast(values, pa.timestamp("s", values.type.tz), safe=False)
            return pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S")
        return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in values.to_pylist()],
                        pa.string())


def _uniform(table: pa.Table, numeric: list[str]) -> pa.Table:
    """Numeric features as float64, everything else but ts_* as text, so that the rows of
    files with different column types concatenate."""
    arrays = []
    for name in table.column_names:
        col = table.column(name)
        if name in TS_KEPT:
            arrays.append(col)
        elif name in numeric:
            try:
                arrays.append(pc.cast(col, pa.float64()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                parsed, _ = parse_numbers(col.to_pandas())  # scoring checked the values
                arrays.append(pa.array(parsed, pa.float64()))
        else:
            arrays.append(_as_text(col))
    return pa.table(arrays, names=table.column_names)
