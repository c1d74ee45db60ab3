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


_AUTO_KEYS = {  # the keys that take a number or auto: what their error says is expected
    "score.anomaly_saturation": "expected a number > 0, auto (chosen at fit), or empty "
                                "(Euclidean)",
    "train.input_dropout": "expected a number from 0 to below 1, or auto (chosen at fit)",
}


@pytest.mark.parametrize("key, text", [
    *[("score.anomaly_saturation", t) for t in ["-1", "0", "lots", "true", "inf", "[0.25]"]],
    *[("train.input_dropout", t) for t in ["-0.1", "1", "lots", "true", "", "[0.25]"]],
])
def test_bad_auto_or_number_names_key_value_and_the_choices(key, text):
    with pytest.raises(ConfigError) as err:
        build_config({}, [parse_override(f"{key}={text}")], "--set")
    message = str(err.value)
    assert message.startswith(f"--set: config key '{key}' has value ")
    assert _AUTO_KEYS[key] in message
    assert "\n" not in message


@pytest.mark.parametrize("key, text, want", [
    ("score.anomaly_saturation", "0.3", 0.3), ("score.anomaly_saturation", "2", 2.0),
    ("score.anomaly_saturation", "auto", "auto"), ("score.anomaly_saturation", "null", None),
    ("score.anomaly_saturation", "", None), ("train.input_dropout", "0", 0.0),
    ("train.input_dropout", "0.25", 0.25), ("train.input_dropout", "auto", "auto"),
])
def test_auto_or_number_keys_take_their_values_and_default_to_auto(key, text, want):
    section, name = key.split(".")
    cfg = build_config({}, [parse_override(f"{key}={text}")], "--set")
    assert getattr(getattr(cfg, section), name) == want
    assert getattr(getattr(Config(), section), name) == "auto"


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


def test_a_folder_given_as_config_file_is_called_a_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"is a folder, not a config file; pass the YAML"):
        load_config(tmp_path)


def test_config_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(path)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.train.epochs = 3  # type: ignore[misc]


# -- hostile config files and values (issue 18, item 5) --------------------------------


def test_yaml_alias_bomb_is_refused_at_once_in_one_short_line(tmp_path):
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: YAML aliases (*name) are not supported")
    assert "line 2" in message and "\n" not in message and len(message) < 300


def test_yaml_nesting_bomb_is_refused_without_recursion_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("train: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"deep.yaml: YAML nested deeper than 16 levels"):
        load_config(path)


def test_an_alias_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match=r"aliases \(\*name\) are not supported"):
        parse_override("train.epochs=[&a 1, *a]")


def test_a_huge_or_binary_config_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"big.yaml: 2,097,155 bytes is not a config file"):
        load_config(big)
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("data:\n  good_label: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text"):
        load_config(binary)


@pytest.mark.parametrize("override, key", [
    ("train.seed=99999999999999999999999", "train.seed"),
    ("train.seed=-1", "train.seed"),
    ("model.hidden=[0]", "model.hidden"),
    ("model.hidden=[-5, 64]", "model.hidden"),
    ("model.hidden=[1000000000000]", "model.hidden"),
    ("model.hidden=[8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]", "model.hidden"),
    ("triplets.batch_size=100000000", "triplets.batch_size"),
    ("triplets.classes_per_batch=1000000", "triplets.classes_per_batch"),
    ("train.learning_rate=10", "train.learning_rate"),
    ("train.learning_rate=.nan", "train.learning_rate"),
    ("normalise.clip=.inf", "normalise.clip"),
    ("score.false_alarm_rate=.nan", "score.false_alarm_rate"),
    ("score.batch_size=1000000000000", "score.batch_size"),
    ("cluster.max_points=1000000000000", "cluster.max_points"),
])
def test_out_of_range_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as err:
        build_config({}, [parse_override(override)], "--set")
    assert f"config key '{key}' has value" in str(err.value)


def test_a_long_value_is_cut_and_control_characters_escaped_in_the_message():
    with pytest.raises(ConfigError) as err:
        build_config({"train": {"epochs": "\x1b[31m" + "9" * 10_000}})
    message = str(err.value)
    assert "\x1b" not in message and "\\x1b[31m" in message
    assert len(message) < 250
