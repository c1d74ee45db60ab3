"""Domain exceptions. Every message a user sees names the file, the column or
parameter, the value received, and the fix, on one line."""

from __future__ import annotations


class TrafficSiamError(Exception):
    """Base class: a problem the user can act on. The CLI prints it on one line."""

    exit_code = 1


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
