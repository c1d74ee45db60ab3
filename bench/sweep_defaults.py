"""Sweep of the defaults: embedding dimension N x triplet strategy on the sample data.

For every seed, the sample data of `trafficsiam.synth` (`--rows` rows, generated with that
seed) is fitted with `trafficsiam.api.fit` (train.seed = the same seed) for every
`model.embedding_dim` in `--dims` and `triplets.strategy` in `--strategies`, all other
settings at their defaults. Recorded per fit: weighted purity (share of clustered records
whose scenario names their cluster), whether every scenario has a cluster named after it,
noise share, clustered share = weighted purity x (1 - noise share) (the share of all
clustered-sample records that sit in a cluster of their own scenario), number of clusters,
epochs run, train time and cluster time.

Winner: among settings that named every scenario in every seed, the highest mean
clustered share (weighted purity alone rewards sending hard records to noise).

    .venv/bin/python bench/sweep_defaults.py                   # 4 dims x 3 strategies x 3 seeds
    .venv/bin/python bench/sweep_defaults.py --seeds 0 1 --dims 4 8 16
    .venv/bin/python bench/sweep_defaults.py --quick
    .venv/bin/python bench/sweep_defaults.py --resume          # skip fits already in the JSON
    .venv/bin/python bench/sweep_defaults.py --data nsl-category --strategies batch-hard \\
        --dims 4 8 16 --seeds 0 1                              # the same on NSL-KDD
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

from trafficsiam import synth
from trafficsiam.api import fit
from trafficsiam.cluster import NOISE
from trafficsiam.config import build_config

STRATEGIES = ("random", "semi-hard", "batch-hard")
DEFAULT = (8, "batch-hard")


def one_fit(data: Path, out: Path, dim: int, strategy: str, seed: int,
            epochs: int | None, data_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    train: dict[str, Any] = {"seed": seed}
    if epochs:
        train["epochs"] = epochs
    cfg = build_config({
        "data": data_cfg or common.synth_data_config(),
        "model": {"embedding_dim": dim},
        "triplets": {"strategy": strategy},
        "train": train,
    })
    start = time.perf_counter()
    result = fit(data, out, cfg, force=True, quiet=True)
    seconds = time.perf_counter() - start
    table = result.clusters
    real = table[table["cluster"] != NOISE]
    scenarios = [str(s) for s in result.manifest["scenarios"]]
    named = set(real["scenario"])
    noise = float(result.manifest["clusters"]["noise_share"])
    purity = result.weighted_purity
    return {
        "dim": dim,
        "strategy": strategy,
        "seed": seed,
        "weighted_purity": purity,
        "noise_share": noise,
        "clustered_share": purity * (1 - noise),
        "all_named": named >= set(scenarios),
        "unnamed": sorted(set(scenarios) - named),
        "clusters": len(real),
        "epochs_run": result.manifest["training"]["epochs_run"],
        "train_s": float(result.timings["train"]),
        "cluster_s": float(result.timings["cluster"]),
        "fit_s": seconds,
    }


def aggregate(runs: list[dict[str, Any]], dims: list[int], strategies: list[str]
              ) -> list[dict[str, Any]]:
    rows = []
    for dim in dims:
        for strategy in strategies:
            part = [r for r in runs if r["dim"] == dim and r["strategy"] == strategy]
            if not part:
                continue

            def mean(key: str, part: list[dict[str, Any]] = part) -> float:
                return statistics.fmean(float(r[key]) for r in part)

            purities = [r["weighted_purity"] for r in part]
            rows.append({
                "N": dim,
                "strategy": strategy,
                "default": "yes" if (dim, strategy) == DEFAULT else "",
                "seeds": len(part),
                "purity mean": mean("weighted_purity"),
                "purity min": min(purities),
                "purity sd": statistics.stdev(purities) if len(part) > 1 else 0.0,
                "all named": f"{sum(r['all_named'] for r in part)}/{len(part)}",
                "noise share": mean("noise_share"),
                "clustered share": mean("clustered_share"),
                "clusters": mean("clusters"),
                "epochs": mean("epochs_run"),
                "train s": mean("train_s"),
                "cluster s": mean("cluster_s"),
            })
    return rows


def pick_winner(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in rows if r["all named"].split("/")[0] == r["all named"].split("/")[1]]
    pool = ok or rows
    return max(pool, key=lambda r: r["clustered share"]) if pool else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synth", choices=("synth", "nsl-attack", "nsl-category"),
                    help="synth (default; data seed = seed) or NSL-KDD KDDTrain+ with the "
                         "attack or category label (fixed data; seed = train seed only)")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dims", type=int, nargs="+", default=[3, 4, 8, 16])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--epochs", type=int, default=None,
                    help="train.epochs (default: the product's default)")
    ap.add_argument("--resume", action="store_true",
                    help="reuse fits already in bench/results/sweep_defaults.json")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3,000 rows, 1 seed, N in {4, 8}, 3 epochs")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.seeds, args.dims, args.epochs = 3_000, [0], [4, 8], 3
    logging.getLogger("trafficsiam").setLevel(logging.ERROR)

    machine = common.machine_info()
    print(f"# sweep_defaults\n\n{machine['cpu']}, {machine['cores']} cores, "
          f"torch {machine['torch']}, load average at start "
          f"{machine['load_average_at_start']}\n"
          f"{common.source_line(machine)}\n")
    name = "sweep_defaults" if args.data == "synth" else f"sweep_defaults_{args.data}"
    if args.quick:
        name += "_quick"  # never overwrite a full run
    nsl_path = None
    nsl_cfg: dict[str, Any] | None = None
    if args.data != "synth":
        nsl_path = common.require_nsl_kdd("KDDTrain+.parquet")
        nsl_cfg = common.nsl_kdd_data_config(args.data.split("-", 1)[1])
    out_json = common.RESULTS / f"{name}.json"
    runs: list[dict[str, Any]] = []
    if args.resume and out_json.is_file():
        old = json.loads(out_json.read_text(encoding="utf-8"))
        if old.get("args", {}).get("rows") == args.rows and old.get("args", {}).get(
                "epochs") == args.epochs:
            runs = old.get("runs", [])
    done = {(r["dim"], r["strategy"], r["seed"]) for r in runs}

    tmp = Path(tempfile.mkdtemp(prefix="trafficsiam-sweep-"))
    try:
        # Warm-up fit (not recorded): the first fit in a process pays for lazy set-up, e.g.
        # hdbscan starting its joblib worker pool (only above ~16k clustered points).
        synth.write(tmp / "warmup.parquet", rows=20_000, seed=99)
        one_fit(tmp / "warmup.parquet", tmp / "model", 8, "batch-hard", 0, 1)
        for seed in args.seeds:
            if nsl_path is not None:
                data = nsl_path
            else:
                data = tmp / f"synth-{args.rows}-{seed}.parquet"
                synth.write(data, rows=args.rows, seed=seed)
            for dim in args.dims:
                for strategy in args.strategies:
                    if (dim, strategy, seed) in done:
                        continue
                    r = one_fit(data, tmp / "model", dim, strategy, seed, args.epochs, nsl_cfg)
                    runs.append(r)
                    print(f"  N={dim:2d} {strategy:10s} seed {seed}: purity "
                          f"{r['weighted_purity']:.3f} noise {r['noise_share']:.3f} "
                          f"named {r['all_named']} train {r['train_s']:.1f}s "
                          f"cluster {r['cluster_s']:.1f}s", file=sys.stderr)
                    common.write_json(name, {"machine": machine, "args": vars(args),
                                                         "runs": runs, "partial": True})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    runs = [r for r in runs if r["dim"] in args.dims and r["strategy"] in args.strategies
            and r["seed"] in args.seeds]
    rows = aggregate(runs, args.dims, args.strategies)
    winner = pick_winner(rows)
    what = f"synth {args.rows:,} rows" if nsl_path is None else f"NSL-KDD KDDTrain+ ({args.data})"
    print(f"## N x strategy on {what}, seeds {args.seeds} (means over seeds)\n")
    print(common.markdown_table(rows))
    print()
    if winner is not None:
        print(f"Winner (every scenario named in every seed, then highest clustered share): "
              f"N={winner['N']}, {winner['strategy']} (clustered share "
              f"{winner['clustered share']:.3f}, purity {winner['purity mean']:.3f}, "
              f"noise {winner['noise share']:.3f}). Current default: N={DEFAULT[0]}, "
              f"{DEFAULT[1]}.")
    path = common.write_json(name, {"machine": machine, "args": vars(args),
                                                "runs": runs, "table": rows, "winner": winner})
    print(f"results: {path.relative_to(common.REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
