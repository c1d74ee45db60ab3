"""A scoring run: the inputs not yet scored, one engine over them, the run's tables and
page, all recorded in the run's state.

    plan (inputs -> outputs, state) -> engine (local or Dask): pass 1, new types,
    pass 2 -> summary, clusters.csv, new_types.csv, features_by_cluster.csv, report.html
    -> state committed -> the run's own copy in runs/<run id>/, index.html (`history`)

Every record keeps all its input columns and gains `contract.TS_COLUMNS`. Nothing is
recorded as scored before every output is in place and the inputs were hashed again
unchanged.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from trafficsiam import artifact, read, write
from trafficsiam.artifact import Artifact
from trafficsiam.config import ScoreConfig
from trafficsiam.contract import (
    CLUSTERS_CSV,
    FEATURES_CSV,
    INDEX_HTML,
    NEW_TYPES_CSV,
    OUT_LOCK,
    REPORT_HTML,
    RUNS_DIR,
    STATE_NAME,
    SUMMARY,
    WORK_NAME,
)
from trafficsiam.errors import InputError, OutputError
from trafficsiam.newtypes import seen_before
from trafficsiam.paths import check_outputs, input_roots
from trafficsiam.report import run_report
from trafficsiam.scoring import dask_engine
from trafficsiam.scoring.batch import Scoring
from trafficsiam.scoring.history import keep_run, summaries
from trafficsiam.scoring.local import NOT_RECORDED, run_local
from trafficsiam.scoring.passes import Outcome
from trafficsiam.scoring.plan import Job, output_names
from trafficsiam.scoring.tables import summarise
from trafficsiam.scoring.tally import Tally
from trafficsiam.state import InputFile, StateStore, describe, exclusive

log = logging.getLogger("trafficsiam")
# `write.atomic`'s temporary names with a run id: .<name>.<run id>.tmp
_TMP_NAME = re.compile(r"\..+\.\d{8}T\d{6}Z-[0-9a-f]{6}\.tmp")
Engine = Callable[[Scoring, list[Job], Path, str, bool], Outcome]


@dataclass
class ScoreResult:
    """What a run did: its id (None: nothing new to score), summary.json's content, the
    (input, output, records) of each input scored, the inputs skipped as already scored,
    and the candidate new error types (new_types.csv)."""

    run_id: str | None
    out: Path
    summary: dict[str, Any]
    outputs: list[tuple[Path, Path, int]]  # (input, output, rows)
    skipped: list[Path]
    new_types: pd.DataFrame

    @property
    def found_new_types(self) -> bool:
        return len(self.new_types) > 0


def score(
    model: str | Path | Artifact,
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    config: ScoreConfig | None = None,
    state: str | Path | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    rescore: bool = False,
    wait: float = 0.0,
    quiet: bool = False,
    report: bool = True,
) -> ScoreResult:
    """Score the new or changed input files into `out`; see the module docstring.
    `report=False`: no report.html (the CSV tables are written all the same)."""
    art = model if isinstance(model, Artifact) else artifact.load(model)
    cfg = config or art.config.score
    specs = [str(s) for s in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    state_path = Path(state) if state is not None else Path(out) / STATE_NAME
    check_outputs([("--out", out), ("--state", state_path)],
                  [("input", r) for r in input_roots(specs)], models=[art.path])
    paths = read.resolve_inputs(specs)
    names = output_names(specs, paths)
    created = not Path(out).exists()
    out = write.folder(out)
    run_engine = _engine(engine, paths, scheduler)
    clock = time.perf_counter()

    # Two locks: the state's (one run per state) and the --out folder's (two runs with
    # different states must not share its work folder and outputs).
    with _nothing_left_if_refused(out, created, state_path), \
            exclusive(out / OUT_LOCK, wait, 0.2,
                   f"{out}: another trafficsiam score run is writing into this --out folder"), \
            StateStore(state_path) as store, store.lock(wait=wait):
        _remove_leftovers(out)
        todo, skipped = store.pending([describe(p) for p in paths], rescore=rescore)
        if skipped:
            log.info("%d input(s) already scored with the same content: skipped",
                     len(skipped))
            _warn_other_model(store.scored_by(skipped), art.model_id)
        by_path = {p.resolve(): p for p in paths}
        taken = store.writers({f.path: (out / names[by_path[f.path]]).resolve() for f in todo})
        for path, other in taken.items():
            target = out / names[by_path[path]]
            if target.is_file():
                raise InputError(
                    f"{by_path[path]}: its output {target} holds the scored records of "
                    f"{other}, scored earlier into this folder; score it into another --out "
                    "folder (or rename it)")
        if not todo:
            log.info("nothing new to score in %s", ", ".join(specs))
            return ScoreResult(None, out, {}, [], [f.path for f in skipped],
                               pd.DataFrame(columns=["new_type"]))
        jobs = [Job(i, f, names[by_path[f.path]], read.count_rows(by_path[f.path]))
                for i, f in enumerate(todo)]
        # the time to the microsecond (its fraction in hex): run ids sort in run order,
        # which the run folders and the tracking of new types rely on (`history`)
        now = datetime.now(UTC)
        run_id = now.strftime("%Y%m%dT%H%M%SZ") + f"-{now.microsecond:06x}"
        store.begin_run(run_id, art.model_id, todo, out)
        staged: list[tuple[Path, Path]] = []
        try:
            scoring = Scoring(art, cfg)
            scoring.earlier = seen_before(summaries(out), art.model_id)
            tally, new_types, examples, rows, staged = run_engine(scoring, jobs, out, run_id,
                                                                  quiet)
            _warn_exported_differently(scoring, tally, specs)
            # The inputs are hashed again (a file rewritten while we read it must not be
            # recorded) while the tables and the page are built: hashlib releases the GIL.
            # Nothing is put in place before the hashes are checked.
            with ThreadPoolExecutor(max_workers=1) as pool:
                rehashed = pool.submit(lambda: [describe(j.source.path) for j in jobs])
                summary, clusters, table = summarise(
                    scoring, jobs, rows, tally, new_types, examples, run_id, out, skipped,
                    time.perf_counter() - clock, engine,
                )
                sample = tally.report_sample(scoring)
                run = run_report.run_tables(art, sample, summary, clusters, table)
                page = (run_report.run_page(art, run, sample, store.summaries())
                        if report else None)
                _check_unchanged(jobs, rehashed.result())
            # all or nothing: the scored files and the run's tables are staged, then moved
            # into place together; a failure before this point leaves none of them
            staged += _stage_run(out, run, summary, page, run_id)
            write.publish(staged, then=NOT_RECORDED)
            staged = []
            if page is None:  # an earlier run's page would sit beside this run's tables
                (out / REPORT_HTML).unlink(missing_ok=True)
            store.finish_run(
                run_id, {j.source: (out / j.output, rows[j.index]) for j in jobs}, summary
            )
        except BaseException as err:
            write.discard(staged)
            try:
                store.fail_run(run_id, f"{type(err).__name__}: {err}".splitlines()[0])
            except OutputError:
                pass  # the state cannot be written either (a full disk): `err` says why
            raise
        # Only a committed run joins the history (and the earlier candidates of the next
        # run): a run killed before its commit leaves no run folder.
        try:
            keep_run(out, run_id, cfg.keep_runs)
        except OutputError as err:
            log.warning("%s (the run is complete and recorded; only its copy under %s/ "
                        "and %s are missing)", err, RUNS_DIR, INDEX_HTML)
    return ScoreResult(
        run_id, out, summary,
        [(by_path[j.source.path], out / j.output, rows[j.index]) for j in jobs],
        [f.path for f in skipped], table,
    )


def _engine(name: str, paths: Sequence[Path], scheduler: str | None) -> Engine:
    """The engine's run function, its inputs checked before the run starts."""
    if name == "dask":
        dask_engine.preflight(paths)

        def run_dask(scoring: Scoring, jobs: list[Job], out: Path, run_id: str,
                     quiet: bool) -> Outcome:
            return dask_engine.run_dask(scoring, jobs, out, run_id, scheduler, quiet)

        return run_dask
    if name != "local":
        raise InputError(f"engine {name!r}: unknown engine; use local or dask")
    return run_local


def _check_unchanged(jobs: Sequence[Job], now: Sequence[InputFile]) -> None:
    for job, seen in zip(jobs, now, strict=True):
        if seen.sha256 != job.source.sha256:
            raise OutputError(
                f"{job.source.path}: changed while it was being scored; rerun when the file "
                "is complete (its output may mix old and new records)"
            )


def _stage_run(
    out: Path, run: run_report.RunTables, summary: dict[str, Any], page: str | None,
    run_id: str,
) -> list[tuple[Path, Path]]:
    """The run's tables and page, staged beside their names: (temporary, final)."""
    files: list[tuple[Path, Callable[[Path], object]]] = [
        (out / CLUSTERS_CSV, lambda p: write.put_csv(p, run.clusters)),
        (out / NEW_TYPES_CSV, lambda p: write.put_csv(p, run.new_types)),
        (out / FEATURES_CSV, lambda p: write.put_csv(p, run.features)),
        (out / SUMMARY, lambda p: write.put_text(p, write.to_json(summary))),
    ]
    if page is not None:
        files.append((out / REPORT_HTML, lambda p: write.put_text(p, page)))
    staged: list[tuple[Path, Path]] = []
    try:
        for path, fill in files:
            staged.append((write.stage(path, fill, run_id, then=NOT_RECORDED), path))
    except BaseException:
        write.discard(staged)
        raise
    return staged


def _warn_other_model(scored_by: dict[Path, str], model_id: str) -> None:
    """Inputs skipped as already scored, but by another model (a retrain, a rollback):
    their outputs keep that model's verdicts."""
    others = sorted({m for m in scored_by.values() if m != model_id})
    if others:
        count = sum(m != model_id for m in scored_by.values())
        log.warning("%d input(s) skipped as already scored were scored by model %s, not %s; "
                    "their outputs keep its verdicts (pass --rescore to score them with %s)",
                    count, ", ".join(others), model_id, model_id)


def _warn_exported_differently(scoring: Scoring, tally: Tally, specs: Sequence[str]) -> None:
    """A categorical feature none of whose values the model knows, or a numeric one empty
    in every record, is usually exported differently than at fit (case, codes instead of
    names, a renamed source field): said once per run."""
    for col in scoring.art.schema.numeric:
        if tally.rows and tally.missing.get(col, 0) >= tally.rows:
            log.warning(
                "%s: numeric column '%s' is empty in all %d records; each is scored as if it "
                "held the fit's typical value, so check that the column is exported as at fit",
                ", ".join(specs), col, tally.rows,
            )
    for col in scoring.art.schema.categorical:
        if tally.rows and tally.other.get(col, 0) >= tally.rows:
            known = ", ".join(repr(v) for v in scoring.art.normaliser.categories[col][:5])
            log.warning(
                "%s: column '%s' has no value the model knows in any of the %d records "
                "(known: %s); all are scored as '(other)', so check that the column is "
                "exported as at fit (spelling, case, codes)",
                ", ".join(specs), col, tally.rows, known,
            )


@contextmanager
def _nothing_left_if_refused(out: Path, created: bool, state: Path) -> Iterator[None]:
    """A run refused or failed in an --out folder it created leaves no folder: once its
    locks are released (and a state it created removed), the folder goes if it holds
    nothing but the two lock files."""
    try:
        yield
    except BaseException:
        if created:
            ours = {out / OUT_LOCK, Path(f"{state}.lock")}
            try:
                held = set(out.iterdir())
                if held <= ours:
                    for path in held:
                        path.unlink(missing_ok=True)
                    out.rmdir()
            except OSError:
                pass  # another run came in meanwhile, or a read-only disk: left as it is
        raise


def _remove_leftovers(out: Path) -> None:
    """Temporary files of a killed run (we hold the lock, so no live run owns them)."""
    for tmp in out.rglob(".*.tmp"):
        if tmp.is_file() and _TMP_NAME.fullmatch(tmp.name):
            tmp.unlink(missing_ok=True)
    shutil.rmtree(out / WORK_NAME, ignore_errors=True)
