"""compare: losses x seeds and baselines on sample data; the table, the runs and the page."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from trafficsiam import synth
from trafficsiam.config import build_config
from trafficsiam.errors import ConfigError, OutputError
from trafficsiam.measure.compare import compare, summarise
from trafficsiam.measure.evaluate import METRICS


def test_summarise_mean_and_std_per_method():
    runs = pd.DataFrame({
        "method": ["a", "a", "b"], "kind": ["loss", "loss", "baseline"], "seed": [0, 1, 0],
        **{m: [0.2, 0.4, 0.5] for m in METRICS}, "fit_seconds": [1.0, 3.0, 2.0],
    })
    table = summarise(runs)
    assert list(table["method"]) == ["a", "b"] and list(table["seeds"]) == [2, 1]
    assert table.loc[0, "novel_auroc_mean"] == pytest.approx(0.3)
    assert table.loc[0, "novel_auroc_std"] == pytest.approx(0.1414213562)
    assert table.loc[1, "fit_seconds_std"] == 0.0  # one seed: no spread


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cmp")
    synth.write(folder / "train.parquet", rows=2000, seed=5)
    synth.write(folder / "test.parquet", rows=1500, seed=6, novel=True)
    return folder


@pytest.mark.slow
def test_compare_two_losses_two_seeds(files, tmp_path):
    cfg = build_config({
        "data": {"ignore": ["id", "timestamp"]},
        "train": {"epochs": 2, "steps_per_epoch": 10, "seed": 4},
        "cluster": {"max_points": 1500},
    })
    out = tmp_path / "cmp"
    result = compare(files / "train.parquet", files / "test.parquet", out, cfg,
                     losses=["lossless-triplet", "contrastive"], seeds=2,
                     baseline_names=["knn", "isolation-forest"], quiet=True)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and sorted(set(runs["seed"])) == [4, 5]
    assert list(dict.fromkeys(runs["method"])) == [
        "lossless-triplet", "contrastive", "knn", "isolation-forest"]
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["method"]) == ["lossless-triplet", "contrastive", "knn",
                                     "isolation-forest"]
    for metric in (*METRICS, "fit_seconds"):
        assert {f"{metric}_mean", f"{metric}_std"} <= set(table.columns)
    assert (table["fit_seconds_mean"] > 0).all()
    # everything but the loss and the seed is equal: same data, same config otherwise
    manifests = [json.loads((out / "models" / f"{loss}-seed{s}" / "manifest.json").read_text())
                 for loss in ("lossless-triplet", "contrastive") for s in (4, 5)]
    assert len({m["data"]["fingerprint"] for m in manifests}) == 1
    for m in manifests:
        m["config"]["loss"].pop("name")
        m["config"]["train"].pop("seed")
    assert all(m["config"] == manifests[0]["config"] for m in manifests)
    html = (out / "comparison.html").read_text()
    assert "<script src" not in html and html.count('id="anim-') == 2
    assert result.table.shape[0] == 4
    # a rerun into the same folder replaces the comparison: no model or run of the
    # earlier one (another loss, another seed) stays beside the new ones
    compare(files / "train.parquet", files / "test.parquet", out, cfg,
            losses=["lossless-triplet"], seeds=1, baseline_names=[], quiet=True)
    assert sorted(p.name for p in (out / "models").iterdir()) == ["lossless-triplet-seed4"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["lossless-triplet-seed4"]
    assert len(pd.read_csv(out / "runs.csv")) == 1


def test_compare_refuses_a_folder_that_holds_the_users_files(files, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "comparison.csv").write_text("my own notes\n")
    with pytest.raises(OutputError, match=r"--out .*mine holds 'comparison.csv', which no "
                                          "earlier comparison wrote; choose a new --out"):
        compare(files / "train.parquet", files / "test.parquet", out, losses=["triplet"],
                seeds=1, quiet=True)
    assert (out / "comparison.csv").read_text() == "my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["comparison.csv"]


@pytest.mark.parametrize("kwargs, message", [
    ({"losses": ["lossless-triplet", "arcface"]}, "loss.name 'arcface' is not a known loss"),
    ({"losses": []}, "--losses is empty"),
    ({"losses": ["triplet", "triplet"]}, "names a loss twice"),
    ({"seeds": 0}, "--seeds must be at least 1, got 0"),
    ({"baseline_names": ["svm"]}, "baseline 'svm' is not known"),
])
def test_compare_refuses_bad_arguments_before_training(files, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        compare(files / "train.parquet", files / "test.parquet", tmp_path / "out",
                **{"losses": ["lossless-triplet"], **kwargs})
    assert not (tmp_path / "out").exists()


def test_compare_refuses_test_records_without_labels(files, tmp_path):
    from trafficsiam.errors import InputError

    unlabelled = tmp_path / "t.parquet"
    pd.read_parquet(files / "test.parquet").drop(columns=["scenario"]).to_parquet(unlabelled)
    with pytest.raises(InputError, match="label column 'scenario' not found"):
        compare(files / "train.parquet", unlabelled, tmp_path / "out", losses=["triplet"])
    assert not (tmp_path / "out").exists()
