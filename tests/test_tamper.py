"""A model folder is a file anyone could hand over: loading it never runs code from it,
every file is hashed and verified, and no path leaves the folder."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trafficsiam import artifact
from trafficsiam.errors import ArtifactError

PACKAGE = Path(artifact.__file__).resolve().parent


@pytest.fixture
def model_copy(fitted, tmp_path) -> Path:
    dest = tmp_path / "model"
    shutil.copytree(fitted[0].path, dest)
    return dest


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, m: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(m))


class _Payload:
    """Unpickling this creates the file `marker`: proof that code from the folder ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_package_never_uses_pickle_based_loaders():
    pattern = re.compile(r"\b(torch\.load|pickle\.loads?|joblib\.load|np\.load|numpy\.load|"
                         r"read_pickle|allow_pickle|cloudpickle|dill)\b")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


def test_loading_and_embedding_call_no_unpickler(fitted, monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle loader was called while loading a model")

    for owner, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                        (torch, "load"), (np, "load"), (pd, "read_pickle")]:
        monkeypatch.setattr(owner, name, refuse)
    model = artifact.load(fitted[0].path)
    frame = pd.read_parquet(fitted[1]).head(50)
    assert np.isfinite(model.embed(frame)).all()
    assert model.scorer() is not None


def test_a_pickle_dropped_in_the_folder_is_refused_and_never_run(model_copy, tmp_path):
    marker = tmp_path / "code-ran"
    (model_copy / "model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ArtifactError) as err:
        artifact.load(model_copy)
    assert str(err.value) == (
        f"{model_copy / 'model.pkl'}: not listed in the manifest; a model folder holds only "
        "its own files, so remove it (and check where it came from)"
    )
    assert not marker.exists()


def test_weights_replaced_by_a_pickle_are_refused_by_their_hash(model_copy, tmp_path):
    marker = tmp_path / "code-ran"
    (model_copy / "weights.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ArtifactError, match=r"weights\.safetensors: SHA-256 does not match"):
        artifact.load(model_copy)
    assert not marker.exists()


def test_a_pickle_with_a_matching_hash_still_cannot_run(model_copy, tmp_path):
    """Even with the manifest rewritten to match, safetensors reads tensors, never code."""
    marker = tmp_path / "code-ran"
    weights = model_copy / "weights.safetensors"
    weights.write_bytes(pickle.dumps(_Payload(marker)))
    m = _manifest(model_copy)
    m["files"]["weights.safetensors"] = artifact.sha256_file(weights)
    m["model_id"] = artifact.content_id(m["files"])  # a careful forger rewrites the id too
    _write_manifest(model_copy, m)
    with pytest.raises(ArtifactError, match=r"manifest\.json: damaged or edited by hand "
                                            r"\(SafetensorError: "):
        artifact.load(model_copy)
    assert not marker.exists()


def test_every_file_is_hashed_in_the_manifest(fitted):
    folder = fitted[0].path
    m = _manifest(folder)
    on_disk = {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    for name, digest in m["files"].items():
        assert artifact.sha256_file(folder / name) == digest


@pytest.mark.parametrize("name", ["weights.safetensors", "reference.parquet", "holdout.parquet",
                                  "inputs.safetensors", "assign.safetensors", "clusters.csv",
                                  "history.csv"])
def test_one_flipped_byte_in_any_file_is_refused(model_copy, name):
    path = model_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        artifact.load(model_copy)
    assert str(err.value) == (f"{path}: SHA-256 does not match the manifest (changed after "
                              "fit); restore the original file or refit the model")


def test_a_listed_file_that_is_missing_is_refused(model_copy):
    (model_copy / "history.csv").unlink()
    with pytest.raises(ArtifactError) as err:
        artifact.load(model_copy)
    assert str(err.value) == (f"{model_copy / 'history.csv'}: listed in the manifest but "
                              "missing; restore or refit")


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "sub/weights.safetensors",
                                  "..", "a\\..\\b"])
def test_manifest_paths_never_leave_the_folder(model_copy, name):
    m = _manifest(model_copy)
    m["files"][name] = "0" * 64
    _write_manifest(model_copy, m)
    with pytest.raises(ArtifactError) as err:
        artifact.load(model_copy)
    assert str(err.value) == (
        f"{model_copy / 'manifest.json'}: lists file {name!r} outside the model folder; the "
        "model folder is damaged or tampered with, refit or restore it"
    )


def test_a_listed_file_that_is_a_symlink_outside_is_refused(model_copy, tmp_path):
    """Same content, so the hash matches: the link itself is refused."""
    outside = tmp_path / "elsewhere.csv"
    shutil.copy(model_copy / "clusters.csv", outside)
    (model_copy / "clusters.csv").unlink()
    os.symlink(outside, model_copy / "clusters.csv")
    with pytest.raises(ArtifactError) as err:
        artifact.load(model_copy)
    assert str(err.value) == (
        f"{model_copy / 'clusters.csv'}: is a symbolic link; a model folder holds its own "
        "files, not links, so copy the real file in its place or refit the model"
    )


def test_a_manifest_that_is_a_symlink_is_refused(model_copy, tmp_path):
    outside = tmp_path / "manifest-elsewhere.json"
    shutil.move(model_copy / "manifest.json", outside)
    os.symlink(outside, model_copy / "manifest.json")
    with pytest.raises(ArtifactError, match=r"manifest\.json: is a symbolic link"):
        artifact.load(model_copy)


def test_an_unlisted_symlink_or_folder_is_refused(model_copy, tmp_path):
    os.symlink(tmp_path, model_copy / "link")
    with pytest.raises(ArtifactError, match=r"link: not listed in the manifest"):
        artifact.load(model_copy)
    (model_copy / "link").unlink()
    (model_copy / "extra").mkdir()
    with pytest.raises(ArtifactError, match=r"extra: not listed in the manifest"):
        artifact.load(model_copy)


@pytest.mark.parametrize("edit", ["drop schema", "drop model", "normaliser is a list",
                                  "hidden is text", "digest is a number"])
def test_a_hand_edited_manifest_is_one_clear_error(model_copy, edit):
    m = _manifest(model_copy)
    if edit == "drop schema":
        del m["schema"]
    elif edit == "drop model":
        del m["model"]
    elif edit == "normaliser is a list":
        m["normaliser"] = [1, 2]
    elif edit == "hidden is text":
        m["model"]["hidden"] = "wide"
    else:
        m["files"]["history.csv"] = 12
    _write_manifest(model_copy, m)
    with pytest.raises(ArtifactError) as err:
        artifact.load(model_copy)
    text = str(err.value)
    assert text.startswith(f"{model_copy / 'manifest.json'}: ") and "\n" not in text
    assert text.endswith("refit the model")


def test_manifest_that_is_not_json(model_copy):
    (model_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json: not valid JSON .*refit the model"):
        artifact.load(model_copy)


def test_manifest_of_another_format(model_copy):
    _write_manifest(model_copy, {"format": "something-else"})
    with pytest.raises(ArtifactError, match=r"not a trafficsiam model manifest; refit the model"):
        artifact.load(model_copy)


# -- a model folder validated as data before use (issue 18, item 4) ---------------------


def _rehash(folder: Path, m: dict, name: str) -> None:
    """A careful forger: the changed file's digest and the id rewritten to match."""
    m["files"][name] = artifact.sha256_file(folder / name)
    m["model_id"] = artifact.content_id(m["files"])
    _write_manifest(folder, m)


def test_huge_layer_sizes_are_refused_before_any_allocation(model_copy):
    m = _manifest(model_copy)
    m["model"]["hidden"] = [2**40, 2**40]
    m["config"]["model"]["hidden"] = [16384, 16384]
    _write_manifest(model_copy, m)
    with pytest.raises(ArtifactError, match=r"field 'model\.hidden\[0\]' has value "
                                            r"1099511627776: input should be less than"):
        artifact.load(model_copy)
    m["model"]["hidden"], m["config"]["model"]["hidden"] = [16384, 16384], [128, 64]
    _write_manifest(model_copy, m)
    with pytest.raises(ArtifactError, match=r"the model's layers .* do not match its config"):
        artifact.load(model_copy)
    m["model"]["hidden"] = m["config"]["model"]["hidden"] = [512, 512]  # consistent, but
    _write_manifest(model_copy, m)  # not the stored weights
    with pytest.raises(ArtifactError, match=r"weights do not fit the model described in the "
                                            r"manifest \(tensor 'net\.0\."):
        artifact.load(model_copy)


def test_a_json_nesting_bomb_is_one_line(model_copy):
    (model_copy / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError, match=r"nested too deeply to be a model manifest"):
        artifact.load(model_copy)


def test_non_finite_or_misshapen_arrays_are_refused(model_copy):
    from safetensors.numpy import load_file, save_file

    inputs = load_file(str(model_copy / "inputs.safetensors"))
    bad = dict(inputs, good_prototypes=np.full_like(inputs["good_prototypes"], np.nan))
    save_file(bad, str(model_copy / "inputs.safetensors"))
    m = _manifest(model_copy)
    _rehash(model_copy, m, "inputs.safetensors")
    with pytest.raises(ArtifactError, match=r"'good_prototypes' is not a finite"):
        artifact.load(model_copy)
    narrow = dict(inputs, holdout=inputs["holdout"][:, :3].copy())
    save_file(narrow, str(model_copy / "inputs.safetensors"))
    _rehash(model_copy, m, "inputs.safetensors")
    with pytest.raises(ArtifactError, match=r"'holdout' is not a finite \[records, \d+\]"):
        artifact.load(model_copy)


def test_non_finite_embeddings_are_refused(model_copy):
    ref = pd.read_parquet(model_copy / "reference.parquet")
    ref.loc[0, "e0"] = np.nan
    ref.to_parquet(model_copy / "reference.parquet", index=False)
    _rehash(model_copy, _manifest(model_copy), "reference.parquet")
    with pytest.raises(ArtifactError, match=r"reference\.parquet: the embedding columns"):
        artifact.load(model_copy)


# -- the manifest's schema (trafficsiam/manifest.py): each field checked as data ----------

def _set(m: dict, path: str, value: object) -> None:
    """m at the dotted `path` (list items by index) set to `value`; `DELETE` removes it."""
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for key in parents:
        m = m[key]
    if value is DELETE:
        del m[last]
    else:
        m[last] = value


DELETE = object()

# (manifest field edited, value, the field the message names): the folder's files and
# hashes stay as they were, as a forger who edits only the manifest leaves them.
SCHEMA_CASES = [
    # wrong types
    ("model.embedding_dim", "8", "model.embedding_dim"),
    ("model.in_features", 35.0, "model.in_features"),
    ("model.hidden.1", True, "model.hidden[1]"),
    ("assign.has_clusters", "yes", "assign.has_clusters"),
    ("calibration.false_alarm_rate", "0.01", "calibration.false_alarm_rate"),
    ("scenarios", "good", "scenarios"),
    ("normaliser.categorical.categories.protocol", "tcp", "normaliser.categorical.categories"),
    # NaN and infinity (Python's json reads both)
    ("calibration.false_alarm_rate", float("nan"), "calibration.false_alarm_rate"),
    ("normaliser.clip", float("nan"), "normaliser.clip"),
    ("normaliser.numeric.scale.0", float("inf"), "normaliser.numeric.scale[0]"),
    ("normaliser.numeric.center.2", float("-inf"), "normaliser.numeric.center[2]"),
    ("anomaly.saturation", float("inf"), "anomaly.saturation"),
    ("training.history.0.val_loss", float("nan"), "training.history"),
    ("timings.train", float("nan"), "timings.train"),
    # negative, zero, out of range
    ("normaliser.numeric.scale.1", -1.0, "normaliser.numeric.scale[1]"),
    ("model.dropout", -0.5, "model.dropout"),
    ("clusters.params.min_samples", -5, "clusters.params.min_samples"),
    ("assign.min_samples", 0, "assign.min_samples"),
    ("calibration.false_alarm_rate", 0.7, "calibration.false_alarm_rate"),
    ("clusters.weighted_purity", 3.5, "clusters.weighted_purity"),
    # huge
    ("model.embedding_dim", 10**9, "model.embedding_dim"),
    ("model.in_features", 2**62, "model.in_features"),
    ("clusters.params.min_cluster_size", 10**18, "clusters.params.min_cluster_size"),
    ("model.hidden", [8] * 100, "model.hidden"),
    ("created", "x" * 1_000_000, "created"),
    ("scenarios.0", "s" * 100_000, "scenarios[0]"),
    # missing keys
    ("normaliser.clip", DELETE, "normaliser.clip"),
    ("assign", DELETE, "assign"),
    ("calibration.false_alarm_rate", DELETE, "calibration.false_alarm_rate"),
    ("clusters.params.min_samples", DELETE, "clusters.params.min_samples"),
    ("model_id", DELETE, "model_id"),
    # extra keys and nesting
    ("clusters.params.memory", "/tmp/cache", "clusters.params.memory"),
    ("assign.metric_kwargs", {"p": 3}, "assign.metric_kwargs"),
    ("assign.metric", "minkowski", "assign.metric"),
    ("model.hidden.0", [128], "model.hidden[0]"),
    ("normaliser.clip", {"value": 10.0}, "normaliser.clip"),
    ("training.history.0.epoch", [[[[[[[[[[1]]]]]]]]]], "training.history"),
    ("surprise", {"a": 1}, "surprise"),
]


@pytest.mark.parametrize(("path", "value", "field"), SCHEMA_CASES,
                         ids=[f"{c[0]}={str(c[1])[:12]}" for c in SCHEMA_CASES])
def test_every_manifest_field_is_checked_as_data(model_copy, path, value, field):
    text = _refused_with(model_copy, path, value)
    assert text.startswith(f"{model_copy / 'manifest.json'}: field '{field}"), text
    assert "\n" not in text and len(text) < 600


def _refused_with(folder, path, value) -> str:
    """The one-line refusal of the model folder whose manifest has `value` at `path`."""
    m = _manifest(folder)
    _set(m, path, value)
    _write_manifest(folder, m)
    with pytest.raises(ArtifactError) as err:
        artifact.load(folder)
    text = str(err.value)
    assert text.endswith("; restore the model folder or refit the model"), text
    return text


@pytest.mark.parametrize(("path", "value", "says"), [
    ("normaliser.numeric.center", [0.0], "center and scale hold 1 and"),
    ("normaliser.numeric.missing_indicator", ["nowhere"], "missing_indicator names a column"),
    ("normaliser.categorical.categories", {}, "categories does not hold one list per column"),
    ("scenarios", ["good", "good"], "names a value more than once"),
    ("schema.numeric", ["duration_ms"], "the schema's columns are not the normaliser's"),
    ("model.in_features", 34, "model.in_features is 34 but the normaliser has 35"),
    ("good_label", "other", "label_column and good_label are not the config's"),
    ("config.model.embedding_dim", 16, "the model's layers (hidden [128, 64], 8 outputs) do "
                                       "not match its config"),
    ("config.score.false_alarm_rate", float("nan"), "config.score.false_alarm_rate"),
])
def test_fields_that_say_one_thing_twice_must_agree(model_copy, path, value, says):
    text = _refused_with(model_copy, path, value)
    assert text.startswith(f"{model_copy / 'manifest.json'}: ") and says in text, text


def test_an_integer_too_long_to_convert_is_one_line(model_copy):
    text = (model_copy / "manifest.json").read_text()
    (model_copy / "manifest.json").write_text(text.replace('"in_features": 35',
                                                           '"in_features": ' + "9" * 5000))
    with pytest.raises(ArtifactError, match=r"manifest\.json: not a model manifest \(.*digits"):
        artifact.load(model_copy)


def test_a_forged_manifest_is_refused_at_the_command_line(model_copy, tmp_path):
    from click.testing import CliRunner

    from trafficsiam.cli import main

    m = _manifest(model_copy)
    m["calibration"]["false_alarm_rate"] = float("nan")
    _write_manifest(model_copy, m)
    data = tmp_path / "in.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(data)
    res = CliRunner().invoke(main, ["score", str(model_copy), str(data),
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.splitlines() == [
        f"error: {model_copy / 'manifest.json'}: field 'calibration.false_alarm_rate' has "
        "value nan: input should be a finite number; restore the model folder or refit the "
        "model"]
    assert not (tmp_path / "out").exists()
