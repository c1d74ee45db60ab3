"""Shared fixtures: tiny frames with deliberate corner rows, and small synthetic traffic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trafficsiam import synth
from trafficsiam.config import build_config

REPO = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    return Path(os.environ.get("TRAFFICSIAM_DATASETS", REPO.parent / "shared" / "datasets"))


def nslkdd_config(**sections: dict) -> object:
    """Config for NSL-KDD's fine-grained label (its README): `attack` names the scenario,
    `normal` is good traffic, the other labels are never features, and the 20 % subset's
    single-record attacks are dropped; `sections` are merged on top."""
    data = {"label_column": "attack", "good_label": "normal",
            "ignore": ["category", "is_attack", "difficulty"], "rare_scenarios": "drop"}
    return build_config({"data": data, **sections})


@pytest.fixture
def tiny_frame() -> pd.DataFrame:
    """12 rows, 3 scenarios: a NaN, a constant column, a rare class, a heavy tail."""
    return pd.DataFrame({
        "id": [f"r{i}" for i in range(12)],
        "scenario": ["good"] * 6 + ["error_type_1"] * 4 + ["rare"] * 2,
        "bytes": [10, 20, 15, 12, 18, 1e9, 3, 2, 4, 5, 100, 110],
        "latency": [1.0, 2.0, np.nan, 1.5, 1.2, 1.1, 50.0, 60.0, 55.0, 52.0, 5.0, 6.0],
        "const": [7] * 12,
        "protocol": ["tcp", "tcp", "udp", "tcp", "udp", "tcp",
                     "tcp", "icmp", "tcp", "tcp", "udp", "udp"],
    })


@pytest.fixture
def write_parquet(tmp_path: Path):
    def _write(frame: pd.DataFrame, name: str = "data.parquet") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return path

    return _write


@pytest.fixture(scope="session")
def synth_small() -> pd.DataFrame:
    return synth.generate(rows=3000, seed=7)


@pytest.fixture
def fast_config():
    """A config that trains in a couple of seconds on a few thousand rows."""
    return build_config({
        "data": {"ignore": ["id", "timestamp"]},
        "train": {"epochs": 4, "steps_per_epoch": 20, "patience": 10},
        "cluster": {"max_points": 3000},
    })


@pytest.fixture(scope="session")
def fitted(tmp_path_factory, synth_small):
    """A small model fitted once per session: (FitResult, training data path)."""
    from trafficsiam import api

    folder = tmp_path_factory.mktemp("fitted")
    data = folder / "train.parquet"
    synth_small.to_parquet(data, index=False)
    cfg = build_config({
        "data": {"ignore": ["id", "timestamp"]},
        "train": {"epochs": 4, "steps_per_epoch": 25, "patience": 10},
    })
    result = api.fit(data, folder / "model", cfg, quiet=True)
    return result, data


def run_independent(out: Path) -> tuple[dict, str]:
    """A scoring folder's summary.json and new_types.csv without what names the run (its
    id, time and output paths; a new type's `first_seen` is this run's id and its
    `records_by_run` this run's count): what two runs over the same inputs must share."""
    import json

    summary = json.loads((out / "summary.json").read_text())
    run_id = summary.pop("run_id")
    for key in ("seconds", "finished"):
        summary.pop(key)
    for item in summary["inputs"]:
        item.pop("output")
    for item in summary["new_types"]:
        assert item.pop("first_seen") == run_id
        item["records_by_run"] = [n for _, n in item["records_by_run"]]
    return summary, (out / "new_types.csv").read_text().replace(run_id, "<this run>")


# The slowest test files, slowest first (`pytest --durations=0`, summed per file). The
# two workers take whole files (`--dist loadfile`, in collection order with
# `--no-loadscope-reorder`): starting the long ones first lets both finish together
# instead of one running the last long file alone.
SLOWEST_FIRST = ("test_faults", "test_score", "test_pipelines", "test_quality_nslkdd",
                 "test_report_browser", "test_score_quality", "test_losses_family",
                 "test_hostile_input", "test_derive", "test_verdicts", "test_train",
                 "test_dask_engine", "test_history", "test_5g", "test_compare")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
