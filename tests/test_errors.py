"""trafficsiam.errors: one-line messages that a value from a user's file cannot drive
the terminal with, and the operating system's words for a failed write."""

from __future__ import annotations

import errno

import pytest

from trafficsiam.errors import (
    ArtifactError,
    ConfigError,
    InputError,
    OutputError,
    TrafficSiamError,
    os_reason,
    printable,
)


def test_a_message_never_carries_raw_control_characters():
    err = ConfigError("bad label 'a\x1b]0;pwned\x07\nb'")
    assert str(err) == "bad label 'a\\x1b]0;pwned\\x07\\nb'"


@pytest.mark.parametrize("text, want", [
    ("plain text, é and 中文", "plain text, é and 中文"),
    ("tab\there", "tab\\there"),
    ("bidi \u202e override", "bidi \\u202e override"),
    ("\x9b31m C1 escape", "\\x9b31m C1 escape"),
])
def test_printable_escapes_only_what_is_not_printable(text, want):
    assert printable(text) == want


def test_exit_codes_say_whose_problem_it_is():
    assert TrafficSiamError.exit_code == 1
    assert {InputError.exit_code, ConfigError.exit_code, ArtifactError.exit_code,
            OutputError.exit_code} == {2}


def test_os_reason_finds_the_errno_in_wrapped_messages():
    assert os_reason(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device")
    assert os_reason(RuntimeError("IOError: [Errno 28] writing failed")) == (
        "No space left on device")
    assert os_reason(RuntimeError("first line\nsecond")) == "first line"
