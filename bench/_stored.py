"""The fitted models of a `bench/verdicts.py` run, for the offline studies that judge them
again without refitting (`vote_reference.py`, `discovery_background.py`,
`decision_variants.py`): each data set's label column, its training and test records, and
the command line they share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _common import RESULTS, datasets_dir

# The label column of each data set in `bench/verdicts.py`.
LABELS = {"nsl-kdd": "attack", "sample": "scenario", "ton-iot": "type", "5g": "failure"}
# The run folder the studies read by default: the second run of BENCHMARKS.md §6.
DEFAULT_RUNS = RESULTS / "verdicts-0.85"


def frames(runs: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test records of `bench/verdicts.py`'s split of `name`."""
    data = datasets_dir()
    if name == "nsl-kdd":
        if data is None:
            raise SystemExit("../shared/datasets is missing")
        return (pd.read_parquet(data / "nsl-kdd" / "KDDTrain+.parquet"),
                pd.read_parquet(data / "nsl-kdd" / "KDDTest+.parquet"))
    folder = runs / name if name == "sample" else runs / name / "split"
    return pd.read_parquet(folder / "train.parquet"), pd.read_parquet(folder / "test.parquet")


def arguments(doc: str, data: str = "sample,5g,ton-iot,nsl-kdd") -> argparse.Namespace:
    """--data (comma-separated names), --seeds, --runs: what every study is asked."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", default=data)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    return parser.parse_args()
