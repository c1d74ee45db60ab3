"""trafficsiam.console: every message on the terminal one line, data escaped, library
warnings said the same way."""

from __future__ import annotations

import logging
import warnings

from trafficsiam.console import setup_logging


def test_warnings_and_messages_are_one_escaped_line(capsys):
    setup_logging(quiet=False)
    log = logging.getLogger("trafficsiam")
    log.warning("column '%s' is constant", "a\nb\x1b[31m")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Number of distinct clusters (3) found smaller than n_clusters (4).\n"
                      "Possibly due to duplicate points in X.", RuntimeWarning, stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "warning: column 'a\\nb\\x1b[31m' is constant"
    assert lines[1].startswith("warning: RuntimeWarning from ")
    assert lines[1].endswith(": Number of distinct clusters (3) found smaller than "
                             "n_clusters (4).")
    assert len(lines) == 2


def test_quiet_keeps_warnings_drops_progress(capsys):
    setup_logging(quiet=True)
    log = logging.getLogger("trafficsiam")
    log.info("reading 3 files")
    log.warning("left out 2 records")
    assert capsys.readouterr().err.splitlines() == ["warning: left out 2 records"]
