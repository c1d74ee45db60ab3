"""The pages' plots as plain Plotly JSON (traces and layouts built here, drawn in the page
by `Plotly.newPlot`): the embedding map, training curves and the trend over runs.

The map shows the embedding itself when it has at most 3 dimensions; otherwise its first
two principal components, fitted on the model's reference embeddings. PCA because it is
linear, deterministic and cheap (an SVD of at most `cluster.max_points` x N), so a
model's report and every scoring report of that model share one projection and the same
cluster sits at the same place run after run; t-SNE or UMAP would be stochastic, refitted
per page, would need another dependency, and distort the distances between clusters that
the map is read for.

Every text that comes from data (cluster and column names, values) is HTML-escaped here,
because Plotly renders a subset of HTML in its labels; the page's JSON is escaped again
for the <script> element (`render.script_json`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MAX_POINTS = 20_000
PALETTE_GOOD = ["#2e7d32", "#66bb6a", "#1b5e20", "#81c784", "#43a047", "#a5d6a7"]
PALETTE_KNOWN = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#bcbd22",
                 "#e377c2", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39"]
PALETTE_NEW = ["#d62728", "#c2185b", "#e65100", "#880e4f", "#ff1744", "#b71c1c"]
VERDICT_COLORS = {"good": "#2e7d32", "known_error": "#1f77b4", "new_error": "#d62728",
                  "outlier": "#9e9e9e", "noise": "#bdbdbd"}


def scenario_colors(known: Sequence[str], good_label: str, others: Iterable[str] = ()
                    ) -> dict[str, str]:
    """The one rule every page colours a scenario by: good traffic green, the model's
    known error scenarios the known palette in the model's order (`manifest["scenarios"]`,
    to which `promote` only appends, so a derived model keeps its parent's colours), any
    other label (a scenario the model never saw) the new-error palette, in name order."""
    out = {str(good_label): PALETTE_GOOD[0]}
    errors = [str(s) for s in known if str(s) != str(good_label)]
    for i, s in enumerate(dict.fromkeys(errors)):
        out[s] = PALETTE_KNOWN[i % len(PALETTE_KNOWN)]
    for i, s in enumerate(sorted({str(s) for s in others} - set(out))):
        out[s] = PALETTE_NEW[i % len(PALETTE_NEW)]
    return out


def text(value: Any) -> str:
    """A value as text that Plotly shows literally (its labels understand some HTML)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return html.escape(f"{float(value):.4g}")
    return html.escape(str(value))


def texts(values: Any) -> list[str]:
    """`text` of each value; numbers (the measurements and scores: most of the map's
    hover values, nearly all distinct) formatted in one pass, since a number needs no
    escaping (a map's points are tens of thousands of values)."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return ["" if math.isnan(v) else f"{v:.4g}" for v in array.tolist()]
    if array.dtype.kind in "iu":
        return [str(v) for v in array.tolist()]
    return [text(v) for v in values]


@dataclass
class Projection:
    """Embedding -> map coordinates: identity for N <= `keep` (3 by default: a 3-D map),
    else the first two principal components of the reference embeddings (signs fixed:
    each component's largest loading is positive, so the map does not flip between LAPACK
    builds; with one dimension the second axis is zero). Fitted once and applied to any
    embedding of the same model, the axes stay fixed (a training animation's frames)."""

    mean: np.ndarray
    components: np.ndarray | None  # (2, N), None: the dimensions themselves
    explained: list[float]

    @classmethod
    def fit(cls, reference: np.ndarray, keep: int = 3) -> Projection:
        reference = np.asarray(reference, np.float64)
        n_dims = reference.shape[1]
        if n_dims <= keep:
            return cls(np.zeros(n_dims), None, [])
        mean = reference.mean(axis=0)
        _, s, vt = np.linalg.svd(reference - mean, full_matrices=False)
        comps = np.zeros((2, n_dims))
        comps[: min(2, len(vt))] = vt[:2]
        rows = np.arange(2)
        signs = np.sign(comps[rows, np.argmax(np.abs(comps), axis=1)])
        comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
        var = s**2
        explained = [float(v / var.sum()) if var.sum() > 0 else 0.0 for v in var[:2]]
        return cls(mean, comps, explained)

    @property
    def dims(self) -> int:
        return 2 if self.components is not None else int(self.mean.shape[0])

    def axes(self) -> list[str]:
        if self.components is None:
            return [f"e{i}" for i in range(self.dims)]
        return [f"PC{i + 1} ({e:.0%} of the variance)" for i, e in enumerate(self.explained)]

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        emb = np.asarray(emb, np.float64)
        if self.components is None:
            return emb
        return (emb - self.mean) @ self.components.T


def _waterfill(sizes: dict[str, int], room: int) -> dict[str, int]:
    out: dict[str, int] = {}
    left = sorted(sizes, key=lambda g: (sizes[g], g))
    while left:
        share = max(room, 0) // len(left)
        if sizes[left[0]] <= share:
            g = left.pop(0)
            out[g] = sizes[g]
            room -= sizes[g]
            continue
        extra = max(room, 0) - share * len(left)  # every group left is larger than share
        for i, g in enumerate(left):
            out[g] = share + (1 if i < extra else 0)
        break
    return out


def allocate(available: dict[str, int], budget: int = MAX_POINTS,
             first: Sequence[str] = ()) -> dict[str, int]:
    """Points to draw per group: the groups in `first` (candidate new error types) get
    all their points up to half the budget together, the others share the rest by
    water-filling (each gets min(its points, an equal share of what is left), so what
    small groups leave over goes to the larger ones): small clusters stay visible."""
    firsts = {g: n for g, n in available.items() if g in set(first)}
    out = _waterfill(firsts, budget // 2)
    rest = {g: n for g, n in available.items() if g not in firsts}
    out.update(_waterfill(rest, budget - sum(out.values())))
    return {g: out.get(g, 0) for g in available}


def map_trace(name: str, color: str, verdict: str, coords: np.ndarray,
              fields: list[str], values: pd.DataFrame, symbol: str = "circle",
              size: int = 5, highlight: bool = False) -> dict[str, Any]:
    """One group's points, compact: coordinates rounded, hover values per field either
    plain (`cols` None) or dictionary-encoded (the page expands them into customdata)."""
    cols: list[list[int] | None] = []
    dicts: list[list[str]] = []
    for f in fields:
        if f in values:
            # text() once per distinct value, not per point (a map has tens of thousands
            # of points x fields); missing values code -1 -> ""
            codes, raw = pd.factorize(values[f])
            labels = np.asarray([*texts(raw), ""], dtype=object)
            shown_arr = labels[codes]
        else:
            shown_arr = np.full(len(values), "", dtype=object)
        uniq, codes = np.unique(shown_arr.astype(str), return_inverse=True)
        if 2 * len(uniq) > len(shown_arr):  # mostly distinct (ids, measurements): plain values
            dicts.append(shown_arr.tolist())
            cols.append(None)
        else:
            dicts.append([str(u) for u in uniq])
            cols.append(codes.astype(int).tolist())
    trace: dict[str, Any] = {
        "name": text(name), "color": color, "verdict_color": VERDICT_COLORS.get(verdict, color),
        "symbol": symbol, "size": size, "highlight": highlight, "n": int(len(coords)),
        "cols": cols, "dicts": dicts,
    }
    for axis, j in zip("xyz", range(coords.shape[1] if len(coords) else 0), strict=False):
        trace[axis] = np.round(coords[:, j], 3).tolist()  # 1/1000 of the unit: < 1 pixel
    if len(coords) == 0:
        trace["x"], trace["y"] = [], []
    return trace


def map_figure(traces: list[dict[str, Any]], projection: Projection,
               fields: list[str]) -> dict[str, Any]:
    return {"dims": projection.dims, "axes": projection.axes(),
            "fields": [text(f) for f in fields], "traces": traces,
            "points": int(sum(t["n"] for t in traces))}


def curves_figure(history: pd.DataFrame, best_epoch: int | None) -> dict[str, Any]:
    """Loss per epoch, train and validation, and validation triplet accuracy."""
    epochs = list(range(1, len(history) + 1))
    data: list[dict[str, Any]] = []
    for col, name, dash in (("train_loss", "train loss", "solid"),
                            ("val_loss", "validation loss", "solid")):
        if col in history:
            data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": epochs,
                         "y": [float(v) for v in history[col]], "line": {"dash": dash}})
    if "val_triplet_accuracy" in history:
        data.append({"type": "scatter", "mode": "lines", "name": "validation triplet accuracy",
                     "x": epochs, "y": [float(v) for v in history["val_triplet_accuracy"]],
                     "yaxis": "y2", "line": {"dash": "dot"}})
    layout: dict[str, Any] = {
        "xaxis": {"title": {"text": "epoch"}, "dtick": 1 if len(epochs) <= 30 else None},
        "yaxis": {"title": {"text": "loss"}},
        "yaxis2": {"title": {"text": "validation triplet accuracy"}, "overlaying": "y",
                   "side": "right", "range": [0, 1.02], "tickformat": ".0%", "dtick": 0.2,
                   "showgrid": False},
        "legend": {"orientation": "h", "y": -0.25},
    }
    if best_epoch:
        layout["shapes"] = [{"type": "line", "x0": best_epoch, "x1": best_epoch, "y0": 0,
                             "y1": 1, "yref": "paper", "line": {"dash": "dash",
                                                                "color": "#888"}}]
    return {"data": data, "layout": layout}


def trend_figure(days: pd.DataFrame) -> dict[str, Any]:
    """Records per verdict per day (stacked bars); `days` has a `day` column and one
    column per verdict."""
    data = []
    for verdict, color in VERDICT_COLORS.items():
        if verdict in days:
            data.append({"type": "bar", "name": verdict.replace("_", " "),
                         "x": [str(d) for d in days["day"]],
                         "y": [int(v) for v in days[verdict]],
                         "marker": {"color": color}})
    layout = {"barmode": "stack", "xaxis": {"type": "category", "title": {"text": "day (UTC)"}},
              "yaxis": {"title": {"text": "records"}},
              "legend": {"orientation": "h", "y": -0.3}}
    return {"data": data, "layout": layout}
