"""Write: how every file of the package is written, atomically, and JSON's one encoding.

A file is written under a temporary name beside its target (`.<name>.<tag>.tmp`), synced
and renamed into place, so a reader sees the old file or the new one, never half of one;
on failure the temporary file is removed and the error is one line naming the file and
the fix. JSON is strict (NaN and infinities become null) with numpy values, paths and
anything else as text.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam.errors import OutputError, os_reason

# the longest file name most file systems take, in bytes
NAME_MAX = 255
FIX = ("free space on that disk (or raise its quota or file size limit), or choose "
       "another --out")


def folder(path: str | Path) -> Path:
    """Create the output folder `path` (and its parents) unless it exists."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path}: cannot create the output folder ({err.strerror})") from None
    return path


def failed(path: Path, err: BaseException, what: str = "", then: str = "") -> OutputError:
    """A full disk, a quota or a file size limit: one line naming the file and the fix.
    `what` names the thing written ("the model"), `then` adds what it means for the run."""
    return OutputError(f"{path}: could not write{' ' + what if what else ''} "
                       f"({os_reason(err)}); {FIX}{then}")


def atomic(
    path: str | Path, write: Callable[[Path], object], tag: str | None = None,
    then: str = "",
) -> None:
    """Run `write(tmp)` on a temporary name beside `path`, then sync it and move it into
    place. `tag` names the temporary file (a run id lets a later run find its leftovers);
    `then` ends the message of a failed write."""
    path = Path(path)
    tmp = stage(path, write, tag, then)
    try:
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise failed(path, err, then=then) from None


def stage(
    path: str | Path, write: Callable[[Path], object], tag: str | None = None,
    then: str = "",
) -> Path:
    """`write(tmp)` on the temporary name `atomic` uses, synced but not moved: a run with
    several outputs stages them all and `publish`es them together, so that a failure in
    any leaves none in place. Returns the temporary path."""
    path = Path(path)
    tmp = staged_name(path, tag or uuid.uuid4().hex)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise failed(path, err, then=then) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def staged_name(path: Path, tag: str) -> Path:
    """The temporary name `stage` writes `path` under: hidden, beside it, tagged. A name
    too long for the file system once tagged (255 bytes) is shortened, with a digest of
    it so that two long names never meet."""
    name = path.name
    if len(os.fsencode(f".{name}.{tag}.tmp")) > NAME_MAX:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
        name = f"{name[:40]}~{digest}"
    return path.with_name(f".{name}.{tag}.tmp")


def publish(staged: list[tuple[Path, Path]], then: str = "") -> None:
    """Move staged outputs (temporary, final) into place, after all were written; on any
    failure the ones not yet moved are removed (`discard`)."""
    for i, (tmp, path) in enumerate(staged):
        try:
            os.replace(tmp, path)
        except OSError as err:
            discard(staged[i:])
            raise failed(path, err, then=then) from None


def discard(staged: list[tuple[Path, Path]]) -> None:
    """Remove staged outputs that will not be published."""
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)


def put_text(path: Path, content: str) -> None:
    """`content` as UTF-8. A file name that is not UTF-8 (Python holds its bytes as
    surrogates) is written as `\\udcXX`, as the messages show it, not refused."""
    path.write_text(content, encoding="utf-8", errors="backslashreplace")


def put_csv(path: Path, frame: pd.DataFrame) -> None:
    """`frame` as CSV without its index, in UTF-8 as `put_text`."""
    frame.to_csv(path, index=False, errors="backslashreplace")


def text(path: str | Path, content: str, tag: str | None = None, then: str = "") -> None:
    """`content` as UTF-8, atomically."""
    atomic(path, lambda p: put_text(p, content), tag, then)


def csv(path: str | Path, frame: pd.DataFrame, tag: str | None = None, then: str = "") -> None:
    """`frame` as CSV without its index, atomically."""
    atomic(path, lambda p: put_csv(p, frame), tag, then)


def json_default(value: Any) -> Any:
    """`json.dumps` fallback for numpy scalars and arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fallback(value: Any) -> Any:
    try:
        return jsonable(json_default(value))
    except TypeError:
        return str(value)  # timestamps, decimals, bytes of example records


def jsonable(value: Any) -> Any:
    """`value` with NaN and infinities as None, in dicts, lists and tuples too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def to_json(data: Any) -> str:
    """Strict JSON text (NaN and infinities as null), indented, ending in a newline."""
    return json.dumps(jsonable(data), indent=2, default=_fallback) + "\n"


def json_file(path: str | Path, data: Any, tag: str | None = None, then: str = "") -> None:
    """`data` as strict JSON, atomically."""
    text(path, to_json(data), tag, then)
