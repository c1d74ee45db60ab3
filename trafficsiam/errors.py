"""Domain exceptions. Every message a user sees names the file, the column or
parameter, the value received, and the fix, on one line."""

from __future__ import annotations

import os
import re
import shlex


def printable(text: str) -> str:
    """`text` with every character that is not printable (control characters, terminal
    escape sequences, line breaks, bidirectional overrides) written as its Python escape,
    so that a value from a user's file cannot drive their terminal or break a line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def cut(text: object, at: int = 60) -> str:
    """Long user text as a message shows it: its start and how much more there is."""
    text = str(text)
    return text if len(text) <= at else f"{text[:at]}... ({len(text) - at:,} more characters)"


def ignore_flag(column: object) -> str:
    """The `--ignore` option that leaves `column` out, as typed in a shell (an empty or
    spaced name quoted: `--ignore ''`)."""
    return f"--ignore {shlex.quote(str(column))}"


class TrafficSiamError(Exception):
    """Base class: a problem the user can act on. The CLI prints it on one line (any
    character of a quoted value that is not printable escaped)."""

    exit_code = 1

    def __str__(self) -> str:
        return printable(super().__str__())


class InputError(TrafficSiamError):
    """The data given to us is unusable as it is (exit code 2)."""

    exit_code = 2


class ConfigError(TrafficSiamError):
    """A configuration key or value is wrong (exit code 2)."""

    exit_code = 2


class ArtifactError(TrafficSiamError):
    """A model folder is missing, damaged, tampered with or from another format (exit code 2)."""

    exit_code = 2


class OutputError(TrafficSiamError):
    """An output location cannot be written as asked (exit code 2)."""

    exit_code = 2


def os_reason(err: BaseException) -> str:
    """The operating system's words for a failed write ('File too large', 'No space left
    on device'), also from pyarrow's and safetensors' wrappings of the errno."""
    text = str(err)
    found = re.search(r"\[errno (\d+)\]|\(os error (\d+)\)|code: (\d+)", text, re.IGNORECASE)
    if found:
        return os.strerror(int(next(g for g in found.groups() if g)))
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    lines = text.strip().splitlines()
    return lines[0] if lines else type(err).__name__
