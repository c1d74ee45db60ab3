"""Nightly scoring for schedulers (cron, systemd timers, Airflow): score what is new, say so
in one paragraph, and tell the scheduler through the exit code.

    python pipelines/score_nightly.py models/prod 'landing/*.parquet' --out scored/

Besides the paragraph (none with --quiet), one line for an alerting hook, always printed
last on stdout: `trafficsiam-run status=alert exit=3 run_id=... records=... good=...
known_error=... new_error=... outlier=... candidates=new-1:300:3,new-4:120:1
new_this_run=new-4` (status ok, alert, nothing_new or error; candidates as
id:records:runs seen).

Exit codes: 0 scored (or nothing new), --alert-exit-code (3) when candidate new error types
were found, 2 bad input, configuration or model, 75 another run holds the state, 1 any
other failure, 130 interrupted (Ctrl-C), 143 stopped by SIGTERM. See pipelines/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trafficsiam.console import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    setup_logging,
    terminated_as_interrupt,
)
from trafficsiam.contract import alert_exit_code, run_exit_code
from trafficsiam.errors import TrafficSiamError

if TYPE_CHECKING:
    from trafficsiam.scoring import ScoreResult

PENDING = "inputs whose results were not committed stay pending for the next run"




def _alert_code(text: str) -> int:
    try:
        return alert_exit_code(int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text}: expected seconds >= 0")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="score_nightly.py",
        description="Score new or changed input files with a trafficsiam model; "
                    "exit with --alert-exit-code when new error types are found.")
    p.add_argument("model", type=Path,
                   help="model folder, typically the models/prod symlink (resolved once at start)")
    p.add_argument("inputs", nargs="+",
                   help="parquet/CSV file, folder or quoted glob of the batches to score")
    p.add_argument("--out", "-o", required=True, type=Path, help="folder for the outputs")
    p.add_argument("--state", type=Path,
                   help="state database (default: OUT/trafficsiam-state.db)")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="where the records are scored (default: local)")
    p.add_argument("--scheduler",
                   help="Dask scheduler address for --engine dask (default: a local cluster)")
    p.add_argument("--alert-exit-code", type=_alert_code, default=3, metavar="N",
                   help="exit code when new error types are found; 0 never alerts (default: 3)")
    p.add_argument("--wait", type=_seconds, default=600.0, metavar="SECONDS",
                   help="queue this long behind a run holding the state before exiting 75 "
                        "(default: 600)")
    p.add_argument("--rescore", action="store_true",
                   help="score every input again, even those already scored")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress or summary; errors only")
    args = p.parse_args(argv)
    if args.scheduler is not None and args.engine != "dask":
        p.error("--scheduler needs --engine dask")
    return args


def _candidate(t: dict[str, Any], features: int = 3) -> str:
    near = "" if t["nearest_known"] == "none" else f", nearest {t['nearest_known']}"
    top = ", ".join(str(t["top_features"]).split("; ")[:features])
    runs = int(t.get("runs_seen", 1))
    since = (f"; seen in {runs} runs since {t['first_seen']}, {t['records_before']} records "
             "last time" if runs > 1 else "; new this run")
    return f"{t['new_type']} ({t['records']} records{near}: {top}{since})"


def status_line(result: ScoreResult | None, code: int, error: str = "") -> str:
    """One line of key=value fields for an alerting hook (grep '^trafficsiam-run '):
    run id, exit code, records per verdict, candidates as id:records:runs_seen."""
    fields: dict[str, Any] = {"exit": code}
    if error:
        fields["status"] = "error"
        fields["error"] = error.replace(" ", "_")[:200]
    elif result is None or result.run_id is None:
        fields["status"] = "nothing_new"
    else:
        s = result.summary
        fields.update({"status": "alert" if code else "ok", "run_id": s["run_id"],
                       "model": s["model"]["id"], "records": s["records"], **s["verdicts"],
                       "candidates": ",".join(
                           f"{t['new_type']}:{t['records']}:{t.get('runs_seen', 1)}"
                           for t in s["new_types"]) or "none",
                       "new_this_run": ",".join(
                           t["new_type"] for t in s["new_types"]
                           if t.get("runs_seen", 1) == 1) or "none"})
    return "trafficsiam-run " + " ".join(f"{k}={v}" for k, v in fields.items())


def summarise(result: ScoreResult, out: Path) -> str:
    """One paragraph: records, verdicts, candidate new types with their top features."""
    if result.run_id is None:
        return (f"nothing new to score: {len(result.skipped)} input(s) already scored with "
                f"the same content were skipped; outputs in {out} are unchanged.")
    s: dict[str, Any] = result.summary
    verdicts = ", ".join(f"{n} {v}" for v, n in s["verdicts"].items())
    text = (f"run {s['run_id']}: scored {s['records']} records in {len(result.outputs)} "
            f"input(s) with model {s['model']['id']} ({s['model']['path']}) in "
            f"{s['seconds']:.1f} s: {verdicts}.")
    if result.skipped:
        text += f" {len(result.skipped)} input(s) already scored were skipped."
    if result.found_new_types:
        types = "; ".join(_candidate(t) for t in s["new_types"])
        text += f" {len(s['new_types'])} candidate new error type(s): {types}."
    else:
        text += " No candidate new error types."
    return text + f" Outputs in {out}."


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.quiet)
    # Resolve models/prod once: a retrain switching the link mid-run must not leave this
    # run (or its Dask workers, which load the model by path) on two different models.
    model = Path(os.path.realpath(args.model))
    # Imported here, not at the top: torch takes seconds to import, --help and usage
    # errors should not wait for it.
    from trafficsiam import api

    try:
        with terminated_as_interrupt():  # SIGTERM (systemctl stop, a timeout) unwinds too
            result = api.score(model, args.inputs, args.out, state=args.state,
                               engine=args.engine, scheduler=args.scheduler,
                               rescore=args.rescore, wait=args.wait, quiet=args.quiet)
    except TrafficSiamError as err:
        print(f"error: {err}", file=sys.stderr)
        print(status_line(None, err.exit_code, type(err).__name__))
        return err.exit_code
    except Terminated:
        print(f"error: stopped by SIGTERM; {PENDING}", file=sys.stderr)
        print(status_line(None, EXIT_TERMINATED, "terminated"))
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"error: interrupted; {PENDING}", file=sys.stderr)
        print(status_line(None, EXIT_INTERRUPTED, "interrupted"))
        return EXIT_INTERRUPTED
    code = run_exit_code(result.found_new_types, args.alert_exit_code)
    if not args.quiet:
        print(summarise(result, args.out))
    print(status_line(result, code))
    return code


if __name__ == "__main__":
    sys.exit(main())
