"""Fit stages: time per stage of `trafficsiam.api.fit` and the peak memory of a fit.

Cases (each in a fresh subprocess, so that peak memories do not mix):

* `synth`: the sample data of `trafficsiam.synth` (20,000 rows; written to a temporary
  parquet file first, outside the timed child);
* `nsl-attack`: NSL-KDD KDDTrain+.parquet, label `attack` (fine), good label `normal`,
  the other label columns (`category`, `is_attack`, `difficulty`) ignored;
* `nsl-category`: the same with label `category` (coarse; `attack` ignored instead).

Per case: the stage timings from `FitResult.timings` (read, validate, normalise, train,
embed, cluster, save), the peak resident memory of the child (`ru_maxrss`) and its memory
after imports (torch alone is a few hundred MiB), the cluster table, weighted purity,
noise share and epochs run. Configs come from `trafficsiam.config.build_config` with the
built-in defaults except for the `data:` section (and `--epochs` when given).

    .venv/bin/python bench/fit_stages.py              # all three cases
    .venv/bin/python bench/fit_stages.py --quick      # synth 5,000 rows + 20% NSL-KDD, 3 epochs
    .venv/bin/python bench/fit_stages.py --cases nsl-attack
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

CASES = ("synth", "nsl-attack", "nsl-category")
STAGES = ("read", "validate", "normalise", "good traffic", "train", "embed", "cluster",
          "calibrate", "save")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------ child


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One fit, in this (fresh) process; returns what the parent reports."""
    import logging

    rss_start = _rss_mib()
    import numpy as np  # noqa: F401  (imports counted in the baseline)
    import torch

    from trafficsiam.api import fit
    from trafficsiam.cluster import NOISE
    from trafficsiam.config import build_config

    logging.getLogger("trafficsiam").setLevel(logging.ERROR)
    rss_imports = _rss_mib()
    raw: dict[str, Any] = {"data": spec["data"]}
    if spec.get("epochs"):
        raw["train"] = {"epochs": spec["epochs"]}
    cfg = build_config(raw)
    out = Path(spec["out"])
    start = time.perf_counter()
    result = fit(spec["input"], out, cfg, force=True, quiet=True)
    seconds = time.perf_counter() - start
    rss_peak = _rss_mib()
    man = result.manifest
    table = result.clusters
    named = set(table.loc[table["cluster"] != NOISE, "scenario"])
    noise_rows = table.loc[table["cluster"] == NOISE, "mix"]
    noise_mix = json.loads(noise_rows.iloc[0]) if len(noise_rows) else {}
    scenarios = [str(s) for s in man["scenarios"]]
    training = man["training"]
    return {
        "case": spec["case"],
        "input": spec["input"],
        "rows": man["data"]["rows"],
        "features": man["model"]["in_features"],
        "scenarios": len(scenarios),
        "fit_s": seconds,
        "timings": result.timings,
        "rss_start_mib": rss_start,
        "rss_after_imports_mib": rss_imports,
        "rss_peak_mib": rss_peak,
        "torch_threads": torch.get_num_threads(),
        "weighted_purity": result.weighted_purity,
        "noise_share": float(man["clusters"]["noise_share"]),
        "cluster_points": man["clusters"]["points"],
        "cluster_params": man["clusters"]["params"],
        "epochs_run": training["epochs_run"],
        "best_epoch": training["best_epoch"],
        "stopped_early": training["stopped_early"],
        "triplets_seen": training["triplets_seen"],
        "scenarios_without_cluster": sorted(set(scenarios) - named),
        "scenario_counts": man["data"]["scenario_counts"],
        "noise_mix": noise_mix,
        "clusters": table[["cluster", "name", "scenario", "size", "purity"]].to_dict("records"),
    }


# ------------------------------------------------------------------ parent


def case_specs(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    specs = []
    for case in args.cases:
        spec: dict[str, Any] = {"case": case, "out": str(tmp / f"model-{case}"),
                                "epochs": args.epochs}
        if case == "synth":
            from trafficsiam import synth

            path = tmp / f"synth-{args.synth_rows}.parquet"
            synth.write(path, rows=args.synth_rows, seed=0)
            spec.update(input=str(path), data=common.synth_data_config())
        else:
            path = common.nsl_kdd(args.nsl_file)
            if path is None:
                continue
            label = "attack" if case == "nsl-attack" else "category"
            data = common.nsl_kdd_data_config(label)
            if args.nsl_file != "KDDTrain+.parquet" and _has_data_key("rare_scenarios"):
                # The 20% subset holds single-record attack types (e.g. ftp_write).
                data["rare_scenarios"] = "drop"
            spec.update(input=str(path), data=data)
        specs.append(spec)
    return specs


def _has_data_key(key: str) -> bool:
    from trafficsiam.config import DataConfig

    return key in DataConfig.model_fields


def spawn(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    spec_path = tmp / f"spec-{spec['case']}.json"
    result_path = tmp / f"result-{spec['case']}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path),
           "--child-result", str(result_path)]
    proc = subprocess.run(cmd, cwd=common.REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"case {spec['case']} failed (exit {proc.returncode}): {' '.join(cmd)}")
    return json.loads(result_path.read_text(encoding="utf-8"))


def report(results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        row: dict[str, Any] = {"case": r["case"], "rows": r["rows"], "features": r["features"]}
        row.update({f"{s} s": float(r["timings"].get(s, float("nan"))) for s in STAGES})
        row["fit s"] = r["fit_s"]
        row["peak RSS MiB"] = r["rss_peak_mib"]
        row["RSS after imports MiB"] = r["rss_after_imports_mib"]
        rows.append(row)
    print("## Time per stage and peak memory\n")
    print(common.markdown_table(rows))
    print()
    summary = [{
        "case": r["case"],
        "scenarios": r["scenarios"],
        "weighted purity": r["weighted_purity"],
        "noise share": r["noise_share"],
        "clusters": sum(1 for c in r["clusters"] if c["cluster"] != -1),
        "clustered points": r["cluster_points"],
        "min_cluster_size": r["cluster_params"].get("min_cluster_size"),
        "epochs run": r["epochs_run"],
        "best epoch": r["best_epoch"],
        "stopped early": r["stopped_early"],
        "scenarios without a cluster (records in the data)": ", ".join(
            f"{s} ({r['scenario_counts'].get(s, '?')})" for s in r["scenarios_without_cluster"]
        ) or "-",
    } for r in results]
    print("## Clustering summary\n")
    print(common.markdown_table(summary))
    print()
    for r in results:
        mix = r.get("noise_mix") or {}
        top = sorted(mix.items(), key=lambda kv: -kv[1])[:8]
        print(f"Noise of {r['case']} ({sum(mix.values())} points): "
              + ", ".join(f"{k} {v}" for k, v in top) + "\n")
    for r in results:
        print(f"### Cluster table: {r['case']} ({Path(r['input']).name})\n")
        print(common.markdown_table(r["clusters"], ["cluster", "name", "scenario", "size",
                                                    "purity"]))
        print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--synth-rows", type=int, default=20_000)
    ap.add_argument("--nsl-file", default="KDDTrain+.parquet",
                    help="NSL-KDD file under nsl-kdd/ (default KDDTrain+.parquet)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="train.epochs (default: the product's default)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: synth 5,000 rows, KDDTrain+_20Percent, 3 epochs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        spec = json.loads(Path(args.child).read_text(encoding="utf-8"))
        result = run_child(spec)
        Path(args.child_result).write_text(json.dumps(result, default=str), encoding="utf-8")
        return 0

    if args.quick:
        args.synth_rows, args.nsl_file, args.epochs = 5_000, "KDDTrain+_20Percent.parquet", 3
    machine = common.machine_info()
    print(f"# fit_stages\n\n{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB, "
          f"torch {machine['torch']}, load average at start "
          f"{machine['load_average_at_start']}\n"
          f"{common.source_line(machine)}\n")
    tmp = Path(tempfile.mkdtemp(prefix="trafficsiam-bench-"))
    try:
        results = []
        for spec in case_specs(args, tmp):
            print(f"  running {spec['case']} ...", file=sys.stderr)
            results.append(spawn(spec, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    name = "fit_stages_quick" if args.quick else "fit_stages"  # never overwrite a full run
    path = common.write_json(name, {"machine": machine, "args": vars(args),
                                            "results": results})
    print(f"results: {path.relative_to(common.REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
