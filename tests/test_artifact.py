import json
import shutil

import numpy as np
import pandas as pd
import pytest

from trafficsiam import artifact
from trafficsiam.calibrate import LEGACY_VOTE_NEIGHBOURS, VOTE_NEIGHBOURS
from trafficsiam.errors import ArtifactError, OutputError


@pytest.fixture
def model_copy(fitted, tmp_path):
    result, _ = fitted
    dest = tmp_path / "model"
    shutil.copytree(result.path, dest)
    return dest


def test_folder_holds_exactly_the_documented_files(fitted):
    result, _ = fitted
    assert sorted(p.name for p in result.path.iterdir()) == sorted([
        "manifest.json", "weights.safetensors", "reference.parquet", "holdout.parquet",
        "inputs.safetensors", "assign.safetensors", "clusters.csv", "history.csv",
        "features_by_cluster.csv", "examples.csv", "report.html",
    ])


def test_no_pickle_anywhere(fitted):
    result, _ = fitted
    for path in result.path.iterdir():
        head = path.read_bytes()[:2]
        # pickle protocol 2+ starts with 0x80; torch.save zips hold data.pkl
        assert head[:1] != b"\x80", path
        assert b"data.pkl" not in path.read_bytes(), path


def test_manifest_is_readable_and_complete(fitted):
    result, _ = fitted
    m = json.loads((result.path / "manifest.json").read_text())
    assert m["format"] == "trafficsiam-model" and m["format_version"] == artifact.FORMAT_VERSION
    assert {"torch", "hdbscan", "numpy", "python"} <= set(m["versions"])
    assert m["config"]["data"]["ignore"] == ["id", "timestamp"]
    assert m["schema"]["categorical"] == ["protocol", "service", "tcp_state"]
    assert len(m["normaliser"]["feature_names"]) == m["model"]["in_features"]
    assert len(m["training"]["history"]) == m["training"]["epochs_run"] == 4
    assert len(m["data"]["fingerprint"]) == 64
    assert set(m["files"]) == {"weights.safetensors", "reference.parquet", "holdout.parquet",
                               "inputs.safetensors", "assign.safetensors",
                               "clusters.csv", "history.csv", "features_by_cluster.csv",
                               "examples.csv", "report.html"}
    assert m["model_id"] == artifact.content_id(m["files"])


def test_clusters_csv_has_one_row_per_cluster_plus_noise(fitted):
    result, _ = fitted
    table = pd.read_csv(result.path / "clusters.csv", keep_default_na=False)
    assert list(table.columns) == ["cluster", "name", "scenario", "is_good", "size", "share",
                                   "purity", "mean_strength", "scenario_noise_share", "mix"]
    assert table["size"].sum() == json.loads(
        (result.path / "manifest.json").read_text())["clusters"]["points"]


def test_load_round_trip_gives_the_same_embeddings(fitted):
    result, data = fitted
    model = artifact.load(result.path)
    frame = pd.read_parquet(data)
    rows = model.reference["row"].to_numpy()[:200]
    emb = model.embed(frame.iloc[rows])
    np.testing.assert_allclose(emb, model.reference[model.embedding_columns].to_numpy()[:200],
                               atol=1e-6)
    # the clusterer comes back from the stored embeddings with the stored labels
    np.testing.assert_array_equal(model.clusterer.labels_, model.reference["cluster"])


def test_changed_file_is_refused(model_copy):
    with (model_copy / "clusters.csv").open("a") as fh:
        fh.write("99,evil,good,True,1,0,1,1,0,{}\n")
    with pytest.raises(ArtifactError) as err:
        artifact.load(model_copy)
    assert str(err.value) == (
        f"{model_copy / 'clusters.csv'}: SHA-256 does not match the manifest (changed after "
        "fit); restore the original file or refit the model"
    )


def test_unlisted_file_is_refused(model_copy):
    (model_copy / "model.pkl").write_bytes(b"\x80\x04evil")
    with pytest.raises(ArtifactError, match=r"model.pkl: not listed in the manifest"):
        artifact.load(model_copy)


def test_manifest_path_outside_folder_is_refused(model_copy):
    m = json.loads((model_copy / "manifest.json").read_text())
    m["files"]["../secret"] = "0" * 64
    (model_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=r"lists file '../secret' outside the model folder"):
        artifact.load(model_copy)


def test_newer_format_version_is_refused(model_copy):
    m = json.loads((model_copy / "manifest.json").read_text())
    m["format_version"] = artifact.FORMAT_VERSION + 1
    (model_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError,
                       match=rf"format version {artifact.FORMAT_VERSION + 1} is not supported"):
        artifact.load(model_copy)


@pytest.mark.parametrize("old", [1, 2, 3, 4])
def test_models_before_the_calibrated_decision_are_refused_with_a_refit_hint(model_copy, old):
    """Formats 1-4 hold per-cluster thresholds, not the decision's calibration: one line
    that says why and the way out, never verdicts of another meaning."""
    m = json.loads((model_copy / "manifest.json").read_text())
    m["format_version"] = old
    (model_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=rf"format version {old} was calibrated with "
                       r"per-cluster novelty thresholds.*refit the model") as err:
        artifact.load(model_copy)
    assert "\n" not in str(err.value)


def test_models_saved_before_the_vote_count_was_stored_vote_as_they_were_calibrated(
        model_copy):
    """A model folder without calibration.vote_neighbours was calibrated with the vote of
    10 neighbours and is read that way; a new one stores its count."""
    m = json.loads((model_copy / "manifest.json").read_text())
    assert m["calibration"]["vote_neighbours"] == VOTE_NEIGHBOURS
    fresh = artifact.load(model_copy).scorer()
    del m["calibration"]["vote_neighbours"]
    (model_copy / "manifest.json").write_text(json.dumps(m))
    model = artifact.load(model_copy)
    old = model.scorer()
    assert (fresh.vote_neighbours, old.vote_neighbours) == (VOTE_NEIGHBOURS,
                                                            LEGACY_VOTE_NEIGHBOURS)
    emb = model.holdout[model.embedding_columns].to_numpy(np.float64)[:50]
    assert old.neighbours(emb)[0].shape[1] == LEGACY_VOTE_NEIGHBOURS
    assert fresh.neighbours(emb)[0].shape[1] == max(VOTE_NEIGHBOURS, old.assigner.k_short)


def test_the_calibration_at_load_is_the_one_fit_measured(fitted):
    """The decision is calibrated again at load from the stored held-out records: the
    same anomaly unit and the same held-out false alarms as fit stored."""
    result, _ = fitted
    model = artifact.load(result.path)
    scorer = model.scorer()
    cal = result.manifest["calibration"]
    assert scorer.anomaly_scale == cal["anomaly_scale"]
    emb = model.holdout[model.embedding_columns].to_numpy(np.float64)
    codes = model.codes_of(model.holdout["scenario"])
    rates = [r["rate"] for r in cal["held_out_good"]]
    assert scorer.held_out_rates(emb, model.inputs["holdout"], codes, rates) == \
        cal["held_out_good"]


def test_empty_folder_is_not_a_model(tmp_path):
    with pytest.raises(ArtifactError, match=r"manifest.json: missing, so .* is not a trafficsiam"):
        artifact.load(tmp_path)


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    with pytest.raises(OutputError, match="already exists; choose another --out or pass --force"):
        artifact.write_atomic_dir(out, lambda folder: None)


def test_interrupted_write_leaves_nothing_behind(tmp_path):
    out = tmp_path / "m"

    def write(folder):
        (folder / "weights.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        artifact.write_atomic_dir(out, write)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_replace_keeps_the_old_model(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    old = '{"format": "trafficsiam-model", "note": "old"}'  # --force replaces only a model
    (out / "manifest.json").write_text(old)

    def write(folder):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        artifact.write_atomic_dir(out, write, force=True)
    assert (out / "manifest.json").read_text() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_stored_assigner_equals_one_rebuilt_from_the_refitted_clusterer(fitted):
    import numpy as np

    from trafficsiam.assign import Assigner

    model = artifact.load(fitted[0].path)
    stored = model.scorer().assigner
    rebuilt = Assigner.from_clusterer(model.clusterer)
    rng = np.random.default_rng(0)
    points = np.vstack([stored.raw_data, rng.uniform(0, 1, (2000, stored.n_features))])
    for a, b in zip(stored.predict(points), rebuilt.predict(points), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(stored.core_distances, rebuilt.core_distances)
