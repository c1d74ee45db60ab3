"""A shifted site or month, and `trafficsiam calibrate` as the remedy (issue 19): the same
test records measured with the fitted model and with the model recalibrated on good
records of the shifted traffic (disjoint from the test records), new failures' detection
beside the false alarm.

    .venv/bin/python bench/calibrate_shift.py                 # 5g and nsl-kdd, seed 0
    .venv/bin/python bench/calibrate_shift.py --data 5g --seeds 3

* 5g: site b (both files, in time order); the fit on the first half of the rows without
  `interface-loss` and `vcpu-overload` (never seen, as in `bench/verdicts.py`); the
  second half in time: its first half's good records calibrate, its second half is the
  test (every scenario);
* nsl-kdd: the fit on KDDTrain+; KDDTest+'s normal records split at random in two, one
  half calibrates, the other half and every attack record are the test.

Per data set and seed: `evaluate`'s metrics for the parent and the recalibrated model.
Results: bench/results/calibrate_shift/ (runs.csv, tables.md). Run with OMP_NUM_THREADS=1
on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, datasets_dir, over_seeds, save_runs  # noqa: E402

from trafficsiam import api  # noqa: E402
from trafficsiam.config import build_config  # noqa: E402
from trafficsiam.derive import recalibrate  # noqa: E402
from trafficsiam.measure.evaluate import evaluate  # noqa: E402

METRICS = ("good_false_alarm", "novel_called_good", "known_accuracy", "known_called_good")


def _config(label: str, good: str, ignore: list[str], seed: int):  # type: ignore[no-untyped-def]
    return build_config({"data": {"label_column": label, "good_label": good,
                                  "ignore": ignore, "rare_scenarios": "drop"},
                         "train": {"seed": seed}})


def split_5g(data: Path, out: Path) -> tuple[Path, Path, Path, object]:
    """(train, calibration good, test) files of the 5G protocol, and its config maker."""
    g = data / "5gc-failures"
    frame = pd.concat([pd.read_parquet(g / "site_b_train.parquet"),
                       pd.read_parquet(g / "site_b_test.parquet")], ignore_index=True)
    half = len(frame) // 2
    first, second = frame.iloc[:half], frame.iloc[half:]
    train = first[~first["failure"].isin(["interface-loss", "vcpu-overload"])]
    quarter = len(second) // 2
    cal = second.iloc[:quarter]
    cal = cal[cal["failure"] == "normal"]
    return _write(out, train, cal, second.iloc[quarter:]) + (
        lambda seed: _config("failure", "normal", [], seed),)


def split_kdd(data: Path, out: Path) -> tuple[Path, Path, Path, object]:
    kdd = data / "nsl-kdd"
    test = pd.read_parquet(kdd / "KDDTest+.parquet")
    normal = np.flatnonzero((test["attack"] == "normal").to_numpy())
    rng = np.random.default_rng(0)
    cal_rows = np.sort(rng.choice(normal, len(normal) // 2, replace=False))
    rest = np.setdiff1d(np.arange(len(test)), cal_rows)
    train = pd.read_parquet(kdd / "KDDTrain+.parquet")
    return _write(out, train, test.iloc[cal_rows], test.iloc[rest]) + (
        lambda seed: _config("attack", "normal", ["category", "is_attack", "difficulty"],
                             seed),)


def _write(out: Path, train: pd.DataFrame, cal: pd.DataFrame, test: pd.DataFrame
           ) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "train.parquet", out / "calibrate.parquet", out / "test.parquet")
    for frame, path in zip((train, cal, test), paths, strict=True):
        frame.to_parquet(path, index=False)
    return paths


def run(name: str, out: Path, seeds: int, data: Path) -> list[dict[str, object]]:
    train, cal, test, config = {"5g": split_5g, "nsl-kdd": split_kdd}[name](data, out)
    rows: list[dict[str, object]] = []
    for seed in range(seeds):
        start = time.perf_counter()
        parent = out / f"model-seed{seed}"
        api.fit(train, parent, config(seed), force=True, quiet=True, report=False)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        child = recalibrate(parent, cal, out / f"calibrated-seed{seed}", force=True,
                            seed=seed)
        derive_s = time.perf_counter() - start
        for kind, model in (("fitted", parent), ("calibrated", child.path)):
            result = evaluate(model, test, out / f"eval-{kind}-seed{seed}", quiet=True,
                              report=False)
            rows.append({"data": name, "seed": seed, "model": kind,
                         **{m: result.metrics[m] for m in METRICS},
                         "fit_s": round(fit_s, 1), "calibrate_s": round(derive_s, 1),
                         "calibration_records": int(len(pd.read_parquet(cal)))})
        print(f"{name} seed {seed}: fit {fit_s:.0f} s, calibrate {derive_s:.1f} s", flush=True)
    return rows


def table(runs: pd.DataFrame) -> str:
    lines = ["| data | model | seeds | " + " | ".join(METRICS) + " |",
             "|---" * (3 + len(METRICS)) + "|"]
    for (data, model), part in runs.groupby(["data", "model"], sort=False):
        cells = [over_seeds(part[col]) for col in METRICS]
        lines.append(f"| {data} | {model} | {len(part)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="5g,nsl-kdd")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "calibrate_shift"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = datasets_dir()
    if data is None:
        print("skipped: the shared data sets are absent")
        return
    out = Path(args.out)
    rows: list[dict[str, object]] = []
    for name in args.data.split(","):
        rows += run(name, out / name, args.seeds, data)
        runs = pd.DataFrame(rows)
        save_runs(out, runs, table(runs))


if __name__ == "__main__":
    main()
