"""Fit on an export larger than memory (issue 19): peak memory and time of `trafficsiam
fit` on 1M and 10M records of sample data with the default `data.max_records`, each in a
fresh process (peak RSS: VmHWM), training cut to one short epoch (the data path is what
is measured, not training).

    .venv/bin/python bench/fit_memory.py                 # 1M and 10M records
    .venv/bin/python bench/fit_memory.py --rows 1000000 3000000

Inputs are written once per size in chunks of 1M records (`synth.generate`, seeds 1, 2,
...) with a ParquetWriter, so that 10M records never sit in memory. Results: stdout and
bench/results/fit_memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_info  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from trafficsiam import api
from trafficsiam.config import build_config
cfg = build_config({"data": {"ignore": ["id", "timestamp"]},
                    "train": {"epochs": 1, "steps_per_epoch": 20}})
start = time.perf_counter()
fitted = api.fit(sys.argv[1], sys.argv[2], cfg, force=True, quiet=True, report=False)
seconds = time.perf_counter() - start
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mib": round(peak / 1024),
                  "sampled": fitted.manifest["data"]["sampled"],
                  "rows": fitted.manifest["data"]["rows"],
                  "timings": fitted.timings}))
"""


def write_input(path: Path, rows: int) -> None:
    from trafficsiam import synth

    writer = None
    done, seed = 0, 1
    while done < rows:
        n = min(1_000_000, rows - done)
        frame = synth.generate(rows=n, seed=seed, novel=False)
        frame["id"] = [f"f{done + i:010d}" for i in range(n)]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        done, seed = done + n, seed + 1
    if writer is not None:
        writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fit_memory"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        path = args.work / f"sample-{rows}.parquet"
        if not path.exists():
            start = time.perf_counter()
            write_input(path, rows)
            print(f"input {rows:,} rows written ({time.perf_counter() - start:.0f} s, "
                  f"{path.stat().st_size / 2**20:.0f} MiB)", flush=True)
        out = subprocess.run([sys.executable, "-c", CHILD, str(path),
                              str(args.work / f"model-{rows}")],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"fit on {rows:,} rows failed:\n{out.stderr[-3000:]}")
        result = {"rows": rows, **json.loads(out.stdout.strip().splitlines()[-1])}
        results.append(result)
        print(f"{rows:>12,} rows: fit {result['seconds']} s, peak RSS "
              f"{result['peak_rss_mib']} MiB, kept {result['rows']:,}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fit_memory.json").write_text(
        json.dumps({"machine": machine_info(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
