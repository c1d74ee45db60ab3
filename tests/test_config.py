from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from trafficsiam.config import Config, build_config, load_config, parse_override
from trafficsiam.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_yaml_matches_built_in_defaults():
    assert load_config(REPO / "configs" / "default.yaml") == Config()


def test_default_yaml_documents_every_key():
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    for section, model in Config.model_fields.items():
        assert set(raw[section]) == set(model.annotation.model_fields), section


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: unknown config key 'train.epochz'; remove it or check its spelling "
        "against configs/default.yaml"
    )


def test_wrong_type_names_key_and_value(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"my.yaml: config key 'train.epochs' has value 'many'"):
        load_config(path)


def test_negative_epochs_refused():
    with pytest.raises(ConfigError, match=r"'train.epochs' has value -1: input should be greater"):
        build_config({"train": {"epochs": -1}})


@pytest.mark.parametrize("text", ["-1", "0", "lots", "true", "inf", "[0.25]"])
def test_bad_anomaly_saturation_names_key_value_and_the_choices(text):
    with pytest.raises(ConfigError) as err:
        build_config({}, [parse_override(f"score.anomaly_saturation={text}")], "--set")
    message = str(err.value)
    assert message.startswith("--set: config key 'score.anomaly_saturation' has value ")
    assert "expected a number > 0, auto (chosen at fit), or empty (Euclidean)" in message
    assert "\n" not in message


@pytest.mark.parametrize("text, want", [("0.3", 0.3), ("2", 2.0), ("auto", "auto"),
                                        ("null", None), ("", None)])
def test_anomaly_saturation_takes_a_number_auto_or_empty(text, want):
    cfg = build_config({}, [parse_override(f"score.anomaly_saturation={text}")], "--set")
    assert cfg.score.anomaly_saturation == want
    assert Config().score.anomaly_saturation == "auto"


def test_beta_below_n_refused():
    with pytest.raises(ConfigError) as err:
        build_config({"model": {"embedding_dim": 8}, "loss": {"beta": 4}})
    assert "loss.beta must be at least the embedding dimension 8" in str(err.value)
    assert build_config({"model": {"embedding_dim": 8}, "loss": {"beta": 8}}).loss.beta == 8


def test_overrides_apply_in_order_and_parse_yaml_values():
    cfg = build_config({"train": {"epochs": 5}}, [parse_override("train.epochs=7"),
                                                  parse_override("data.ignore=[a, b]")])
    assert cfg.train.epochs == 7
    assert cfg.data.ignore == ("a", "b")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
        parse_override("train.epochs")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(path)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.train.epochs = 3  # type: ignore[misc]
