"""Assign speed: points/s of `hdbscan.approximate_predict` against the vectorised
`trafficsiam.assign.Assigner.predict`, and how often they agree.

HDBSCAN (prediction_data=True) is fitted on gaussian blobs (20,000 training points, 8
dimensions, 10 centres of different spreads, 5% uniform noise); the new points are
training points jittered by gaussian noise (90%) and uniform points in a box twice the
data's extent (10%). `approximate_predict` runs on a prefix of the new points (it loops
in Python; its rate is extrapolated), `Assigner.predict` on all of them; agreement
(labels, and strengths within 1e-6 where labels agree) is measured on that prefix.

    .venv/bin/python bench/assign_speed.py                  # 200,000 new points
    .venv/bin/python bench/assign_speed.py --quick          # 5,000 training, 20,000 new
    .venv/bin/python bench/assign_speed.py --points 1000000 --dim 16 --n-jobs 1 4
    .venv/bin/python bench/assign_speed.py --precision float64   # the float64 tree

By default the points hold float32 values, as the model's embeddings do, so the
Assigner queries its float32 tree in Z-order (what scoring runs); `--precision float64`
keeps full float64 coordinates and the float64 tree.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hdbscan
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as common  # noqa: E402

from trafficsiam.assign import Assigner  # noqa: E402


def make_data(n_train: int, n_points: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 1, (10, dim))
    stds = rng.uniform(0.01, 0.05, 10)
    n_noise = n_train // 20
    which = rng.integers(0, 10, n_train - n_noise)
    blobs = centers[which] + rng.normal(0, 1, (len(which), dim)) * stds[which, None]
    lo, hi = blobs.min(0), blobs.max(0)
    train = np.vstack([blobs, rng.uniform(lo, hi, (n_noise, dim))])
    n_far = n_points // 10
    near = train[rng.integers(0, n_train, n_points - n_far)]
    near = near + rng.normal(0, 0.02, near.shape)
    far = rng.uniform(lo - (hi - lo) / 2, hi + (hi - lo) / 2, (n_far, dim))
    points = np.vstack([near, far])
    return train, points[rng.permutation(n_points)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000, help="new points to assign")
    parser.add_argument("--train", type=int, default=20_000, help="training points")
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--ref-points", type=int, default=20_000,
                        help="prefix of the new points given to approximate_predict")
    parser.add_argument("--min-cluster-size", type=int, default=50)
    parser.add_argument("--min-samples", type=int, nargs="+", default=[5, 20],
                        help="one table row per value")
    parser.add_argument("--n-jobs", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                        help="threads of Assigner.predict, one table row per value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5,000 training, 20,000 new points")
    parser.add_argument("--precision", choices=["float32", "float64"], default="float32",
                        help="coordinates of the training and new points (default: float32 "
                             "values, as embeddings)")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.points, args.ref_points = 5_000, 20_000, 5_000

    train, points = make_data(args.train, args.points, args.dim, args.seed)
    if args.precision == "float32":
        train = train.astype(np.float32).astype(np.float64)
        points = points.astype(np.float32)
    ref_points = points[: min(args.ref_points, len(points))]
    rows: list[dict[str, Any]] = []
    for min_samples in args.min_samples:
        t0 = time.perf_counter()
        clusterer = hdbscan.HDBSCAN(min_cluster_size=args.min_cluster_size,
                                    min_samples=min_samples, prediction_data=True).fit(train)
        fit_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_labels, ref_strengths = hdbscan.approximate_predict(
                clusterer, ref_points.astype(np.float64))
        ref_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        assigner = Assigner.from_clusterer(clusterer)
        build_s = time.perf_counter() - t0
        ref_row = {"method": "hdbscan.approximate_predict", "points": len(ref_points),
                   "seconds": round(ref_s, 3), "points_per_s": len(ref_points) / ref_s,
                   "speedup": 1.0, "build_s": 0.0}
        case_rows = [ref_row]
        for n_jobs in args.n_jobs:
            t0 = time.perf_counter()
            labels, strengths = assigner.predict(points, n_jobs=n_jobs)
            new_s = time.perf_counter() - t0
            head = labels[: len(ref_points)]
            same = head == ref_labels
            diff = np.abs(strengths[: len(ref_points)] - ref_strengths)[same]
            case_rows.append({
                "method": f"Assigner.predict (n_jobs={n_jobs})", "points": len(points),
                "seconds": round(new_s, 3), "points_per_s": len(points) / new_s,
                "speedup": len(points) / new_s / ref_row["points_per_s"],
                "build_s": round(build_s, 4), "agreement": float(same.mean()),
                "max_strength_diff": float(diff.max()) if diff.size else 0.0,
                "noise_share": float((labels < 0).mean()),
            })
        for row in case_rows:
            row.update(min_samples=min_samples, clusters=int(clusterer.labels_.max() + 1),
                       fit_s=round(fit_s, 3))
        rows.extend(case_rows)

    columns = ["min_samples", "method", "points", "seconds", "points_per_s", "speedup",
               "agreement", "max_strength_diff", "clusters", "noise_share", "build_s"]
    machine = common.machine_info()
    print(common.source_line(machine), end="")
    print(f"training points {args.train:,}, dim {args.dim}, "
          f"min_cluster_size {args.min_cluster_size}, {args.precision} coordinates\n")
    print(common.markdown_table(rows, columns))
    name = "assign_speed_quick" if args.quick else "assign_speed"
    path = common.write_json(name, {
        "args": vars(args), "machine": machine, "rows": rows,
    })
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
