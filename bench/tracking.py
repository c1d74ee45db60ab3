"""New types tracked across runs (issue 19, item 2): does a failure that comes back keep
its candidate id, and does another failure get its own? The rule of `newtypes.track` in
the embedding alone against the embedding and the model's inputs together.

    OMP_NUM_THREADS=1 .venv/bin/python bench/tracking.py                 # sample, 5g, ton-iot
    OMP_NUM_THREADS=1 .venv/bin/python bench/tracking.py --data sample

Per data set, one model is fitted (default config) without two failure types U1 and U2,
then four runs are scored into one folder, each with its own good records:

    run 1: U1 (a third of its records)      run 2: U1 (another third)
    run 3: U2 (half)                         run 4: U1 (the last third) and U2 (the rest)

A type's candidate in a run is the one holding most of its records that are in a
candidate. `kept` counts the returns that keep the id the type had when first seen (U1
in runs 2 and 4, U2 in run 4: 3 checks); `apart` the runs where U1 and U2 do not share
an id (runs 3 and 4: 2 checks). Results: bench/results/tracking/ (git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, datasets_dir  # noqa: E402

from trafficsiam import api, newtypes, synth  # noqa: E402
from trafficsiam.config import build_config  # noqa: E402

RULES = {"embedding": ("embedding",), "embedding+inputs": ("embedding", "inputs")}


def _config(label: str, good: str, ignore: list[str]):  # type: ignore[no-untyped-def]
    return build_config({}, [{"data": {"label_column": label, "good_label": good,
                                       "ignore": ignore, "rare_scenarios": "drop"}}],
                        source="bench")


def data_sets(root: Path | None) -> dict[str, tuple]:
    """name -> (train frame, test frame, label, good, U1, U2, ignored columns)."""
    sets: dict[str, tuple] = {}
    train = synth.generate(rows=20_000, seed=1)
    test = synth.generate(rows=20_000, seed=2, novel=True)
    sets["sample"] = (train, test, "scenario", "good", "error_type_3", "error_type_4",
                      ["id", "timestamp"])
    if root is not None:
        g = root / "5gc-failures"
        frame = pd.concat([pd.read_parquet(g / "site_b_train.parquet"),
                           pd.read_parquet(g / "site_b_test.parquet")], ignore_index=True)
        half = len(frame) // 2  # in time order: the first half trains
        sets["5g"] = (frame.iloc[:half], frame.iloc[half:], "failure", "normal",
                      "vcpu-overload", "interface-loss", [])
        ton = pd.read_parquet(root / "ton-iot" / "train_test_network.parquet")
        pick = np.random.default_rng(0).random(len(ton)) < 0.5
        sets["ton-iot"] = (ton[pick], ton[~pick], "type", "normal", "backdoor", "injection",
                           ["src_ip", "dst_ip", "src_port", "dst_port", "label"])
    return sets


def runs_of(test: pd.DataFrame, label: str, good: str, u1: str, u2: str) -> list[pd.DataFrame]:
    rng = np.random.default_rng(3)
    goods = np.array_split(rng.permutation(np.flatnonzero(test[label] == good)), 4)
    one = np.array_split(rng.permutation(np.flatnonzero(test[label] == u1)), 3)
    two = np.array_split(rng.permutation(np.flatnonzero(test[label] == u2)), 2)
    parts = [[goods[0], one[0]], [goods[1], one[1]], [goods[2], two[0]],
             [goods[3], one[2], two[1]]]
    return [test.iloc[np.concatenate(p)].reset_index(drop=True) for p in parts]


def candidate(scored: pd.DataFrame, label: str, kind: str) -> str | None:
    names = scored.loc[scored[label] == kind, "ts_new_type"].dropna()
    return None if names.empty else str(names.value_counts().index[0])


def measure(name: str, spec: tuple, out: Path) -> list[dict]:
    train, test, label, good, u1, u2, ignore = spec
    cfg = _config(label, good, ignore)
    model = out / name / "model"
    if not (model / "manifest.json").is_file():
        api.fit(train[~train[label].isin([u1, u2])].reset_index(drop=True), model, cfg,
                force=True, quiet=True, report=False)
    batches = runs_of(test, label, good, u1, u2)
    rows = []
    for rule, spaces in RULES.items():
        newtypes.TRACK_SPACES = spaces
        folder = out / name / rule
        folder.mkdir(parents=True, exist_ok=True)
        seen: list[dict[str, str | None]] = []
        for i, batch in enumerate(batches):
            path = folder / f"run{i + 1}.parquet"
            batch.to_parquet(path, index=False)
            result = api.score(model, path, folder / "scored", quiet=True, report=False)
            scored = pd.read_parquet(result.outputs[0][1], columns=[label, "ts_new_type"])
            seen.append({u1: candidate(scored, label, u1), u2: candidate(scored, label, u2),
                         "candidates": len(result.new_types)})
        first = {u1: seen[0][u1], u2: seen[2][u2]}
        checks = [(u1, 1), (u1, 3), (u2, 3)]
        kept = sum(first[u] is not None and seen[r][u] == first[u] for u, r in checks)
        apart = sum(seen[r][u1] != seen[r][u2] or seen[r][u1] is None for r in (2, 3)
                    if seen[r][u2] is not None)
        rows.append({"data": name, "rule": rule, "kept_of_3": kept, "apart_of_2": apart,
                     "ids": " | ".join(f"{s[u1]},{s[u2]} ({s['candidates']})" for s in seen)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample,5g,ton-iot")
    args = parser.parse_args()
    out = RESULTS / "tracking"
    sets = data_sets(datasets_dir())
    rows = []
    for name in args.data.split(","):
        if name not in sets:
            print(f"{name}: data set not found, skipped", file=sys.stderr)
            continue
        rows += measure(name, sets[name], out)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "tracking.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
