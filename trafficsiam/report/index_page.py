"""The page that lists the runs of a scoring folder (index.html): newest first, each
run's counts as shares of its records and its candidate new types, and the trend of the
verdict shares and of new types per run."""

from __future__ import annotations

from typing import Any

from trafficsiam.contract import VERDICTS
from trafficsiam.report import cards, figures


def trend_figure(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Verdict shares per run (lines, left axis) and candidate new types per run (bars,
    right axis), oldest first."""
    runs = sorted(runs, key=lambda r: r["run_id"])
    x = [r["run_id"] for r in runs]
    data: list[dict[str, Any]] = []
    for verdict in VERDICTS:
        data.append({"type": "scatter", "mode": "lines+markers",
                     "name": verdict.replace("_", " "), "x": x,
                     "y": [r["verdicts"].get(verdict, 0) / max(r["records"], 1) for r in runs],
                     "line": {"color": figures.VERDICT_COLORS[verdict]}})
    data.append({"type": "bar", "name": "candidate new types", "x": x, "yaxis": "y2",
                 "y": [len(r["new_types"]) for r in runs], "opacity": 0.35,
                 "marker": {"color": figures.VERDICT_COLORS["new_error"]}})
    layout = {"xaxis": {"type": "category", "title": {"text": "run"}},
              "yaxis": {"title": {"text": "share of the run's records"}, "tickformat": ".0%",
                        "rangemode": "tozero"},
              "yaxis2": {"title": {"text": "candidate new types"}, "overlaying": "y",
                         "side": "right", "rangemode": "tozero", "dtick": 1},
              "legend": {"orientation": "h", "y": -0.3}}
    return {"data": data, "layout": layout}


def index_page(folder: str, runs: list[dict[str, Any]], keep_runs: int | None) -> str:
    """index.html of a scoring folder; `runs`: the kept runs' summaries, each with "page"
    (its report's relative path, or None)."""
    rows = []
    for run in sorted(runs, key=lambda r: r["run_id"], reverse=True):
        total = max(int(run["records"]), 1)
        shares = {v: cards.percent(run["verdicts"].get(v, 0) / total) for v in VERDICTS}
        rows.append({
            "run_id": run["run_id"], "finished": run.get("finished", ""),
            "model": (run.get("model") or {}).get("id", ""),
            "records": cards.number(run["records"]), **shares,
            "new_types": ", ".join(f"{t['new_type']} ({t['records']:,})"
                                   for t in run["new_types"]) or "none",
            "page": run.get("page"),
        })
    return cards.page("index.html.j2", {"trend": trend_figure(runs)},
                      title="trafficsiam: scoring runs", runs=rows, folder=folder,
                      keep_runs=keep_runs)
