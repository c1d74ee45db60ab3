"""New-type discovery against the decision's own false alarms, on `bench/verdicts.py`'s
fitted models (issue 16): the candidates with and without the rule that a group must
hold clearly more of the run's records than the fit's held-out records put there as
false alarms (`newtypes._FALSE_ALARM_MARGIN`), on the test records of each data set and
on clean batches (only known scenarios, where any candidate is a false alert).

For each data set and seed, the stored model scores the test records twice (the
rule on, and off by an empty background), then a clean batch: the sample data's
`synth.generate(n, seed=32)` without unseen types; for the real data sets, the test
records of known scenarios only. Per run: candidates, the share of flagged unseen
records in a candidate (`novel_grouped`), the known records in candidates.

    OMP_NUM_THREADS=1 .venv/bin/python bench/discovery_background.py --seeds 3

Needs the run folder of `bench/verdicts.py` (`--runs`, default bench/results/verdicts-0.85)
and, but for the sample data, ../shared/datasets.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stored import LABELS, arguments, test_records  # noqa: E402

from trafficsiam import api, synth  # noqa: E402
from trafficsiam.newtypes import Background  # noqa: E402
from trafficsiam.scoring import batch as scoring_batch  # noqa: E402


def scored(art: api.Artifact, frame: pd.DataFrame, work: Path, rule: bool) -> pd.DataFrame:
    """`frame` scored by `art`, with or without the false-alarm background."""
    path = work / "input.parquet"
    frame.to_parquet(path, index=False)
    out = work / ("on" if rule else "off")
    original = scoring_batch.Scoring.background
    try:
        if not rule:
            empty = Background(np.zeros((0, len(art.embedding_columns))), np.zeros(0, np.int64),
                               np.zeros(0, np.int64))
            scoring_batch.Scoring.background = property(lambda self: empty)  # type: ignore[assignment]
        api.score(art, path, out, quiet=True, report=False, rescore=True)
    finally:
        scoring_batch.Scoring.background = original  # type: ignore[method-assign]
    result = pd.read_parquet(out / "input.parquet")
    shutil.rmtree(out)
    return result


def facts(result: pd.DataFrame, label: str, known: list[str]) -> dict[str, object]:
    y = result[label].astype(str).to_numpy()
    novel = ~np.isin(y, known)
    grouped = result["ts_new_type"].notna().to_numpy()
    flagged = result["ts_verdict"].isin(["new_error", "outlier"]).to_numpy()
    return {"candidates": int(result["ts_new_type"].nunique()),
            "novel_grouped": (round(float((grouped & novel).sum() / (flagged & novel).sum()), 3)
                              if (flagged & novel).any() else None),
            "known_in_candidates": int((grouped & ~novel).sum()),
            "records": len(result)}


def main() -> None:
    args = arguments(__doc__)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for name in args.data.split(","):
        test = test_records(args.runs, name)
        label = LABELS[name]
        for seed in range(args.seeds):
            art = api.load(args.runs / name / "models" / f"lossless-triplet-seed{seed}")
            known = [str(s) for s in art.manifest["scenarios"]]
            if name == "sample":
                clean = synth.generate(200_000, seed=32)
            else:
                clean = test[test[label].astype(str).isin(known)]
            with tempfile.TemporaryDirectory() as tmp:
                for batch, frame in (("test", test), ("clean", clean)):
                    for rule in (False, True):
                        result = scored(art, frame, Path(tmp), rule)
                        row = {"data": name, "seed": seed, "batch": batch,
                               "rule": "on" if rule else "off", **facts(result, label, known)}
                        rows.append(row)
                        print(row, flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
