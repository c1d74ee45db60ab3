"""The issue's small batch on real traffic: 2,700 good records and 300 of one unseen type
scored as one batch by the models `bench/verdicts.py` fitted (its run folders), per
unseen type and seed: how the unseen records are judged, which candidates form, and how
many good records are flagged.

    .venv/bin/python bench/verdicts.py --data 5g,ton-iot       # the models, first
    .venv/bin/python bench/small_batch.py                      # then the batches
    .venv/bin/python bench/small_batch.py --verdicts bench/results/verdicts-0.85

Records are drawn from each data set's test split (`backtest`'s split/test.parquet:
never seen at fit), good and unseen without replacement, with fixed seeds, through the
library API (`Model.score` on one DataFrame, what `trafficsiam score` does for one
file). Unseen types with fewer than 300 test records are left out. Results go to
bench/results/small_batch/ (runs.csv, tables.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, save_runs  # noqa: E402

from trafficsiam.library import load  # noqa: E402

GOOD, NOVEL = 2_700, 300
# (data set, label column, good label, unseen types: the data set README's protocol)
CASES = (("5g", "failure", "normal", ("vcpu-overload", "interface-loss")),
         ("ton-iot", "type", "normal", ("backdoor", "injection", "ransomware", "mitm")))


def batch_of(test: pd.DataFrame, label: str, good: str, unseen: str) -> pd.DataFrame:
    """GOOD good and NOVEL unseen records in a shuffled order."""
    parts = [test[test[label] == good].sample(GOOD, random_state=1),
             test[test[label] == unseen].sample(NOVEL, random_state=1)]
    return pd.concat(parts).sample(frac=1, random_state=2).reset_index(drop=True)


def run(verdicts: Path, models: Path) -> pd.DataFrame:
    rows = []
    for name, label, good, types in CASES:
        folder = verdicts / name
        if not (folder / "split" / "test.parquet").is_file():
            print(f"{name}: skipped, no run folders in {folder} (run bench/verdicts.py)")
            continue
        test = pd.read_parquet(folder / "split" / "test.parquet")
        for model_dir in sorted((models / name / "models").glob("lossless-triplet-seed*")):
            model = load(model_dir)
            for unseen in types:
                if int((test[label] == unseen).sum()) < NOVEL:
                    continue
                batch = batch_of(test, label, good, unseen)
                scored = model.score(batch)
                verdict = scored["ts_verdict"].astype(str)
                novel = (batch[label] == unseen).to_numpy()
                shares = verdict[novel].value_counts(normalize=True)
                candidates = scored["ts_new_type"].dropna()
                rows.append({
                    "data": name, "seed": model_dir.name.rsplit("seed", 1)[1],
                    "unseen": unseen,
                    **{f"novel_{v}": float(shares.get(v, 0.0))
                       for v in ("good", "known_error", "new_error", "outlier")},
                    "candidates": int(candidates.nunique()),
                    "largest_candidate_novel": float(
                        (scored["ts_new_type"][novel] == candidates.mode().iloc[0]).mean()
                        if len(candidates) else 0.0),
                    "good_flagged": float((verdict[~novel] != "good").mean()),
                })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verdicts", default=str(RESULTS / "verdicts"),
                        help="bench/verdicts.py's output folder (its models and splits)")
    parser.add_argument("--models", default=None,
                        help="score with the models of this folder instead (a "
                             "bench/verdicts_variant.py tag's folder), on --verdicts' splits")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    runs = run(Path(args.verdicts), Path(args.models or args.verdicts))
    out = RESULTS / "small_batch"
    out.mkdir(parents=True, exist_ok=True)
    save_runs(out, runs, markdown_table(runs.to_dict("records")))


if __name__ == "__main__":
    main()
