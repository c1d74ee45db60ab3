"""Report: what a person reads. CSV tables and self-contained HTML pages (every script
and style inline, nothing loaded from the network), rendered from Jinja2 templates in
`templates/` with autoescaping on, so that values from data (column names, categorical
values) always render as text."""
