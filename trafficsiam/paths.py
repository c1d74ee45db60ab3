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


def _is_run_folder(path: Path) -> bool:
    """A folder `evaluate` wrote inside a comparison (runs/<loss>-seed<k>)."""
    return (path / "metrics.json").is_file()


# The folders a comparison writes, and which of their entries are its own.
_COMPARISON_FOLDERS = {"models": is_model_folder, "runs": _is_run_folder}


def _comparisons_own(entry: Path) -> bool:
    """An entry of --out that a comparison (or backtest) wrote, even one that failed
    before its tables: models/ of model folders, runs/ of run folders, backtest's split/."""
    if not entry.is_dir() or entry.is_symlink():
        return False
    if entry.name == "split":
        return {p.name for p in entry.iterdir()} <= {"train.parquet", "test.parquet"}
    ours = _COMPARISON_FOLDERS.get(entry.name)
    return ours is not None and all(p.is_dir() and ours(p) for p in entry.iterdir())


def comparison_out(out: str | Path, inputs: Iterable[str | Path], marker: str,
                   clear: bool = True) -> None:
    """compare's and backtest's --out: a new or empty folder, an earlier comparison (its
    `marker` file) or what one wrote before it failed, or a folder that holds the run's
    own inputs. Anything else in it could be the user's, and is refused. With `clear`,
    the model and run folders of an earlier finished comparison are removed, so that none
    of a run with more seeds or losses stays beside the new ones."""
    out = Path(out)
    if not out.is_dir():
        return
    earlier = (out / marker).is_file()
    if not earlier:
        held = [_resolved(Path(p)) for p in inputs]
        for entry in sorted(out.iterdir()):
            if not (any(_inside(i, _resolved(entry)) for i in held) or _comparisons_own(entry)):
                raise OutputError(
                    f"--out {out} holds '{entry.name}', which no earlier comparison wrote; "
                    "choose a new --out folder (models/, runs/, the tables and the page are "
                    "written there, and would replace files of those names)")
    # only a folder that holds a finished comparison's marker is cleared: models/ beside
    # it could otherwise be a user's folder of production models
    if not (clear and earlier):
        return
    for folder, ours in _COMPARISON_FOLDERS.items():
        for entry in sorted((out / folder).glob("*")) if (out / folder).is_dir() else []:
            if entry.is_dir() and not entry.is_symlink() and ours(entry):
                shutil.rmtree(entry)


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
