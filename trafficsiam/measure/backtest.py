"""Backtest: the leave-scenarios-out protocol on a user's own labelled records, "how would
this do on failures it has never seen, on my data?".

    read -> split (the --unseen scenarios all to test; each known scenario split into
    train and test, at random or by time) -> split/train.parquet, split/test.parquet
    -> compare (the model per seed, evaluate, the baselines) -> the baselines' novelty
    at the model's false alarm rate -> backtest.json, backtest.csv

The unseen scenarios stand for failures that appear after the model was fitted: none
of their records is trained on, so the test set measures what a deployed model would
say about them. Known scenarios keep records on both sides (stratified).

`split="random"`: per known scenario, a seeded random `test_share` of its records goes
to test (seed `train.seed`: `--seeds` changes the training, never the split).
`split="time"`: per known scenario, the last `test_share` of its records in time order
(`time_column`, or row order without it) goes to test: for data whose neighbouring
records are not independent (snapshots, bursts), where a random split would put near
copies of test records in training.

Beside compare's outputs, `backtest.json` holds the split and, per seed, the model's
verdict point (good_false_alarm, novel_called_good) against each baseline's share of
novel records it would call good at the same false alarm rate on the test's good
records (the baseline's novelty thresholded at the good records' quantile,
`evaluate.recall_at_fpr`). `backtest.csv` has one row per method and seed.

The baselines run once, inside `compare` (so that runs.csv, comparison.csv and
comparison.html hold them as compare writes them), which keeps each run's per-record
novelty (`CompareResult.novelty`) for the curve here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam import api, read, validate, write
from trafficsiam.config import Config
from trafficsiam.errors import ConfigError, InputError
from trafficsiam.labels import clean_label
from trafficsiam.measure.compare import COMPARISON_JSON, CompareResult, compare
from trafficsiam.measure.evaluate import METRICS, recall_at_fpr, write_json
from trafficsiam.paths import check_outputs, comparison_out, input_roots

log = logging.getLogger("trafficsiam")

SPLITS = ("random", "time")
BACKTEST_BASELINES = ("isolation-forest", "knn", "random-forest")
# A known scenario keeps at least this many training records (a positive pair).
MIN_TRAIN_RECORDS = 2


@dataclass
class Split:
    """Which records go to test, and the counts behind it."""

    is_test: np.ndarray  # bool per record, in input order
    info: dict[str, Any]  # backtest.json's "split" section


@dataclass
class BacktestResult:
    out: Path
    split: dict[str, Any]  # backtest.json's "split" section
    seeds: list[dict[str, Any]]  # backtest.json's "seeds": the verdict points per seed
    table: pd.DataFrame  # backtest.csv: one row per method and seed
    compared: CompareResult  # what compare returned (runs, comparison table)


# --- the split ---------------------------------------------------------------------------


def parse_unseen(value: str | Sequence[str]) -> list[str]:
    """'A,B' or ['A', 'B'] -> ['A', 'B'] (blanks dropped, each name once, in order)."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return list(dict.fromkeys(v.strip() for v in items if v.strip()))


def check_unseen(unseen: list[str], scenarios: Sequence[str], good_label: str,
                 label_column: str) -> None:
    """Every unseen scenario exists and is not good traffic; at least one known failure
    stays for training."""
    present = sorted(str(s) for s in scenarios)
    shown = ", ".join(present[:20]) + (", ..." if len(present) > 20 else "")
    if not unseen:
        raise ConfigError(
            f"backtest: --unseen names no scenario; name the failures to leave out of "
            f"training, e.g. --unseen {next((s for s in present if s != good_label), 'A')} "
            f"(scenarios in '{label_column}': {shown})"
        )
    for name in unseen:
        if name == good_label:
            raise ConfigError(
                f"backtest: --unseen '{name}' is the good-traffic label (--good-label); "
                f"name failure scenarios only (scenarios in '{label_column}': {shown})"
            )
        if name not in present:
            raise InputError(
                f"backtest: --unseen '{name}' is not a scenario in column '{label_column}' "
                f"(scenarios: {shown}); name scenarios as they are spelled in the data"
            )
    if not [s for s in present if s != good_label and s not in unseen]:
        raise ConfigError(
            f"backtest: --unseen leaves no known failure scenario to train on "
            f"(scenarios in '{label_column}': {shown}); keep at least one out of --unseen"
        )


def time_order(records: read.Records, column: str) -> np.ndarray:
    """Row positions sorted by `column` (datetime, numeric, or text of numbers or ISO
    dates; stable, so equal times keep row order). Refuses a missing column, a missing
    value or text that is neither."""
    frame = records.frame
    read.require_column(records.source, list(frame.columns), column, "--time-column",
                        "name the column that holds each record's time")
    values = frame[column]
    records.refuse_rows(values.isna().to_numpy(),
                        f"--time-column '{column}' is empty ({{n}} records without a time); "
                        "fill it or filter those records out")
    if pd.api.types.is_datetime64_any_dtype(values):
        key = pd.to_datetime(values, utc=True).dt.tz_convert(None).to_numpy()
    elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        key = values.to_numpy(dtype=np.float64)
    else:
        text = values.astype(str)
        numbers = pd.to_numeric(text, errors="coerce")
        if not numbers.isna().any():
            key = numbers.to_numpy(dtype=np.float64)
        else:
            stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            bad = stamps.isna().to_numpy()
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"{records.where(first)}: --time-column '{column}' holds {text.iloc[first]!r}, "
                    "neither a number nor an ISO date-time; use a datetime, numeric or "
                    "ISO 8601 text column"
                )
            key = stamps.dt.tz_convert(None).to_numpy()
    return np.argsort(key, kind="stable")


def _labels(records: read.Records, column: str, good_label: str,
            normalise: bool) -> np.ndarray:
    """The label column as fit spells it (`validate.read_labels`): it exists, every record
    has a label, the good label is among them (fit's own checks, before anything is
    split; fit checks the rest on the training records)."""
    read.require_column(records.source, list(records.frame.columns), column, "label column",
                        "name the scenario column with --label-column")
    labels = validate.read_labels(records, column, normalise).to_numpy()
    if good_label not in set(labels):
        shown = ", ".join(sorted(set(labels))[:10])
        raise InputError(
            f"{records.source}: good-traffic label {good_label!r} not found in column "
            f"'{column}' (values: {shown}); name it with --good-label"
        )
    return labels


def make_split(labels: np.ndarray, unseen: Sequence[str], kind: str, test_share: float,
               seed: int, order: np.ndarray | None = None) -> Split:
    """The test mask: every record of an unseen scenario, and per known scenario
    round(test_share x its records) (at least one), drawn at random (`kind` "random",
    seeded) or the latest in `order` (`kind` "time"; row positions in time order, None
    for row order). Refuses a known scenario left with fewer than two training records."""
    y = np.asarray(labels).astype(str)
    unseen_set = set(unseen)
    is_test = np.isin(y, list(unseen_set))
    rank = np.empty(len(y), dtype=np.int64)  # position of each row in time order
    rank[order if order is not None else np.arange(len(y))] = np.arange(len(y))
    rng = np.random.default_rng(seed)
    scenarios: dict[str, dict[str, Any]] = {}
    for name in sorted({str(v) for v in y}):
        rows = np.flatnonzero(y == name)
        if name in unseen_set:
            scenarios[name] = {"train": 0, "test": int(len(rows)), "unseen": True}
            continue
        n_test = max(1, int(np.floor(test_share * len(rows) + 0.5)))
        if len(rows) - n_test < MIN_TRAIN_RECORDS:
            raise InputError(
                f"backtest: known scenario '{name}' has {len(rows)} records, so a test share "
                f"of {test_share:g} leaves {len(rows) - n_test} for training (at least "
                f"{MIN_TRAIN_RECORDS} needed, and one for test); lower --test-share, name it "
                "in --unseen, or filter its records out"
            )
        if kind == "random":
            chosen = rng.choice(rows, n_test, replace=False)
        else:
            chosen = rows[np.argsort(rank[rows], kind="stable")[-n_test:]]
        is_test[chosen] = True
        scenarios[name] = {"train": int(len(rows) - n_test), "test": int(n_test),
                           "unseen": False}
    info = {
        "kind": kind, "test_share": float(test_share), "seed": int(seed),
        "unseen": list(unseen),
        "known": [s for s in scenarios if not scenarios[s]["unseen"]],
        "rows": {"train": int((~is_test).sum()), "test": int(is_test.sum())},
        "scenarios": scenarios,
    }
    return Split(is_test=is_test, info=info)


def without_time_column(cfg: Config, time_column: str | None) -> Config:
    """`cfg` with the --time-column ignored: it orders the split, and as a feature it would
    tell the model which side of the split a record is on (a numeric time was a feature,
    and the test records, all later, looked unlike good traffic). A column the user
    configured as a feature (data.numeric, data.categorical) stays one."""
    data = cfg.data
    if time_column is None or time_column in (*data.ignore, *data.numeric, *data.categorical):
        return cfg
    return cfg.model_copy(update={"data": data.model_copy(
        update={"ignore": (*data.ignore, time_column)})})


def write_split(
    data: str | Path | Sequence[str | Path], out: str | Path, config: Config | None = None,
    *, unseen: str | Sequence[str], split: str = "random", test_share: float = 0.3,
    time_column: str | None = None,
) -> Split:
    """Read `data` with all its columns, split it, write out/split/train.parquet and
    out/split/test.parquet (all columns, rows in input order). The checks run before
    anything is written."""
    cfg = config or Config()
    if split not in SPLITS:
        raise ConfigError(f"backtest: --split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 0.0 < float(test_share) < 1.0:
        raise ConfigError(
            f"backtest: --test-share must be between 0 and 1 (exclusive), got {test_share}; "
            "pass e.g. --test-share 0.3"
        )
    if time_column is not None and split != "time":
        raise ConfigError(
            f"backtest: --time-column {time_column} orders records for --split time; "
            "add --split time or leave --time-column out"
        )
    specs = [data] if isinstance(data, str | Path) else list(data)
    paths = read.resolve_inputs(specs)
    read.common_columns(paths)  # the same columns in every file, before reading them all
    records = read.read_records(paths)
    normalise = cfg.data.label_normalise
    labels = _labels(records, cfg.data.label_column, cfg.data.good_label, normalise)
    names = [str(clean_label(n, normalise) or n) for n in parse_unseen(unseen)]
    check_unseen(names, sorted(set(labels)), cfg.data.good_label, cfg.data.label_column)
    order = time_order(records, time_column) if time_column is not None else None
    result = make_split(labels, names, split, float(test_share), cfg.train.seed, order)
    result.info.update({
        "time_column": time_column, "label_column": cfg.data.label_column,
        "good_label": cfg.data.good_label, "inputs": [str(p) for p in paths],
    })
    folder = write.folder(Path(out) / "split")
    frame = records.frame
    for name, part in (("train.parquet", ~result.is_test), ("test.parquet", result.is_test)):
        rows = frame[part].reset_index(drop=True)
        write.atomic(folder / name, partial(rows.to_parquet, index=False))
    result.info["files"] = {"train": str(folder / "train.parquet"),
                            "test": str(folder / "test.parquet")}
    return result


# --- the backtest ------------------------------------------------------------------------


def backtest(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    config: Config | None = None,
    *,
    unseen: str | Sequence[str],
    split: str = "random",
    test_share: float = 0.3,
    time_column: str | None = None,
    seeds: int = 1,
    quiet: bool = False,
    report: bool = True,
) -> BacktestResult:
    """Split `data` (the `unseen` scenarios all to test), fit and evaluate the model
    (`config`'s loss) for `seeds` seeds beside the isolation-forest, knn and random-forest
    baselines, and write `out`: split/, compare's outputs, backtest.json, backtest.csv."""
    cfg = config or Config()
    if isinstance(seeds, bool) or not isinstance(seeds, int | np.integer) or seeds < 1:
        raise ConfigError(f"backtest: --seeds must be at least 1, got {seeds}; pass --seeds 1")
    out = Path(out)
    specs = [data] if isinstance(data, str | Path) else list(data)
    check_outputs([("--out", out)], [("input", r) for r in input_roots(specs)])
    # the user's files refused before split/ is written; compare clears an earlier run's
    comparison_out(out, [out / "split"], COMPARISON_JSON, clear=False)
    made = write_split(data, out, cfg, unseen=unseen, split=split, test_share=test_share,
                       time_column=time_column)
    cfg = without_time_column(cfg, time_column)
    info = made.info
    if not quiet:
        rows = info["rows"]
        log.info("split %d records (%s, test share %g): train %d, test %d; unseen %s: %d "
                 "test records", rows["train"] + rows["test"], split, test_share,
                 rows["train"], rows["test"], ", ".join(info["unseen"]),
                 sum(info["scenarios"][s]["test"] for s in info["unseen"]))
    train_file, test_file = Path(info["files"]["train"]), Path(info["files"]["test"])
    loss = cfg.loss.name
    compared = compare(train_file, test_file, out, cfg, losses=(loss,), seeds=seeds,
                       baseline_names=BACKTEST_BASELINES, quiet=quiet, report=report)

    runs = compared.runs
    first = int(runs["seed"].iloc[0])
    art = api.load(out / "models" / f"{loss}-seed{first}")
    known = [str(s) for s in art.manifest["scenarios"]]
    good = str(art.manifest["good_label"])
    labels = pd.read_parquet(test_file, columns=[cfg.data.label_column]).iloc[:, 0]
    y = labels.astype(str).to_numpy()
    is_good, is_novel = y == good, ~np.isin(y, known)

    rows_out: list[dict[str, Any]] = []
    per_seed: list[dict[str, Any]] = []
    for seed in dict.fromkeys(int(s) for s in runs["seed"]):
        model = runs[(runs["seed"] == seed) & (runs["kind"] == "loss")].iloc[0]
        fpr = float(model["good_false_alarm"])
        entry: dict[str, Any] = {
            "seed": seed, "model_id": str(model["model_id"]),
            "model": {"method": loss, "good_false_alarm": fpr,
                      "novel_called_good": float(model["novel_called_good"])},
            "baselines": {},
        }
        base_rows = []
        for name in BACKTEST_BASELINES:
            # compare's own run of the baseline, its scores kept: no second fit
            row = runs[(runs["seed"] == seed) & (runs["method"] == name)].iloc[0]
            novelty = compared.novelty[(name, seed)]
            at_fpr = (1.0 - recall_at_fpr(novelty, is_novel, is_good, fpr)
                      if fpr == fpr else float("nan"))
            entry["baselines"][name] = {
                "good_false_alarm": float(row["good_false_alarm"]),
                "novel_called_good": float(row["novel_called_good"]),
                "novel_called_good_at_model_false_alarm": at_fpr,
            }
            base_rows.append(_row(row, at_fpr, fpr, None))
        finite = {k: v["novel_called_good_at_model_false_alarm"]
                  for k, v in entry["baselines"].items()
                  if v["novel_called_good_at_model_false_alarm"] == v[
                      "novel_called_good_at_model_false_alarm"]}
        best = min(finite, key=lambda k: finite[k]) if finite else None
        mine = float(model["novel_called_good"])
        verdict = (bool(mine <= finite[best] + 1e-12) if best is not None and mine == mine
                   else None)
        entry.update({"best_baseline": best,
                      "best_baseline_novel_called_good": finite[best] if best else None,
                      "on_or_above_best_baseline": verdict})
        per_seed.append(entry)
        rows_out.append(_row(model, mine, fpr, verdict))
        rows_out.extend(base_rows)

    table = pd.DataFrame(rows_out)
    table.to_csv(out / "backtest.csv", index=False)
    write_json(out / "backtest.json", {
        "split": info, "loss": loss, "baselines": list(BACKTEST_BASELINES),
        "known_scenarios": known, "novel_scenarios": sorted(set(y) - set(known)),
        "good_label": good, "seeds": per_seed,
        "outputs": {"runs": "runs.csv", "comparison": "comparison.csv",
                    "report": "comparison.html" if report else None,
                    "table": "backtest.csv"},
    })
    if not quiet:
        log.info("backtest written to %s", out)
    return BacktestResult(out=out, split=info, seeds=per_seed, table=table, compared=compared)


def _row(run: pd.Series, at_fpr: float, fpr: float, verdict: bool | None) -> dict[str, Any]:
    """One backtest.csv row: compare's metrics for the run, the model's false alarm rate
    of its seed, the run's novel called good at that rate and, for the model, whether it
    is on or above the best baseline."""
    return {
        "method": run["method"], "kind": run["kind"], "seed": int(run["seed"]),
        **{m: float(run[m]) for m in METRICS},
        "fit_seconds": float(run["fit_seconds"]),
        "model_false_alarm": fpr,
        "novel_called_good_at_model_false_alarm": at_fpr,
        "on_or_above_best_baseline": verdict,
    }
