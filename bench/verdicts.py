"""The verdict on four kinds of traffic (issue 16): the default configuration against
IsolationForest, kNN, a RandomForest and the same decision without the embedding, on
the same splits, over seeds.

    .venv/bin/python bench/verdicts.py                       # all four, 3 seeds
    .venv/bin/python bench/verdicts.py --data sample,5g --seeds 1
    .venv/bin/python bench/verdicts.py --kdd-train KDDTrain+_20Percent.parquet
    .venv/bin/python bench/verdicts.py --recompute   # the derived columns of runs.csv again

* sample: `trafficsiam synth` 20,000 training records (seed 1) -> 20,000 new records
  (seed 2, `--novel`: two error types never seen);
* nsl-kdd: KDDTrain+ -> KDDTest+ (17 attack types only in the test set);
* ton-iot: `trafficsiam backtest`, random split, unseen injection, backdoor,
  ransomware, mitm (the data set README's protocol), identifiers ignored;
* 5g: `trafficsiam backtest` on site b (both files, in time order), `--split time`,
  unseen interface-loss and vcpu-overload.

Each seed fits the model with no tuning flags (labels and ignored columns only). The
table gives, per data set and method, the mean (and range) over seeds of the verdict
metrics, with the model's own held-out measurement (what `fit` printed) beside its
test false alarm; the candidates' stability between seeds; the AUROC of the model's
other ranking, 1 - ts_p_good (`novel_auroc` ranks by ts_anomaly). Results go to
bench/results/verdicts/ (git-ignored): each run's folders, runs.csv and tables.md. Run
with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, over_seeds, save_runs  # noqa: E402

from trafficsiam import synth  # noqa: E402
from trafficsiam.config import build_config  # noqa: E402
from trafficsiam.measure.backtest import backtest  # noqa: E402
from trafficsiam.measure.compare import compare  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
COLUMNS = ("good_false_alarm", "novel_called_good", "known_accuracy", "known_called_good",
           "novel_grouped", "novel_grouping_ari", "novel_auroc", "novel_recall_at_5pct_fpr")
STABILITY = ("ari_between_seeds", "grouped_in_both", "ari_between_seeds_strict",
             "p_good_auroc", "worst_type_grouped", "types_under_80")
# the grouping bar: per unseen type with this many test records
TYPE_RECORDS = 50
BASELINES = ("no-embedding", "isolation-forest", "knn", "random-forest")


# Each data set's label column, good label and columns that are no features (only the
# label flags are set: the default configuration otherwise).
LABELLING = {
    "sample": ("scenario", "good", ["id", "timestamp"]),
    "nsl-kdd": ("attack", "normal", ["category", "is_attack", "difficulty"]),
    "ton-iot": ("type", "normal", ["src_ip", "dst_ip", "src_port", "dst_port", "label"]),
    "5g": ("failure", "normal", []),
}
KDD_TRAIN = "KDDTrain+.parquet"


def config(name: str, extra: Sequence[dict[str, Any]] = ()):  # type: ignore[no-untyped-def]
    """Data set `name`'s configuration, with `extra` config layers on top."""
    label, good, ignore = LABELLING[name]
    return build_config({}, [{"data": {"label_column": label, "good_label": good,
                                       "ignore": ignore, "rare_scenarios": "drop"}}, *extra],
                        source="bench")


def split_files(out: Path, name: str, kdd_train: str = KDD_TRAIN) -> tuple[Path, Path]:
    """(training file, test file) of data set `name` in its run folder `out`: the sample
    data's generated files, backtest's split/ for TON_IoT and 5G, NSL-KDD's own files."""
    if name == "nsl-kdd":
        return DATASETS / "nsl-kdd" / kdd_train, DATASETS / "nsl-kdd" / "KDDTest+.parquet"
    folder = out if name == "sample" else out / "split"
    return folder / "train.parquet", folder / "test.parquet"


def run_sample(out: Path, seeds: int) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    synth.write(out / "train.parquet", rows=20_000, seed=1, novel=False)
    synth.write(out / "test.parquet", rows=20_000, seed=2, novel=True)
    return compare(*split_files(out, "sample"), out, config("sample"),
                   losses=("lossless-triplet",), seeds=seeds, baseline_names=BASELINES,
                   quiet=True, report=False).runs


def run_kdd(out: Path, seeds: int, train: str) -> pd.DataFrame:
    return compare(*split_files(out, "nsl-kdd", train), out, config("nsl-kdd"),
                   losses=("lossless-triplet",), seeds=seeds, baseline_names=BASELINES,
                   quiet=True, report=False).runs


def run_ton(out: Path, seeds: int) -> pd.DataFrame:
    return backtest(DATASETS / "ton-iot" / "train_test_network.parquet", out, config("ton-iot"),
                    unseen=["injection", "backdoor", "ransomware", "mitm"], seeds=seeds,
                    quiet=True, report=False).compared.runs


def run_5g(out: Path, seeds: int) -> pd.DataFrame:
    g = DATASETS / "5gc-failures"
    return backtest([g / "site_b_train.parquet", g / "site_b_test.parquet"], out, config("5g"),
                    unseen=["interface-loss", "vcpu-overload"], split="time", seeds=seeds,
                    quiet=True, report=False).compared.runs


def held_out_alarm(out: Path, runs: pd.DataFrame) -> pd.Series:
    """What fit measured on held-out good records at the configured rate, per model."""
    values = []
    for row in runs.itertuples():
        value = np.nan
        if row.kind == "loss":
            manifest = json.loads((out / "models" / f"{row.method}-seed{row.seed}"
                                   / "manifest.json").read_text())
            cal = manifest["calibration"]
            at = [r for r in cal["held_out_good"] if r["rate"] == cal["false_alarm_rate"]]
            value = at[0]["flagged"] if at else np.nan
        values.append(value)
    return pd.Series(values, index=runs.index)


def between_seeds(out: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Candidate stability between the seeds of each model, the mean over pairs of seeds
    (the same for every run of the model; NaN for baselines):

    * `ari_between_seeds`: ARI of the two seeds' candidates over the novel records both
      put in a candidate (are the same records grouped together?);
    * `grouped_in_both`: the share of the novel records either seed put in a candidate
      that both did (do both seeds group the same records?);
    * `ari_between_seeds_strict`: ARI over the novel records either seed put in a
      candidate, a record in none a group of its own (both questions at once)."""
    from itertools import combinations

    from sklearn.metrics import adjusted_rand_score

    names = ["ari_between_seeds", "grouped_in_both", "ari_between_seeds_strict"]
    values = pd.DataFrame(np.nan, index=runs.index, columns=names)
    for method, part in runs[runs["kind"] == "loss"].groupby("method"):
        frames = {seed: pd.read_parquet(out / "runs" / f"{method}-seed{seed}"
                                        / "records.parquet", columns=["known", "ts_new_type"])
                  for seed in part["seed"]}
        scores = []
        for s1, s2 in combinations(sorted(frames), 2):
            novel = ~frames[s1]["known"].to_numpy(bool)
            ta = frames[s1]["ts_new_type"].to_numpy(object)
            tb = frames[s2]["ts_new_type"].to_numpy(object)
            in_a, in_b = novel & pd.notna(ta), novel & pd.notna(tb)
            either, both = np.flatnonzero(in_a | in_b), np.flatnonzero(in_a & in_b)
            if not len(either):
                continue
            la = [t if pd.notna(t) else f"none-{r}" for t, r in zip(ta[either], either,
                                                                      strict=True)]
            lb = [t if pd.notna(t) else f"none-{r}" for t, r in zip(tb[either], either,
                                                                      strict=True)]
            scores.append((adjusted_rand_score(ta[both], tb[both]) if len(both) else 0.0,
                           len(both) / len(either), adjusted_rand_score(la, lb)))
        if scores:
            values.loc[part.index, names] = np.mean(scores, axis=0)
    return values


def per_type_grouped(out: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Per model run, the issue's per-type grouping bar: over the unseen types with
    `TYPE_RECORDS`+ test records and at least one flagged record (new_error or
    outlier), how many have under 0.8 of their flagged records in a candidate
    (`types_under_80`); and the smallest such share among the types with
    `TYPE_RECORDS`+ flagged records (`worst_type_grouped`: fewer cannot make a candidate
    at the default score.new_type_min_size). NaN for baselines."""
    names = ["worst_type_grouped", "types_under_80"]
    values = pd.DataFrame(np.nan, index=runs.index, columns=names)
    for row in runs[runs["kind"] == "loss"].itertuples():
        records = pd.read_parquet(out / "runs" / f"{row.method}-seed{row.seed}"
                                  / "records.parquet")
        novel = records[~records["known"].to_numpy(bool)]
        label = novel[records.columns[0]].astype(str).to_numpy()
        sizes = pd.Series(label).value_counts()
        flagged = novel["ts_verdict"].isin(["new_error", "outlier"]).to_numpy()
        grouped = pd.Series(novel["ts_new_type"].notna().to_numpy()[flagged])
        by_type = grouped.groupby(label[flagged])
        share, count = by_type.mean(), by_type.size()
        share = share[[sizes[t] >= TYPE_RECORDS for t in share.index]]
        large = share[count[share.index] >= TYPE_RECORDS]
        values.loc[row.Index, names] = [large.min() if len(large) else np.nan,
                                        int((share < 0.8).sum())]
    return values


def p_good_auroc(out: Path, name: str, runs: pd.DataFrame) -> pd.Series:
    """The model's other ranking: AUROC of 1 - ts_p_good, novel against good records
    (novel_auroc ranks by ts_anomaly); NaN for baselines."""
    from sklearn.metrics import roc_auc_score

    from trafficsiam import artifact
    from trafficsiam.model import embed

    label = LABELLING[name][0]
    frame = pd.read_parquet(split_files(out, name)[1])
    values = pd.Series(np.nan, index=runs.index)
    for row in runs[runs["kind"] == "loss"].itertuples():
        model = artifact.load(out / "models" / f"{row.method}-seed{row.seed}")
        x, _ = model.normaliser.transform(frame[list(model.schema.columns)])
        judged = model.scorer().assess(embed(model.model, x), x,
                                       model.config.score.false_alarm_rate)
        y = frame[label].astype(str).to_numpy()
        good, novel = y == model.manifest["good_label"], ~np.isin(y, model.manifest["scenarios"])
        if novel.any() and good.any():
            values[row.Index] = roc_auc_score(novel[good | novel], -judged.p_good[good | novel])
    return values


def derived(out: Path, name: str, runs: pd.DataFrame, rank: bool = True) -> pd.DataFrame:
    """`runs` of data set `name` (its run folder `out`) with the columns computed from
    the stored models and records: the held-out alarm, the stability between seeds, the
    per-type grouping and (with `rank`) 1 - ts_p_good's AUROC."""
    runs["data"] = name
    runs["held_out_alarm"] = held_out_alarm(out, runs)
    runs[list(STABILITY[:3])] = between_seeds(out, runs)
    runs["p_good_auroc"] = p_good_auroc(out, name, runs) if rank else np.nan
    runs[list(STABILITY[4:])] = per_type_grouped(out, runs)
    return runs


def table(runs: pd.DataFrame) -> str:
    lines = ["| data | method | seeds | held-out alarm | "
             + " | ".join((*COLUMNS, *STABILITY)) + " |",
             "|---" * (4 + len(COLUMNS) + len(STABILITY)) + "|"]
    for (data, method), part in runs.groupby(["data", "method"], sort=False):
        cells = [over_seeds(part[col]) for col in ("held_out_alarm", *COLUMNS, *STABILITY)]
        lines.append(f"| {data} | {method} | {len(part)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="sample,5g,ton-iot,nsl-kdd")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kdd-train", default=KDD_TRAIN)
    parser.add_argument("--out", default=str(RESULTS / "verdicts"))
    parser.add_argument("--recompute", action="store_true",
                        help="no fits: recompute the derived columns of --out's runs.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runners = {"sample": lambda o: run_sample(o, args.seeds),
               "5g": lambda o: run_5g(o, args.seeds),
               "ton-iot": lambda o: run_ton(o, args.seeds),
               "nsl-kdd": lambda o: run_kdd(o, args.seeds, args.kdd_train)}
    frames = []
    done = pd.read_csv(out / "runs.csv") if args.recompute else None
    for name in args.data.split(","):
        if name != "sample" and not DATASETS.is_dir():
            print(f"{name}: skipped, {DATASETS} is absent")
            continue
        start = time.perf_counter()
        if done is not None:
            runs = done[done["data"] == name].reset_index(drop=True)
        else:
            runs = runners[name](out / name)
        frames.append(derived(out / name, name, runs))
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        all_runs = pd.concat(frames, ignore_index=True)
        save_runs(out, all_runs, table(all_runs))


if __name__ == "__main__":
    main()
