"""What ts_anomaly's distance costs per record: the Euclidean distance to the good-traffic
prototypes, the saturated one of format 3 models (one fit of 256 prototypes) and the
default saturated one (the mean over `prototypes.ANOMALY_SETS` fits of 128), and what
fitting the anomaly's k-means costs, on one thread.

    OMP_NUM_THREADS=1 .venv/bin/python bench/anomaly_cost.py              # NSL-KDD
    OMP_NUM_THREADS=1 .venv/bin/python bench/anomaly_cost.py --rows 200000

The records are KDDTrain+ normalised as `fit` does (71 inputs), repeated to `--rows`;
without the data set, Gaussian records of 71 inputs. The k-means times: the 256
Euclidean prototypes alone, and `api.good_traffic_prototypes` (those and the fits).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as common  # noqa: E402

from trafficsiam import api  # noqa: E402
from trafficsiam.prototypes import (  # noqa: E402
    build_prototypes,
    nearest_distance,
    saturated_anomaly,
    saturated_distance,
)


def _records() -> tuple[np.ndarray, np.ndarray, str]:
    """(all normalised records, the good ones, where they came from)."""
    import pandas as pd

    train = common.nsl_kdd()
    if train is not None:
        x, codes, names = common.prepare_matrix(pd.read_parquet(train),
                                                common.nsl_kdd_data_config("attack"),
                                                str(train))
        return x, x[codes == names.index("normal")], str(train)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120_000, 71)).astype(np.float32)
    return x, x[:60_000], "Gaussian, 71 inputs"


def _seconds(run, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return float(best)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x, good, source = _records()
    x = np.ascontiguousarray(np.resize(x, (args.rows, x.shape[1])), dtype=np.float32)
    rows = np.arange(len(good))
    start = time.perf_counter()
    build_prototypes(good[: api.GOOD_PROTOTYPE_RECORDS], np.zeros(
        min(len(good), api.GOOD_PROTOTYPE_RECORDS), np.int64), 256, 0)
    euclid_kmeans_s = time.perf_counter() - start
    start = time.perf_counter()
    protos, fits, owner = api.good_traffic_prototypes(
        good, rows, 256, np.random.default_rng(0), seed=0)
    kmeans_s = time.perf_counter() - start
    runs = {
        "euclidean": lambda: nearest_distance(x, protos),
        "saturated_one_fit_256": lambda: saturated_distance(x, protos, 0.25),
        "saturated_4_fits_128": lambda: saturated_anomaly(x, fits, owner, 0.25),
    }
    out = {name: round(_seconds(run, args.repeats) / args.rows * 1e6, 3)
           for name, run in runs.items()}
    print(json.dumps({"us_per_record": out, "rows": args.rows, "inputs": int(x.shape[1]),
                      "good_records": int(len(good)),
                      "kmeans_s": {"euclidean_256": round(euclid_kmeans_s, 2),
                                   "all_fits": round(kmeans_s, 2)},
                      "source": source, "machine": common.machine_info()["cpu"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
