"""New-type discovery variants on stored models (issue 16's grouping bars), without
refitting: each model of a `bench/verdicts_variant.py` folder (`--models`) scores its data
set's test records once per variant, and the candidates are judged as `bench/verdicts.py`
judges them: unseen records flagged and in a candidate (`novel_grouped`), the smallest
such share over unseen types with 50+ flagged records (`worst_type_grouped`), the
candidates' ARI between seeds over records both seeds grouped (`ari_between_seeds`), the
share grouped by both (`grouped_in_both`), and known records put in candidates.

`--splits` instead prints, per data set, where HDBSCAN's tree over each seed's unexplained
records splits a group in two, as a share of the spacing of scattered records
(`_MERGE_SHARE` merges the parts of splits under it): for splits whose two parts have
the same majority label and for splits whose parts differ.

A variant sets `newtypes` constants (upper case, e.g. `_MERGE_SHARE=1.0`) and score keys
(`new_type_min_samples=5`), `;`-separated; `shipped` is the code as it is:

    OMP_NUM_THREADS=1 .venv/bin/python bench/discovery_variants.py --data nsl-kdd \\
        --models bench/results/variants/auto-a \\
        --variant shipped --variant "merge1:_MERGE_SHARE=1.0"

Needs `bench/verdicts.py`'s run folder (`--runs`) and ../shared/datasets but for the
sample data.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stored import DEFAULT_RUNS, LABELS, test_records  # noqa: E402
from verdicts import TYPE_RECORDS  # noqa: E402

import trafficsiam  # noqa: E402
from trafficsiam import newtypes  # noqa: E402


def parse(variant: str) -> tuple[str, dict[str, float], dict[str, object]]:
    """`name:KEY=V;key=v` -> (name, newtypes constants, score keys)."""
    name, _, body = variant.partition(":")
    constants, keys = {}, {}
    for pair in filter(None, body.split(";")):
        key, _, value = pair.partition("=")
        (constants if key.isupper() or key.startswith("_") else keys)[key] = yaml.safe_load(value)
    for key in constants:
        if not hasattr(newtypes, key):
            raise SystemExit(f"newtypes has no {key}")
    return name, constants, keys


def scored(model: trafficsiam.Model, frame: pd.DataFrame, constants: dict[str, float],
           keys: dict[str, object]) -> pd.DataFrame:
    saved = {k: getattr(newtypes, k) for k in constants}
    try:
        for k, v in constants.items():
            setattr(newtypes, k, v)
        return model.score(frame, **keys)[["ts_verdict", "ts_new_type"]]
    finally:
        for k, v in saved.items():
            setattr(newtypes, k, v)


def judged(results: dict[int, pd.DataFrame], label: np.ndarray, novel: np.ndarray
           ) -> dict[str, float]:
    per_seed = []
    for r in results.values():
        grouped = r["ts_new_type"].notna().to_numpy()
        flagged = r["ts_verdict"].isin(["new_error", "outlier"]).to_numpy()
        by_type = pd.Series(grouped[flagged & novel]).groupby(label[flagged & novel])
        share, count = by_type.mean(), by_type.size()
        large = share[count >= TYPE_RECORDS]
        per_seed.append({
            "candidates": r["ts_new_type"].nunique(),
            "novel_grouped": (grouped & novel).sum() / max((flagged & novel).sum(), 1),
            "worst_type_grouped": large.min() if len(large) else np.nan,
            "known_in_candidates": int((grouped & ~novel).sum()),
        })
    out = pd.DataFrame(per_seed).mean().to_dict()
    out["worst_type_min"] = min(p["worst_type_grouped"] for p in per_seed)
    pairs = []
    for a, b in combinations(sorted(results), 2):
        ta = results[a]["ts_new_type"].to_numpy(object)
        tb = results[b]["ts_new_type"].to_numpy(object)
        in_a, in_b = novel & pd.notna(ta), novel & pd.notna(tb)
        both = in_a & in_b
        pairs.append((adjusted_rand_score(ta[both], tb[both]) if both.any() else 0.0,
                      both.sum() / max((in_a | in_b).sum(), 1)))
    out["ari_between_seeds"], out["grouped_in_both"] = np.mean(pairs, axis=0)
    return out


def splits(model: trafficsiam.Model, frame: pd.DataFrame, label: np.ndarray) -> pd.DataFrame:
    """Each binary split of HDBSCAN's condensed tree over the unexplained records of
    `frame` (as `newtypes.discover` clusters them, without the merging): its distance over
    the scattered records' spacing, and whether its two parts share a majority label."""
    import hdbscan

    scored_ = model.score(frame)
    u = np.flatnonzero(scored_["ts_verdict"].isin(["new_error", "outlier"]).to_numpy())
    cfg = model.artifact.config.score
    if len(u) > cfg.max_new_points:  # the sample's size; a fixed random one here
        u = np.sort(np.random.default_rng(0).choice(u, cfg.max_new_points, replace=False))
    points = model.embed(frame.iloc[u]).astype(np.float64)
    min_size = max(cfg.new_type_min_size, int(np.ceil(newtypes._MIN_SHARE * len(u))))
    min_samples = min(cfg.new_type_min_samples, len(u) - 1)
    spacing = newtypes._scatter_distance(points, min_samples)
    tree = hdbscan.HDBSCAN(min_cluster_size=min_size, min_samples=min_samples,
                           approx_min_span_tree=False).fit(points).condensed_tree_._raw_tree
    n = len(points)
    below: dict[int, list] = {}
    for rec in tree:
        below.setdefault(int(rec["parent"]), []).append(rec)

    def majority(node: int) -> str:
        members, stack = [], [node]
        while stack:
            for rec in below.get(stack.pop(), []):
                (members.append if rec["child"] < n else stack.append)(int(rec["child"]))
        return str(pd.Series(label[u[members]]).mode().iloc[0])

    rows = []
    for recs in below.values():
        parts = [r for r in recs if r["child"] >= n]
        if len(parts) == 2:
            rows.append({"share": 1.0 / float(parts[0]["lambda_val"]) / spacing,
                         "same": majority(int(parts[0]["child"]))
                         == majority(int(parts[1]["child"]))})
    return pd.DataFrame(rows, columns=["share", "same"])


def split_lines(name: str, models: dict[int, trafficsiam.Model], frame: pd.DataFrame,
                label: np.ndarray) -> None:
    found = pd.concat([splits(m, frame, label) for m in models.values()], ignore_index=True)
    for same, part in found.groupby("same"):
        q = np.quantile(part["share"], [0, 0.1, 0.5, 0.9, 1])
        print(f"{name}: {'same' if same else 'different'} majority, {len(part)} splits, "
              f"distance / spacing min {q[0]:.3f}, 10 % {q[1]:.3f}, median {q[2]:.3f}, "
              f"90 % {q[3]:.3f}, max {q[4]:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="sample,5g,ton-iot,nsl-kdd")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    parser.add_argument("--models", type=Path, required=True,
                        help="a bench/verdicts_variant.py folder (its <data>/models)")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--splits", action="store_true",
                        help="print the tree's split distances instead of judging variants")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    variants = [parse(v) for v in (args.variant or ["shipped"])]
    rows = []
    for name in args.data.split(","):
        test = test_records(args.runs, name)
        models = {s: trafficsiam.load(args.models / name / "models" / f"lossless-triplet-seed{s}")
                  for s in range(args.seeds)}
        known = [str(s) for s in models[0].manifest["scenarios"]]
        label = test[LABELS[name]].astype(str).to_numpy()
        novel = ~np.isin(label, known)
        if args.splits:
            split_lines(name, models, test, label)
            continue
        for variant, constants, keys in variants:
            start = time.perf_counter()
            results = {s: scored(m, test, constants, keys) for s, m in models.items()}
            row = {"data": name, "variant": variant,
                   **{k: round(float(v), 3) for k, v in judged(results, label, novel).items()},
                   "s": round(time.perf_counter() - start)}
            rows.append(row)
            print(row, flush=True)
    if rows:
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
