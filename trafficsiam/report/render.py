"""The plumbing every HTML page shares: one Jinja2 environment (autoescaped, strict about
undefined names) and the inline plotting library."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jinja2


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trafficsiam.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["script_json"] = script_json
    return env


def render(template: str, **context: Any) -> str:
    """The page `template` (a file in templates/) rendered with `context`."""
    return environment().get_template(template).render(**context)


def script_json(value: Any) -> str:
    """JSON that is safe inside an inline <script>: `<`, `>`, `&` and the line separators
    are escaped, so a value such as '</script><script>...' from data cannot close the
    script element (json.dumps alone does not escape them)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    from markupsafe import Markup

    return Markup(text)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js (minified, bundled with the plotly package) for inlining in a page."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())
