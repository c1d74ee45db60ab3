"""What evaluate's operating points cost: seconds of `evaluate` (scoring, metrics, files)
against seconds of `evaluate.operating_points` (12 recalibrations and assessments), on
sample data of growing size scored by a model fitted on the sample data.

    OMP_NUM_THREADS=1 .venv/bin/python bench/evaluate_cost.py             # 20k, 200k, 1M
    OMP_NUM_THREADS=1 .venv/bin/python bench/evaluate_cost.py --rows 20000

Beyond `evaluate.OPERATING_MAX_RECORDS` (200,000) test records the table is measured on a
sample of that many, so its cost stops growing there. Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as common  # noqa: E402

from trafficsiam import api, synth  # noqa: E402
from trafficsiam.config import build_config  # noqa: E402
from trafficsiam.measure.evaluate import evaluate, operating_points  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000, 1_000_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synth.generate(rows=20_000, seed=1).to_parquet(work / "train.parquet", index=False)
        cfg = build_config({"data": {"ignore": ["id", "timestamp"]}})
        api.fit(work / "train.parquet", work / "model", cfg, quiet=True)
        art = api.load(work / "model")
        for rows in args.rows:
            test = work / f"test-{rows}.parquet"
            frame = synth.generate(rows=rows, seed=2, novel=True)
            frame.to_parquet(test, index=False)
            start = time.perf_counter()
            evaluate(art, test, work / f"eval-{rows}", quiet=True, report=False)
            total = time.perf_counter() - start
            features = frame[list(art.schema.columns)]
            x, emb = art.normaliser.transform(features)[0], art.embed(features)
            start = time.perf_counter()
            points = operating_points(art, x, emb, frame["scenario"].to_numpy(str),
                                      art.config.score)
            table = time.perf_counter() - start
            print(json.dumps({"rows": rows, "evaluate_s": round(total, 2),
                              "operating_points_s": round(table, 2),
                              "share": round(table / total, 3),
                              "records_measured": int(points["records"].iloc[0]),
                              "machine": common.machine_info()["cpu"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
