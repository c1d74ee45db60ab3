"""Scoring a CSV against the same records in parquet: what reading CSV as text costs
(issue 18's one reader: CSV is text for every command, numbers by `read.parse_numbers`).

    .venv/bin/python bench/score_csv.py                     # 1,000,000 rows, 2 repeats
    .venv/bin/python bench/score_csv.py --rows 200000 --work /tmp/sc

Setup (not timed): a model fitted on `synth.generate(20_000, seed=1)` with `id` and
`timestamp` ignored, as `bench/score_throughput.py` fits it, and
`synth.generate(rows, seed=5, novel=True)` written as CSV and as parquet. Each timed run
is `api.score(model, input, out, report=False, quiet=True)` in a fresh subprocess
(peak RSS: that run's VmHWM), model loading included; the formats alternate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

CHILD = """
import json, sys, tempfile, time
from pathlib import Path
from trafficsiam import api
model, data = sys.argv[1], sys.argv[2]
out = Path(tempfile.mkdtemp())
start = time.perf_counter()
api.score(model, data, out / "o", state=out / "s.db", quiet=True, report=False)
seconds = time.perf_counter() - start
peak = [int(line.split()[1]) for line in open("/proc/self/status")
        if line.startswith("VmHWM")][0] / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the inputs and model here")
    args = ap.parse_args()
    from trafficsiam import api, synth
    from trafficsiam.config import build_config

    work = args.work or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "manifest.json").is_file():
        synth.write(work / "train.parquet", rows=20_000, seed=1)
        api.fit(work / "train.parquet", model,
                build_config({"data": {"ignore": ["id", "timestamp"]}}), quiet=True,
                report=False)
    inputs = {"csv": work / f"in-{args.rows}.csv", "parquet": work / f"in-{args.rows}.parquet"}
    if not inputs["csv"].is_file():
        frame = synth.generate(rows=args.rows, seed=5, novel=True)
        frame.to_csv(inputs["csv"], index=False)
        frame.to_parquet(inputs["parquet"], index=False)
    print(f"# score_csv\n\n{json.dumps(machine_info())}\n")
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for kind, path in inputs.items():
            proc = subprocess.run([sys.executable, "-c", CHILD, str(model), str(path)],
                                  capture_output=True, text=True, check=True)
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            if kind not in best or got["seconds"] < best[kind]["seconds"]:
                best[kind] = got
            time.sleep(1)
    size = {k: p.stat().st_size / 2**20 for k, p in inputs.items()}
    print("| input | MiB | score s (best) | rows/s | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- |")
    for kind, got in best.items():
        print(f"| {kind} | {size[kind]:,.0f} | {got['seconds']:.1f} | "
              f"{args.rows / got['seconds']:,.0f} | {got['peak_mib']:,.0f} |")


if __name__ == "__main__":
    main()
