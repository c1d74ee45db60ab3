"""Periodic retraining: fit a new model, gate it, and only then make it the one scored with.

    python pipelines/retrain.py 'labelled/*.parquet' --models models/ --config configs/prod.yaml

fits into MODELS/<UTC timestamp>/, checks the gate (weighted purity >= --min-purity and the
folder loads and verifies with `api.load`), then switches the MODELS/prod symlink to it in
one atomic rename, and removes all but the newest --keep timestamped model folders (never
the one prod points to). A model that fails the gate stays in its folder for inspection and
prod is untouched. Exit codes: 0 switched, 1 gate failed or other failure, 2 bad input or
configuration, 75 another retrain holds MODELS/.retrain.lock, 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

# No torch here: the heavy `trafficsiam.api` is imported after the arguments are parsed.
from trafficsiam.config import load_config, parse_override
from trafficsiam.console import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    terminated_as_interrupt,
)
from trafficsiam.errors import OutputError, TrafficSiamError

PROD = "prod"
STAMP = "%Y%m%dT%H%M%SZ"
STAMPED = re.compile(r"\d{8}T\d{6}Z")  # the folders this script made, and may remove



class Busy(TrafficSiamError):
    exit_code = 75



def _purity(text: str) -> float:
    value = float(text)
    if not value >= 0:  # above 1 is allowed: a gate no model passes, to try the alerting
        raise argparse.ArgumentTypeError(f"{text}: expected a weighted purity in 0..1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: keep at least 1 model folder")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="retrain.py",
        description="Fit a model on labelled data into MODELS/<UTC timestamp>/ and, if it "
                    "passes the gate, point MODELS/prod at it.")
    p.add_argument("inputs", nargs="+", help="labelled parquet/CSV file, folder or quoted glob")
    p.add_argument("--models", type=Path, default=Path("models"),
                   help="folder of model folders and the prod symlink (default: models)")
    p.add_argument("--config", type=Path, help="YAML config file (see configs/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--min-purity", type=_purity, default=0.9,
                   help="gate: least weighted cluster purity to go to prod (default: 0.9)")
    p.add_argument("--keep", type=_positive, default=5,
                   help="timestamped model folders to keep, prod's always among them "
                        "(default: 5)")
    p.add_argument("--quiet", "-q", action="store_true", help="errors only")
    return p.parse_args(argv)


@contextmanager
def exclusive(models: Path) -> Iterator[None]:
    """One retrain at a time per models folder (the kernel drops the lock if we die)."""
    models.mkdir(parents=True, exist_ok=True)
    fd = os.open(models / ".retrain.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{models}/.retrain.lock: another retrain is running on this models "
                       "folder; let it finish and run again") from None
        yield
    finally:
        os.close(fd)


def point_prod(models: Path, name: str) -> None:
    """Atomically make MODELS/prod a relative symlink to `name`: readers see the old
    target or the new one, never a missing link."""
    tmp = models / f".{PROD}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp)  # relative, so the models folder can move or be mounted elsewhere
    os.replace(tmp, models / PROD)
    fd = os.open(models, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename survives a power cut
    finally:
        os.close(fd)


def prune(models: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` timestamped folders, never the one prod points to."""
    prod = models / PROD
    current = Path(os.path.realpath(prod)) if prod.is_symlink() else None
    stamped = sorted(p for p in models.iterdir()
                     if STAMPED.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    removed = []
    for path in stamped[:-keep]:
        if path.resolve() == current:
            continue
        try:
            shutil.rmtree(path)
        except OSError as err:  # prod is already switched: report, do not fail the job
            print(f"warning: could not remove old model {path} ({err}); remove it by hand",
                  file=sys.stderr)
        else:
            removed.append(path)
    return removed


def _where(models: Path) -> str:
    prod = models / PROD
    return f"{prod} points to {os.readlink(prod) if prod.is_symlink() else None}"


def retrain(args: argparse.Namespace) -> int:
    from trafficsiam import api

    cfg = load_config(args.config, [parse_override(text) for text in args.overrides])
    models: Path = args.models
    prod = models / PROD
    if prod.exists() and not prod.is_symlink():
        raise OutputError(f"{prod}: is a real file or folder, not a symlink; move it to "
                          f"{models}/<name> and link {PROD} to it, or pass another --models")
    with exclusive(models):
        previous = os.readlink(prod) if prod.is_symlink() else None
        folder = models / datetime.now(UTC).strftime(STAMP)
        result = api.fit(args.inputs, folder, cfg, quiet=args.quiet)
        purity = result.weighted_purity
        if purity < args.min_purity:
            print(f"error: gate failed: model {folder} has weighted purity {purity:.3f} < "
                  f"--min-purity {args.min_purity:g}; {_where(models)} as before; the model "
                  "is kept for inspection (clusters.csv, manifest.json)", file=sys.stderr)
            return 1
        try:
            api.load(folder)
        except TrafficSiamError as err:
            print(f"error: gate failed: model {folder} does not load ({err}); "
                  f"{_where(models)} as before", file=sys.stderr)
            return 1
        point_prod(models, folder.name)
        removed = prune(models, args.keep)
    if not args.quiet:
        gone = f"; removed {', '.join(p.name for p in removed)}" if removed else ""
        print(f"model {result.manifest['model_id']} in {folder}: weighted purity {purity:.3f} "
              f">= {args.min_purity:g}; {prod} -> {folder.name} (was {previous}){gone}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("trafficsiam")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    logger.propagate = False
    try:
        with terminated_as_interrupt():  # SIGTERM unwinds: fit removes its half-written folder
            return retrain(args)
    except TrafficSiamError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Terminated:
        print(f"error: stopped by SIGTERM; {_where(args.models)}", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"error: interrupted; {_where(args.models)}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
