"""The README documents every command and option, and every config key (docs cannot drift)."""

from pathlib import Path

import click
import pytest

from trafficsiam.cli import main
from trafficsiam.config import Config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_documented_with_help(name):
    command = main.commands[name]
    assert command.help, f"{name} has no help text"
    assert f"trafficsiam {name}" in README, f"README does not show `trafficsiam {name}`"
    for param in command.params:
        if isinstance(param, click.Option):
            assert any(opt in README for opt in param.opts), (name, param.opts)


@pytest.mark.parametrize("section", sorted(Config.model_fields))
def test_every_config_key_documented(section):
    keys = Config.model_fields[section].annotation.model_fields
    for key in keys:
        assert f"{section}.{key}" in README, f"README does not document {section}.{key}"


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README
