"""What a person sees on the terminal: progress and warnings on stderr, each one line
(`warning: ...`), with the characters of user data that are not printable escaped, and
the warnings of the libraries underneath (scikit-learn, numpy, pandas) said the same way.
Used by the CLI and the pipeline scripts."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from trafficsiam.errors import printable


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = one_line(record.getMessage())
        return f"warning: {msg}" if record.levelno >= logging.WARNING else msg


def setup_logging(quiet: bool) -> None:
    """The package's messages on stderr, one line each (progress only unless `quiet`),
    and Python's warnings routed to them."""
    logger = logging.getLogger("trafficsiam")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    warnings.showwarning = _show_warning


def one_line(text: str) -> str:
    """Line breaks and control characters from data (a column named 'a\nb', a terminal
    escape sequence) escaped: a message is always one line that cannot drive a terminal."""
    return printable(text)


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    """A library's warning (sklearn, numpy, pandas) as one `warning:` line naming its
    kind, not Python's two lines with a source excerpt."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    logging.getLogger("trafficsiam").warning("%s from %s: %s", category.__name__,
                                             Path(filename).parent.name or filename, first)
