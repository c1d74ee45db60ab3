"""The one writer: atomic files, strict JSON, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trafficsiam import write
from trafficsiam.errors import OutputError


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        write.atomic(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_an_os_error_is_one_line_naming_the_file_and_the_fix(tmp_path):
    def full(tmp: Path) -> None:
        raise OSError(27, "File too large")

    with pytest.raises(OutputError) as err:
        write.atomic(tmp_path / "b.parquet", full, then="; nothing was recorded")
    assert str(err.value) == (f"{tmp_path / 'b.parquet'}: could not write (File too large); "
                              f"{write.FIX}; nothing was recorded")
    assert not list(tmp_path.iterdir())


def test_the_temporary_name_carries_the_tag(tmp_path):
    seen = []
    write.atomic(tmp_path / "c.csv", lambda tmp: (seen.append(tmp.name), tmp.write_text("x")),
                 tag="run-1")
    assert seen == [".c.csv.run-1.tmp"]


def test_json_is_strict_with_numpy_paths_and_text_for_the_rest(tmp_path):
    data = {"nan": math.nan, "inf": np.float64("inf"), "i": np.int64(3), "a": np.arange(2),
            "p": Path("x/y"), "t": pd.Timestamp("2026-01-02"), "l": [1.0, math.nan]}
    write.json_file(tmp_path / "d.json", data)
    assert json.loads((tmp_path / "d.json").read_text()) == {
        "nan": None, "inf": None, "i": 3, "a": [0, 1], "p": "x/y",
        "t": "2026-01-02 00:00:00", "l": [1.0, None]}


def test_a_folder_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot create the output folder"):
        write.folder(tmp_path / "file" / "sub")
