"""The model rows of `bench/verdicts.py` for a configuration change, without the baselines:
fit and evaluate the default model with `--set` overrides on the same splits (the sample
data's files and TON_IoT's and 5G's backtest splits of a stored run, KDDTrain+ ->
KDDTest+), over seeds, with the candidates' stability between seeds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/verdicts_variant.py --tag none  # the default
    OMP_NUM_THREADS=1 .venv/bin/python bench/verdicts_variant.py --tag dropout \
        --set train.input_dropout=0.25

The splits come from `--runs` (default bench/results/verdicts-0.85, written by
`bench/verdicts.py`); results go to bench/results/variants/<tag>/ (git-ignored): each
run's folders, runs.csv and tables.md. A model row equals `bench/verdicts.py`'s for the
same code, configuration and seed (the fits are deterministic on one machine).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save_runs  # noqa: E402
from _stored import DEFAULT_RUNS  # noqa: E402
from verdicts import config, derived, split_files, table  # noqa: E402

from trafficsiam.measure.compare import compare  # noqa: E402


def override(pairs: list[str]) -> list[dict[str, dict[str, object]]]:
    """`--set section.key=value` pairs as config layers (values read as YAML)."""
    layers = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        layers.append({section: {name: yaml.safe_load(value)}})
    return layers


def run(name: str, runs: Path, out: Path, seeds: int, sets: list[str]) -> pd.DataFrame:
    train, test = split_files(runs / name, name)
    return compare(train, test, out, config(name, override(sets)), losses=("lossless-triplet",),
                   seeds=seeds, baseline_names=(), quiet=True, report=False).runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", required=True, help="name of the results folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration override, e.g. train.epochs=10 (repeatable)")
    parser.add_argument("--data", default="sample,5g,ton-iot,nsl-kdd")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = RESULTS / "variants" / args.tag
    frames = []
    for name in args.data.split(","):
        start = time.perf_counter()
        # 1 - ts_p_good's AUROC reads the split's test file, which is not in `out` here
        frames.append(derived(out / name, name,
                              run(name, args.runs, out / name, args.seeds, args.set),
                              rank=False))
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        all_runs = pd.concat(frames, ignore_index=True)
        save_runs(out, all_runs, table(all_runs))


if __name__ == "__main__":
    main()
