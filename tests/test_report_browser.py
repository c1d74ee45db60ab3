"""The report pages in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright's Python package; never a browser that Playwright downloads).

The data is hostile: a scenario (so a cluster name), a categorical value and a column
name are markup. The pages must show them as text, run no script from data, print no
console error, request nothing but the page itself, draw the expected number of points
and hold every card. Screenshots go to tests/artifacts/ (look at them).

Without chromium or playwright these tests skip with the reason, except under CI (the
CI environment variable set), where they fail: a browser test that did not run is not
a pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from trafficsiam import api, synth
from trafficsiam.config import ScoreConfig, build_config
from trafficsiam.report import collect

CHROMIUM = Path(os.environ.get("TRAFFICSIAM_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
XSS = "<script>alert(1)</script>"
MARKUP_COLUMN = "jitter<img src=x onerror=alert(2)>"
MARKUP_CONTEXT = "<b onmouseover=alert(3)>note</b>"
LAPTOP = {"width": 1440, "height": 900}


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return (f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y "
                "chromium) to run the report's browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def browser():
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def hostile(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(columns={"jitter_ms": MARKUP_COLUMN})
    frame["scenario"] = frame["scenario"].replace("error_type_2", XSS)
    frame.loc[frame.index % 3 == 0, "service"] = XSS
    frame[MARKUP_CONTEXT] = [XSS if i % 2 else f"n{i}" for i in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A model fitted on hostile data and a scoring run of hostile novel traffic."""
    root = tmp_path_factory.mktemp("browser")
    hostile(synth.generate(rows=2000, seed=5)).to_parquet(root / "train.parquet", index=False)
    cfg = build_config({"data": {"ignore": ["id", "timestamp", MARKUP_CONTEXT]},
                        "train": {"epochs": 3, "steps_per_epoch": 20, "patience": 10}})
    fit = api.fit(root / "train.parquet", root / "model", cfg, quiet=True)
    (root / "in").mkdir()
    hostile(synth.generate(rows=2500, seed=6, novel=True)).to_parquet(
        root / "in" / "batch.parquet", index=False)
    run = api.score(api.load(fit.path), root / "in", root / "out",
                    config=ScoreConfig(batch_size=1000, new_type_min_size=10), quiet=True)
    return fit, run


def _open(browser, path: Path, name: str) -> tuple[object, dict[str, list[str]]]:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport=LAPTOP)
    seen: dict[str, list[str]] = {"errors": [], "dialogs": [], "requests": []}
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))

    def dialog(d):
        seen["dialogs"].append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-top.png"))
    return page, seen


def _check_common(page, seen, path: Path) -> None:
    assert seen["errors"] == [] and seen["dialogs"] == []
    assert seen["requests"] == [path.as_uri()]  # nothing but the file itself
    resources = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert resources == []
    # Only the page's three scripts exist; no element carries an event handler from data.
    assert page.evaluate("document.scripts.length") == 3
    assert page.evaluate("document.querySelectorAll('img, [onerror], [onmouseover]').length") == 0
    assert XSS in page.evaluate("document.body.innerText")


def _points(page) -> int:
    return page.evaluate(
        "document.getElementById('map').data.reduce((n, t) => n + t.x.length, 0)")


def test_score_report_in_chromium(browser, pages):
    _, run = pages
    path = run.out / "report.html"
    page, seen = _open(browser, path, "score-report")
    _check_common(page, seen, path)
    clusters = pd.read_csv(run.out / "clusters.csv")
    expected = sum(min(int(m), collect.CAPACITY["cluster"]) for m in clusters["members"])
    expected += run.summary["verdicts"]["new_error"] + run.summary["verdicts"]["outlier"]
    assert _points(page) == expected == int(page.get_attribute("#map", "data-points"))
    groups = page.eval_on_selector_all(
        "section.card", "els => els.map(e => [e.dataset.kind, e.dataset.group])")
    want = [["new_type", t] for t in run.new_types["new_type"]]
    assert groups[:len(want)] == want and run.found_new_types
    known = clusters[(clusters["cluster"] >= 0) & (clusters["members"] > 0)]
    assert sorted(g for k, g in groups if k == "cluster") == sorted(known["name"])
    assert ["outlier", "outlier"] in groups or run.summary["verdicts"]["outlier"] == 0
    # Plotly shows the markup names as text: in the legend, and in a hover label.
    legend = page.eval_on_selector_all(".legendtext", "els => els.map(e => e.textContent)")
    assert XSS in legend
    page.click("button[data-colour=verdict]")
    assert page.get_attribute("button[data-colour=verdict]", "aria-pressed") == "true"
    assert seen["errors"] == [] and seen["dialogs"] == []
    page.close()


def test_model_report_in_chromium(browser, pages):
    fit, _ = pages
    path = fit.path / "report.html"
    page, seen = _open(browser, path, "model-report")
    _check_common(page, seen, path)
    reference = pd.read_parquet(fit.path / "reference.parquet")
    assert _points(page) == len(reference)
    names = page.eval_on_selector_all("section.card", "els => els.map(e => e.dataset.group)")
    assert sorted(names) == sorted(fit.clusters["name"])
    assert XSS in names
    curves = page.evaluate("document.getElementById('curves').data.map(t => t.name)")
    assert {"train loss", "validation loss"} <= set(curves)
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    # a feature, as text (an example table's column)
    assert MARKUP_COLUMN in page.evaluate("document.body.innerText")
    history = json.loads((fit.path / "manifest.json").read_text())["training"]["history"]
    lengths = page.evaluate("document.getElementById('curves').data.map(t => t.x.length)")
    assert set(lengths) == {len(history)}
    page.close()


_OVERLAP = """els => {
  const boxes = els.map(e => e.getBoundingClientRect());
  return boxes.length === 2 && boxes[0].width > 0 && boxes[1].width > 0 &&
    boxes[0].left < boxes[1].right && boxes[1].left < boxes[0].right &&
    boxes[0].top < boxes[1].bottom && boxes[1].top < boxes[0].bottom;
}"""

# Every element wider than its box must be one that scrolls: content cut off by an
# ancestor (overflow hidden) or spilling over the page (visible) is what a reader loses.
_CLIPPED = """() => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const bad = [];
  document.querySelectorAll("table.examples").forEach(t => {
    for (let el = t.parentElement; el && el !== document.body; el = el.parentElement) {
      const ox = getComputedStyle(el).overflowX;
      if (el.scrollWidth > el.clientWidth + 1 && ox !== "auto" && ox !== "scroll") {
        bad.push(el.tagName + "." + el.className);
      }
      if (ox === "auto" || ox === "scroll") { break; }
    }
  });
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth + 1) { bad.push("page wider than the window"); }
  return bad;
}"""


@pytest.mark.parametrize("which", ["score", "model"])
def test_the_plot_toolbar_leaves_the_legend_free(browser, pages, which):
    fit, run = pages
    path = run.out / "report.html" if which == "score" else fit.path / "report.html"
    page, _ = _open(browser, path, f"{which}-legend")
    page.hover("#map")
    for plot in ("map", "curves") if which == "model" else ("map", "trend"):
        overlap = page.eval_on_selector_all(f"#{plot} .modebar, #{plot} .legend", _OVERLAP)
        assert not overlap, f"the toolbar covers the legend of #{plot}"
    page.close()


@pytest.mark.parametrize("which", ["score", "model"])
def test_example_tables_scroll_rather_than_clip(browser, pages, which):
    fit, run = pages
    path = run.out / "report.html" if which == "score" else fit.path / "report.html"
    page, _ = _open(browser, path, f"{which}-examples")
    assert page.evaluate("document.querySelectorAll('table.examples').length") > 0
    assert page.evaluate(_CLIPPED) == []
    page.set_viewport_size({"width": 820, "height": 900})  # a half-screen window
    page.wait_for_timeout(300)
    assert page.evaluate(_CLIPPED) == []
    page.close()
