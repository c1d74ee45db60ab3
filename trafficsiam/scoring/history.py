"""Run history: each run's tables and page kept in its own folder, and the page listing
them.

    OUT/summary.json, report.html, *.csv     the latest run's (as before)
    OUT/runs/<run id>/                       each run's own copy of them
    OUT/index.html                           the runs, newest first, and their trend

`score.keep_runs` (default: all) removes the oldest run folders beyond that many; the
scored files are never touched (they are the user's data). A run folder is complete or
absent: it is written under a hidden name and renamed, and a killed run's leftover is
removed by the next one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from trafficsiam import contract, write
from trafficsiam.contract import INDEX_HTML, REPORT_HTML, RUNS_DIR, SUMMARY
from trafficsiam.report.index_page import index_page

log = logging.getLogger("trafficsiam")

RUN_FILES = (SUMMARY, contract.CLUSTERS_CSV, contract.NEW_TYPES_CSV, contract.FEATURES_CSV,
             REPORT_HTML)


def keep_run(out: Path, run_id: str, keep_runs: int | None) -> Path:
    """Copy the run's files (written at `out`'s root) into `out`/runs/<run id>/, remove
    run folders beyond `keep_runs`, and write index.html. Returns the run's folder."""
    runs = write.folder(out / RUNS_DIR)
    for left in runs.glob(".*.partial"):
        shutil.rmtree(left, ignore_errors=True)  # a killed run's (we hold the state lock)
    tmp = runs / f".{run_id}.partial"
    final = runs / run_id
    try:
        tmp.mkdir()
        for name in RUN_FILES:
            if (out / name).is_file():
                shutil.copyfile(out / name, tmp / name)
        os.replace(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write.failed(final, err, "the run's folder") from None
    kept = _prune(runs, keep_runs)
    summaries = []
    for folder in kept:
        try:
            summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: no readable %s; left out of %s", folder, SUMMARY, INDEX_HTML)
            continue
        page = folder / REPORT_HTML
        summary["page"] = f"{RUNS_DIR}/{folder.name}/{REPORT_HTML}" if page.is_file() else None
        summaries.append(summary)
    write.text(out / INDEX_HTML, index_page(str(out), summaries, keep_runs), run_id)
    return final


def run_folders(runs: Path) -> list[Path]:
    """The run folders under `runs`, oldest first (run ids start with their UTC time)."""
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def _prune(runs: Path, keep_runs: int | None) -> list[Path]:
    folders = run_folders(runs)
    if keep_runs is None or len(folders) <= keep_runs:
        return folders
    for old in folders[: len(folders) - keep_runs]:
        shutil.rmtree(old, ignore_errors=True)
        log.info("removed run folder %s (score.keep_runs %d)", old, keep_runs)
    return folders[len(folders) - keep_runs:]


def summaries(out: Path) -> list[dict[str, Any]]:
    """The kept runs' summaries, oldest first (for the tracking of new types)."""
    runs = out / RUNS_DIR
    found = []
    for folder in run_folders(runs) if runs.is_dir() else []:
        try:
            found.append(json.loads((folder / SUMMARY).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found
