"""Plan a scoring run: which output file each input gets, and the jobs."""

from __future__ import annotations

import glob as globlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trafficsiam.errors import InputError
from trafficsiam.state import InputFile


def _root_of(spec: str) -> Path:
    """The folder an input spec is relative to: a folder itself, a glob's fixed prefix,
    or a file's parent."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    if globlib.has_magic(spec):
        fixed = []
        for part in path.parts:
            if globlib.has_magic(part):
                break
            fixed.append(part)
        return Path(*fixed).resolve() if fixed else Path.cwd()
    return path.resolve().parent


def output_names(specs: Sequence[str], paths: Sequence[Path]) -> dict[Path, str]:
    """Output file name (relative to --out) per input: its path below the folder the
    input spec names, as .parquet. Unique by construction within a spec."""
    roots = [_root_of(s) for s in specs]
    names: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    for path in paths:
        resolved = path.resolve()
        root = next((r for r in roots if resolved.is_relative_to(r)), resolved.parent)
        rel = resolved.relative_to(root).with_suffix(".parquet").as_posix()
        if rel in seen:
            raise InputError(
                f"{path}: would be written to the same output '{rel}' as {seen[rel]}; "
                "score them in separate runs with different --out folders"
            )
        seen[rel] = path
        names[path] = rel
    return names


@dataclass
class Job:
    index: int
    source: InputFile
    output: str  # relative to --out
    rows: int | None  # None: CSV, counted while reading

