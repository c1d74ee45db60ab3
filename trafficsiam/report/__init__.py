"""Report: what a person reads. CSV tables and self-contained HTML pages (every script
and style inline, nothing loaded from the network), rendered from Jinja2 templates in
`templates/` with autoescaping on, so that values from data (column names, categorical
values) always render as text.

    collect.py       per-group counts and row samples of a scoring run, while it streams
    profile.py       what sets a group apart from good traffic (features_by_cluster.csv)
    figures.py       the map (embedding or its PCA), training curves, trend, as Plotly JSON
    cards.py         what the pages share: colours, cards, formats, rendering a page
    model_report.py  a model's page and tables (written by fit into the model folder)
    run_report.py    a scoring run's page and tables (written by score into --out)

Every page extends `templates/report_base.html.j2` (one style, one Content-Security-Policy,
the data as JSON beside plotly.js): the model's and the run's, and evaluate's and
compare's (`evaluate.html.j2`, `compare.html.j2`, filled by `evaluate.report_page` and
`compare.report_page`).
"""

from __future__ import annotations

from pathlib import Path

from trafficsiam.errors import InputError


def report(folder: str | Path, out: str | Path | None = None, *,
           model: str | Path | None = None, state: str | Path | None = None) -> Path:
    """Write the report of a model folder (written by `fit`: it has manifest.json) or of a
    scoring output folder (written by `score`: it has summary.json); returns its path.

    A model's report goes to `out`, by default `<folder>.report.html` beside the folder
    (the model folder holds only the files its manifest hashes). A scoring run's report
    goes to `out`, by default `<folder>/report.html`; `model` overrides the model folder
    named in summary.json, `state` the state store (default `<folder>/trafficsiam-state.db`).
    """
    path = Path(folder)
    if (path / "manifest.json").is_file():
        from trafficsiam.report.model_report import report_model

        return report_model(path, out)
    if (path / "summary.json").is_file():
        from trafficsiam.report.run_report import report_scored

        return report_scored(path, out, model=model, state=state)
    raise InputError(
        f"{path}: neither a model folder (no manifest.json) nor a scoring output folder "
        "(no summary.json); pass the --out folder of a fit or of a score run"
    )
