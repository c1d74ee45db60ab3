"""The fitted models of a `bench/verdicts.py` run, for the offline studies that judge them
again without refitting (`vote_reference.py`, `discovery_background.py`,
`decision_variants.py`): each data set's label column, its training and test records
(`verdicts.split_files`), and the command line they share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _common import RESULTS
from verdicts import LABELLING, split_files

# The label column of each data set in `bench/verdicts.py`.
LABELS = {name: labelling[0] for name, labelling in LABELLING.items()}
# The run folder the studies read by default: the second run of BENCHMARKS.md §6.
DEFAULT_RUNS = RESULTS / "verdicts-0.85"


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run bench/verdicts.py (or pass --runs), and "
                         "keep ../shared/datasets beside the repository")
    return pd.read_parquet(path)


def test_records(runs: Path, name: str) -> pd.DataFrame:
    """The test records of `bench/verdicts.py`'s split of `name`."""
    return _read(split_files(runs / name, name)[1])


def frames(runs: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test records of `bench/verdicts.py`'s split of `name`."""
    train, test = split_files(runs / name, name)
    return _read(train), _read(test)


def arguments(doc: str, data: str = "sample,5g,ton-iot,nsl-kdd",
              models: bool = False) -> argparse.Namespace:
    """--data (comma-separated names), --seeds, --runs: what every study is asked; with
    `models`, --models: the models of another folder (a `bench/verdicts_variant.py` tag's)
    judged on --runs' records (`args.models` is --runs without it)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", default=data)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    if models:
        parser.add_argument("--models", type=Path, default=None)
    args = parser.parse_args()
    args.models = getattr(args, "models", None) or args.runs
    return args
