"""What the model and the scoring pages share: cluster colours, card parts, number and
value formats, and writing a whole page."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam.report import figures
from trafficsiam.report.profile import OTHER_GOOD
from trafficsiam.report.render import plotly_js, render

EXAMPLE_COLUMNS = 20  # example tables show at most this many columns, the rest in a note


def colors(clusters: pd.DataFrame, known: Sequence[str] | None = None) -> dict[int, str]:
    """A colour per known cluster id, by its scenario (`figures.scenario_colors`, with
    `known` the model's scenarios in its order): a further good cluster gets the next
    green, so good clusters stay apart; clusters of one error scenario share its colour."""
    table = clusters.sort_values("cluster")
    table = table[table["cluster"] >= 0]
    good = [str(s) for s in table.loc[table["is_good"].astype(bool), "scenario"]]
    scenarios = [str(s) for s in (known if known is not None else table["scenario"])]
    by_scenario = figures.scenario_colors(scenarios, good[0] if good else "",
                                          table["scenario"].astype(str))
    out: dict[int, str] = {-1: figures.VERDICT_COLORS["noise"]}
    g = 0
    for row in table.itertuples():
        if bool(row.is_good):
            out[int(row.cluster)] = figures.PALETTE_GOOD[g % len(figures.PALETTE_GOOD)]
            g += 1
        else:
            out[int(row.cluster)] = by_scenario[str(row.scenario)]
    return out


def number(value: Any) -> str:
    """Integers with thousands separators, other numbers to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return ""
        if (v.is_integer() or abs(v) >= 1000) and abs(v) < 1e15:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    return str(value)


def percent(share: float | None) -> str:
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return ""
    return f"{100 * float(share):.1f}%"


def effect(value: float | None) -> str:
    return "" if value is None or math.isnan(float(value)) else f"{float(value):+.2f}"


def feature_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A card's distinguishing features: name, effect size, typical value here and in good."""
    out = []
    for r in rows:
        if r["type"] == "numeric":
            here, there = number(r.get("median")), number(r.get("good_median"))
            what = "median"
        else:
            here, there = percent(r.get("share")), percent(r.get("good_share"))
            what = "share"
        out.append({"feature": str(r["feature"]), "effect": effect(r.get("effect")),
                    "effect_value": r.get("effect"), "what": what, "here": here,
                    "good": there})
    return out


def features_part(rows: list[dict[str, Any]], good_cluster: bool) -> dict[str, Any]:
    """A card's feature table: its rows, what they are compared with, and what to say
    when there are none. A good cluster compared with all good traffic (a table written
    before good clusters had their own reference) is compared with itself: no rows."""
    if good_cluster and not any(r.get("versus") == OTHER_GOOD for r in rows):
        rows = []
    note = ("Good traffic is what the other cards are compared with, and too few good "
            "records lie outside this cluster to compare it with them." if good_cluster
            else "No feature profile for this group.")
    return {"features": feature_rows(rows),
            "versus": "other good traffic" if good_cluster else "good traffic",
            "versus_short": "other good" if good_cluster else "good",
            "features_note": note}


def mix_rows(counts: Mapping[str, int], top: int = 6) -> list[dict[str, str]]:
    """The largest label counts (and the rest as one row), with shares."""
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [{"label": str(k), "count": number(v), "share": percent(v / total if total else 0)}
            for k, v in ordered[:top]]
    rest = sum(v for _, v in ordered[top:])
    if rest:
        rows.append({"label": f"{len(ordered) - top} other labels", "count": number(rest),
                     "share": percent(rest / total)})
    return rows


def parse_mix(value: Any) -> dict[str, int]:
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    if isinstance(value, str) and value.strip():
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return {str(k): int(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    return {}


_SUBSECOND = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)\.\d+")


def cell(value: Any) -> str:
    """A value of an example record as text: numbers formatted, timestamps to the second."""
    if isinstance(value, datetime):  # as summary.json writes it, so both pages agree
        value = str(value)
    if isinstance(value, str):
        return _SUBSECOND.sub(r"\1", value)
    return number(value)


def example_table(records: Sequence[Mapping[str, Any]], columns: list[str]) -> dict[str, Any]:
    """Example records as a table: `columns` in order (those the records have)."""
    present = [c for c in dict.fromkeys(columns) if any(c in r for r in records)]
    shown = present[:EXAMPLE_COLUMNS]
    return {
        "columns": shown,
        "rows": [[cell(r.get(c)) for c in shown] for r in records],
        "hidden": present[EXAMPLE_COLUMNS:],
    }


def page(template: str, data: dict[str, Any], **context: Any) -> str:
    """A whole page: plotly.js and the plots' JSON inline, nothing loaded from elsewhere."""
    # The Content-Security-Policy runs only the page's own scripts, named by their SHA-256
    # (not a random nonce: the same model and data give the same page, byte for byte).
    text = render(template, plotly_js=plotly_js(), data=data, script_hashes=_HASHES,
                  version=version("trafficsiam"), **context)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        + "'" for body in _scripts(text))
    return text.replace(_HASHES, hashes, 1)


_HASHES = "__trafficsiam_script_hashes__"
_OPEN, _CLOSE = "<script>", "</script>"


def _scripts(text: str) -> list[str]:
    """The bodies of the page's inline <script> elements, in order (what the regex
    `<script>(.*?)</script>` finds; str.find, because plotly.js is megabytes long)."""
    bodies = []
    at = text.find(_OPEN)
    while at >= 0:
        end = text.find(_CLOSE, at + len(_OPEN))
        if end < 0:
            break
        bodies.append(text[at + len(_OPEN):end])
        at = text.find(_OPEN, end + len(_CLOSE))
    return bodies
