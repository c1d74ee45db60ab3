"""Path safety: one rule at every entry, so that nothing a user gave us is overwritten.

A run refuses, in one line naming both paths, any output (a file or folder it writes, a
state database) that would land in, over or inside one of its inputs, or in or over a
model folder it did not write; and an input folder that holds its output folder (later
runs would read their own outputs). An input is a file, or the folder a folder input or
a glob starts from. Paths are compared resolved (symbolic links followed), so two
spellings of one place are one place.

`replaceable` is `--force`'s rule: an existing folder is replaced only when it is what the
command writes (a model folder: its manifest.json says trafficsiam), never a folder of the
user's.
"""

from __future__ import annotations

import glob as globlib
import itertools
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from trafficsiam.contract import MANIFEST, MODEL_FORMAT
from trafficsiam.errors import OutputError


def input_roots(specs: Sequence[str | Path]) -> list[Path]:
    """Where each input spec lives: the file, the folder, or the folder a glob starts
    from (its part before the first wildcard)."""
    roots = []
    for spec in specs:
        text = str(spec)
        if globlib.has_magic(text) and not Path(text).exists():
            fixed = itertools.takewhile(lambda part: not globlib.has_magic(part),
                                        Path(text).parts)
            roots.append(Path(*fixed))
        else:
            roots.append(Path(text))
    return roots


def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve(strict=False)


def _inside(inner: Path, outer: Path) -> bool:
    """`inner` is `outer` or below it."""
    return inner == outer or outer in inner.parents


def is_model_folder(path: Path) -> bool:
    """A folder `trafficsiam fit` (or calibrate, promote) wrote: its manifest says so."""
    manifest = Path(path) / MANIFEST
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("format") == MODEL_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_outputs(
    outputs: Iterable[tuple[str, str | Path]],
    inputs: Iterable[tuple[str, str | Path]] = (),
    models: Iterable[str | Path] = (),
    around: bool = True,
) -> None:
    """Refuse outputs that would land in, over or inside an input or a model folder, and
    (`around`: for outputs named after their inputs, or replaced whole) output folders that
    hold an input. `outputs` and `inputs` are (what it is, path) pairs, the words naming
    them in the message (`--out`, `--state`, `input`)."""
    outs = [(what, Path(p), _resolved(Path(p))) for what, p in outputs]
    ins = [(what, Path(p), _resolved(Path(p))) for what, p in inputs]
    for what, given, out in outs:
        for in_what, in_given, inp in ins:
            if _inside(out, inp):
                raise OutputError(
                    f"{what} {given} would be written {'over' if out == inp else 'inside'} "
                    f"the {in_what} {in_given}; choose a {what} outside the inputs")
            if around and _inside(inp, out):
                raise OutputError(
                    f"{what} {given} holds the {in_what} {in_given}, which a run would "
                    f"overwrite or read back as input; choose a {what} beside the inputs, "
                    "not around them")
        for model in models:
            folder = _resolved(Path(model))
            if _inside(out, folder):
                raise OutputError(
                    f"{what} {given} would be written inside the model folder {model}, "
                    "which holds only the files its manifest lists; choose a "
                    f"{what} outside it")
            if _inside(folder, out) and out != folder:
                raise OutputError(
                    f"{what} {given} holds the model folder {model}; choose a {what} "
                    "that does not contain it")


def comparison_out(out: str | Path, inputs: Iterable[str | Path], marker: str,
                   clear: bool = True) -> None:
    """compare's and backtest's --out: a new or empty folder, one that holds only the
    run's own inputs (backtest's split/), or an earlier comparison (its `marker` file),
    whose model and run folders a rerun replaces: with `clear` they are removed here, so
    that none of an earlier run with more seeds or losses stays beside the new ones.
    Anything else in it could be the user's, and is refused."""
    out = Path(out)
    if not out.is_dir():
        return
    if (out / marker).is_file():
        if not clear:
            return
        for folder, ours in (("models", is_model_folder),
                             ("runs", lambda p: (p / "metrics.json").is_file())):
            for entry in sorted((out / folder).glob("*")) if (out / folder).is_dir() else []:
                if entry.is_dir() and ours(entry):
                    shutil.rmtree(entry)
        return
    held = [_resolved(Path(p)) for p in inputs]
    for entry in sorted(out.iterdir()):
        if not any(_inside(i, _resolved(entry)) for i in held):
            raise OutputError(
                f"--out {out} holds '{entry.name}', which no earlier comparison wrote; choose "
                "a new --out folder (models/, runs/, the tables and the page are written "
                "there, and would replace files of those names)")


def replaceable(out: Path) -> None:
    """`--force`'s rule: an existing `out` may be replaced only if it is a model folder
    (or an empty folder); anything else is the user's and is refused."""
    out = Path(out)
    if not out.exists():
        return
    if out.is_dir() and (is_model_folder(out) or not any(out.iterdir())):
        return
    raise OutputError(
        f"{out}: exists and is not a trafficsiam model folder, so --force will not "
        "replace it (it could hold your data); choose another --out or remove it yourself")
