"""The contract: names every part of the package shares, written once.

The columns scoring adds to every record, the verdicts, and the file names of a model
folder and of a scoring run. Everything that writes or reads them imports them from here.
It imports nothing of the package: every other module may import it (`decide`, which
gives the verdicts, included).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ASSIGN", "CLUSTERS", "CLUSTERS_CSV", "EXAMPLES_CSV", "FEATURES_CSV", "GOOD", "HISTORY",
    "HOLDOUT", "INDEX_HTML", "INPUTS", "KNOWN", "MANIFEST", "MAX_TEXT", "MODEL_FORMAT", "NEW",
    "NEW_TYPES_CSV", "OUTLIER", "OUT_LOCK", "REFERENCE", "REPORT_HTML", "RUNS_DIR",
    "STATE_NAME", "SUMMARY", "TS_COLUMNS", "VERDICTS", "WEIGHTS", "WORK_NAME",
    "alert_exit_code", "own_name", "run_exit_code",
]

# The verdicts, in the order of their int8 codes (`decide.verdict_codes`).
VERDICTS = ("good", "known_error", "new_error", "outlier")
GOOD, KNOWN, NEW, OUTLIER = range(4)

# The columns scoring appends to every record, in this order. An input column with one of
# these names is refused, never overwritten.
TS_COLUMNS = ("ts_cluster", "ts_scenario", "ts_strength", "ts_novelty", "ts_anomaly",
              "ts_p_good", "ts_verdict", "ts_new_type")

# The longest column name or scenario label (in characters) a model folder holds: fit
# refuses longer ones, the manifest's schema refuses them in a model folder.
MAX_TEXT = 10_000
# A model folder: its manifest's "format" says it is one.
MODEL_FORMAT = "trafficsiam-model"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
REFERENCE = "reference.parquet"
HOLDOUT = "holdout.parquet"
INPUTS = "inputs.safetensors"
ASSIGN = "assign.safetensors"
CLUSTERS = "clusters.csv"
HISTORY = "history.csv"
EXAMPLES_CSV = "examples.csv"

# A scoring run's folder (--out).
STATE_NAME = "trafficsiam-state.db"
WORK_NAME = ".trafficsiam-work"
OUT_LOCK = ".trafficsiam-out.lock"
SUMMARY = "summary.json"
CLUSTERS_CSV = "clusters.csv"
NEW_TYPES_CSV = "new_types.csv"
# Each run's own copy of its tables and page (RUNS_DIR/<run id>/), and the page that
# lists them.
RUNS_DIR = "runs"
INDEX_HTML = "index.html"

# Both: the feature profiles and the page.
FEATURES_CSV = "features_by_cluster.csv"
REPORT_HTML = "report.html"

# Exit codes a scheduler already reads as something else: ok, failure, usage, another run
# holds the state (EX_TEMPFAIL); 126 and above are the shell's (not executable, not found,
# killed by a signal: 130 Ctrl-C, 143 SIGTERM).
RESERVED_EXIT_CODES = (0, 1, 2, 75)


def alert_exit_code(code: int) -> int:
    """`code` if it can mean "a candidate new error type was found" (3-125 but 75; 0:
    never alert), else a ValueError saying which codes can."""
    if code != 0 and (code in RESERVED_EXIT_CODES or not 3 <= code <= 125):
        raise ValueError(f"{code} is reserved or out of range; pick a code in 3-125 other "
                         "than 75 (0 never alerts)")
    return code


def run_exit_code(found_new_types: bool, alert: int | None) -> int:
    """The exit code of a scoring run that succeeded: `alert` when it found a candidate
    new error type and an alert code is set, else 0."""
    return alert if found_new_types and alert else 0


def own_name(name: str, taken: Iterable[object]) -> str:
    """A column name of one of our tables beside the user's columns: `name`, with `_`
    appended while one of `taken` (the user's names) is called the same; theirs keep
    their names."""
    names = {str(t) for t in taken}
    while name in names:
        name += "_"
    return name
