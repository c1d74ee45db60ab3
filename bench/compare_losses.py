"""The losses side by side (issue 5): `trafficsiam compare` on sample data and on NSL-KDD,
then the markdown tables of BENCHMARKS.md section 4 from the comparison.csv files.

    .venv/bin/python bench/compare_losses.py synth      # all losses, 3 seeds, sample data
    .venv/bin/python bench/compare_losses.py nsl-kdd    # KDDTrain+ -> KDDTest+ (see --losses)
    .venv/bin/python bench/compare_losses.py table bench/results/compare-synth

Each run is `trafficsiam.measure.compare.compare`, as `trafficsiam compare` runs it, writing to
bench/results/compare-<data>/ (or the folder given; git-ignored) with bench.json (time,
machine, code digest); the table mode prints the metrics as mean ± std over the seeds.
Run it with OMP_NUM_THREADS=1 on a shared machine (BENCHMARKS.md section 4).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, datasets_dir, machine_info  # noqa: E402

from trafficsiam import synth  # noqa: E402
from trafficsiam.config import build_config  # noqa: E402
from trafficsiam.losses import LOSSES  # noqa: E402
from trafficsiam.measure.compare import compare, summarise  # noqa: E402
from trafficsiam.measure.evaluate import METRICS  # noqa: E402

SHORT = {
    "known_accuracy": "known acc", "known_macro_f1": "known F1",
    "known_error_accuracy": "known-error acc",
    "known_called_good": "known→good", "good_false_alarm": "good false alarm",
    "novel_auroc": "novel AUROC", "novel_recall_at_1pct_fpr": "novel recall @1%",
    "novel_recall_at_5pct_fpr": "novel recall @5%", "novel_called_good": "novel→good",
    "novel_grouping_ari": "novel grouping ARI", "map_at_r": "MAP@R",
    "fit_seconds": "fit s",
}


# Two tables per data set (one would be 15 columns wide): the novel scenarios, then the
# known ones and the embedding.
GROUPS = (
    ("novel_auroc", "novel_recall_at_1pct_fpr", "novel_recall_at_5pct_fpr", "novel_called_good",
     "good_false_alarm", "novel_grouping_ari", "fit_seconds"),
    ("known_accuracy", "known_macro_f1", "known_error_accuracy", "known_called_good", "ari",
     "nmi", "map_at_r"),
)


def table(folder: Path) -> str:
    """Markdown of the mean ± std per method, from runs.csv (complete after each run, so
    this also reads a comparison stopped half-way)."""
    runs = pd.read_csv(folder / "runs.csv")
    t = summarise(runs)
    assert set(METRICS) <= {c for g in GROUPS for c in g}
    lines: list[str] = []
    for cols in GROUPS:
        lines.append("| method | seeds | " + " | ".join(SHORT.get(c, c) for c in cols) + " |")
        lines.append("| " + " | ".join(["---"] * (len(cols) + 2)) + " |")
        for row in t.to_dict(orient="records"):
            cells = []
            for c in cols:
                mean, std = row[f"{c}_mean"], row[f"{c}_std"]
                digits = 0 if c == "fit_seconds" else 3
                cells.append("–" if mean != mean else f"{mean:.{digits}f} ± {std:.{digits}f}")
            name = row["method"] + (" *(baseline)*" if row["kind"] == "baseline" else "")
            lines.append(f"| {name} | {row['seeds']} | " + " | ".join(cells) + " |")
        lines.append("")
    loss_runs = runs[runs["kind"] == "loss"]
    if len(loss_runs):
        lines.append("Epochs run (best) per seed: " + "; ".join(
            f"{m} " + ", ".join(f"{int(e)} ({int(b)})" for e, b in zip(
                part["epochs"], part["best_epoch"], strict=True))
            for m, part in loss_runs.groupby("method", sort=False)))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["synth", "nsl-kdd", "table"])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--losses", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--baselines", default="no-embedding,isolation-forest,knn")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    if args.what == "table":
        print(table(args.folder))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from trafficsiam.config import parse_override

    overrides = [parse_override(o) for o in args.overrides]
    out = args.folder or RESULTS / f"compare-{args.what}"
    if args.what == "synth":
        data = RESULTS / "compare-data"
        data.mkdir(parents=True, exist_ok=True)
        train, test = data / "synth-train.parquet", data / "synth-test-novel.parquet"
        synth.write(train, rows=20_000, seed=1)
        synth.write(test, rows=10_000, seed=2, novel=True)
        cfg = build_config({"data": {"ignore": ["id", "timestamp"]}}, overrides)
        losses = args.losses or ",".join(LOSSES)
    else:
        root = datasets_dir()
        if root is None or not (root / "nsl-kdd" / "KDDTrain+.parquet").is_file():
            print("NSL-KDD not found (set TRAFFICSIAM_DATASETS)", file=sys.stderr)
            return 2
        train, test = root / "nsl-kdd" / "KDDTrain+.parquet", root / "nsl-kdd" / "KDDTest+.parquet"
        cfg = build_config({"data": {"label_column": "attack", "good_label": "normal",
                                     "ignore": ["category", "difficulty", "is_attack"]}},
                           overrides)
        losses = args.losses or "lossless-triplet,triplet,contrastive"
    machine = machine_info()
    start = time.perf_counter()
    result = compare(train, test, out, cfg, losses=losses.split(","), seeds=args.seeds,
                     baseline_names=[b for b in args.baselines.split(",") if b])
    (out / "bench.json").write_text(json.dumps({
        "seconds": time.perf_counter() - start, "losses": losses, "seeds": args.seeds,
        "baselines": args.baselines, "overrides": args.overrides, "machine": machine,
        "load_average_at_end": list(os.getloadavg())}, indent=2))
    print(table(result.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
