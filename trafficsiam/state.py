"""State store of scheduled `trafficsiam score` runs: what was scored, by which run.

A nightly `trafficsiam score MODEL 'landing/*.parquet' --out scored/ --state runs.db`
records each processed input (resolved path, size, SHA-256) and each run in an embedded
SQLite file, so a rerun scores only new or changed inputs. Two tables, schema version in
`PRAGMA user_version`:

    runs     run_id, status (running | ok | failed | interrupted), started, finished,
             model_id, out, inputs, rows, summary (JSON text), error
    inputs   path (key), sha256, bytes, rows, output, run_id, model_id, scored_at

Journal mode: the default rollback journal with `synchronous=FULL`, not WAL. Only one
process writes at a time (the lock below) and a run makes three tiny transactions, so
WAL's concurrent readers buy nothing; the rollback journal keeps the state one file (no
`-wal`/`-shm` companions to lose when it is copied) and needs no shared memory, so it also
works on mounts where WAL does not. A SIGKILL or power loss mid-transaction leaves a hot
journal that SQLite rolls back on the next open: a run's results are all there or none.

Lock: `fcntl.flock` on the sidecar `<state>.lock`. The kernel drops it when the holder's
file is closed, including when the process dies, so a killed run never wedges the state;
the file is never deleted, as deleting it would let two waiters lock two different files.
The descriptor is not inherited by child processes. Times are UTC ISO 8601 text.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from trafficsiam.contract import STATE_NAME
from trafficsiam.errors import InputError, OutputError, TrafficSiamError

SCHEMA_VERSION = 1
SCHEMA = ("""
CREATE TABLE runs (
    run_id   TEXT PRIMARY KEY,
    status   TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
    started  TEXT NOT NULL,
    finished TEXT,
    model_id TEXT NOT NULL,
    out      TEXT NOT NULL,
    inputs   INTEGER NOT NULL,
    rows     INTEGER,
    summary  TEXT,
    error    TEXT
)""", """
CREATE TABLE inputs (
    path      TEXT PRIMARY KEY,
    sha256    TEXT NOT NULL,
    bytes     INTEGER NOT NULL CHECK (bytes >= 0),
    rows      INTEGER NOT NULL CHECK (rows >= 0),
    output    TEXT NOT NULL,
    run_id    TEXT NOT NULL REFERENCES runs (run_id),
    model_id  TEXT NOT NULL,
    scored_at TEXT NOT NULL
)""")
# how `stored` marks a path whose name is not UTF-8
HEX = "hex:"
RUN_COLUMNS = "run_id, status, started, finished, model_id, inputs, rows, error, out"
FIX = "pass another --state file or remove it"


class StateLocked(TrafficSiamError):
    """Another run holds the state's lock (exit code 75, EX_TEMPFAIL: try again later)."""

    exit_code = 75


@contextmanager
def exclusive(lock_path: Path, wait: float, poll: float, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (flock; released with the process) for the
    block, waiting up to `wait` seconds; else `StateLocked` with `busy`, the holder and the
    fix. The holder (pid, host, since) is written into the file while held."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    holder = os.pread(fd, 4096, 0).decode(errors="replace").split()
                    raise StateLocked(
                        f"{busy} ({', '.join(holder) or 'holder not recorded yet'}); wait "
                        "for it to finish, or pass --wait SECONDS to queue behind it") from None
                time.sleep(min(poll, left))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} host={socket.gethostname()} since={_now()}\n"
                  .encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # still ours: the next holder starts from an empty file
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


@dataclass(frozen=True)
class InputFile:
    """One input as seen now: its resolved absolute path, size and content hash."""

    path: Path
    bytes: int
    sha256: str


def describe(path: Path, chunk: int = 1 << 20) -> InputFile:
    """Stat `path` and hash its content in `chunk`-sized reads (constant memory)."""
    try:
        resolved = path.resolve(strict=True)
        digest, size = hashlib.sha256(), 0
        with resolved.open("rb") as f:
            expected = os.fstat(f.fileno()).st_size
            while block := f.read(chunk):
                digest.update(block)
                size += len(block)
    except OSError as e:
        raise InputError(f"{path}: cannot read input ({e.strerror}); check the path") from e
    if size != expected:  # a file still being uploaded into the landing folder
        raise InputError(f"{path}: changed while being hashed ({expected} bytes, then {size}); "
                         "wait until it is completely written")
    return InputFile(resolved, size, digest.hexdigest())


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of `path`, None when it is missing: the same file, not the same name."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _is_locked(err: sqlite3.Error) -> bool:
    return "locked" in str(err) or "busy" in str(err)


def _locked(path: Path) -> str:
    """A state another process holds open in a write (after sqlite's 30 s): never 'remove
    it', which would lose the history of a database in use."""
    return (f"{path}: the state database is locked by another process (a tool holding it "
            "open in a write, or a run on another machine sharing the file); close that "
            "tool or wait for it, then run again")


def stored(path: Path | str) -> str:
    """A path as the state stores it: its text; a name that is not UTF-8 (sqlite takes
    only UTF-8) as `hex:` and its bytes (an absolute path never starts so)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return HEX + os.fsencode(text).hex()
    return text


def loaded(text: str) -> Path:
    """The path `stored` stored."""
    return Path(os.fsdecode(bytes.fromhex(text[len(HEX):])) if text.startswith(HEX) else text)


class StateStore:
    """The state database at `path` (created with its parent folder if missing).

    A database this store created is removed again when the run under its lock fails
    and nothing but that run is recorded in it: a refused first run leaves no state."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        if self.path.is_dir():  # "remove it", the usual fix, would lose what the folder holds
            raise InputError(f"{self.path}: is a folder, not a state database file; pass a "
                             f"file path to --state, e.g. {self.path / STATE_NAME}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder of the path should be, no permission
            raise InputError(f"{self.path}: cannot create the state database's folder "
                             f"{e.filename or self.path.parent} ({e.strerror}); pass a --state "
                             "path whose folder can be created") from None
        self._begun: set[str] = set()
        self._open()

    def _open(self) -> None:
        self.created = not self.path.exists()
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise InputError(f"{self.path}: cannot open the state database ({e}); {FIX}") from e
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            with self._transaction():  # re-read inside: two first runs may race to create
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if version == 0 and tables == 0:
                    for statement in SCHEMA:  # not executescript: it would COMMIT early
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version != SCHEMA_VERSION:
                    raise InputError(f"{self.path}: not a trafficsiam state database of schema "
                                     f"version {SCHEMA_VERSION} (found {version}); {FIX}")
            self._identity = _identity(self.path)
        except sqlite3.DatabaseError as e:
            self._db.close()
            if _is_locked(e):
                raise InputError(_locked(self.path)) from None
            raise InputError(f"{self.path}: not a usable SQLite state database ({e}); "
                             f"{FIX}") from e
        except BaseException:
            self._db.close()
            raise

    def _reopen_if_replaced(self) -> None:
        """Called with the lock held: while this store waited for it, a refused first run
        may have removed the file this store opened; a write to it would be lost."""
        if _identity(self.path) != self._identity:
            self._db.close()
            self._open()

    def _discard_if_new(self) -> None:
        """Called with the lock held, as the run under it fails: remove the database when
        this store created it and it records nothing but the runs begun through it."""
        if not self.created:
            return
        ours = sorted(self._begun)
        marks = ", ".join("?" * len(ours)) or "NULL"
        try:
            other = self._db.execute(
                f"SELECT (SELECT count(*) FROM runs WHERE run_id NOT IN ({marks})) "
                "+ (SELECT count(*) FROM inputs)", ours).fetchone()[0]
        except sqlite3.Error:
            return  # unreadable now: keep it, the run's own error says what went wrong
        if other == 0:
            self._db.close()
            for path in (self.path, Path(f"{self.path}-journal")):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails halfway
        for want of it; anything raised inside rolls the whole transaction back."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write that SQLite cannot make (a full disk, a read-only file): one line."""
        try:
            yield
        except sqlite3.OperationalError as e:  # not IntegrityError: that is our bug
            if _is_locked(e):
                raise OutputError(_locked(self.path)) from None
            raise OutputError(f"{self.path}: cannot write the state database ({e}); free "
                              "space on that disk, or pass another --state") from None

    @contextmanager
    def lock(self, wait: float = 0.0, poll: float = 0.2) -> Iterator[None]:
        """Hold the exclusive run lock for the block, waiting up to `wait` seconds for it.
        A block that raises, in a database this store created and nothing else wrote to,
        removes the database (the lock file stays: removing it would let two runs lock
        two different files)."""
        with exclusive(Path(f"{self.path}.lock"), wait, poll,
                       f"{self.path}: another trafficsiam score run holds this state"):
            self._reopen_if_replaced()
            try:
                yield
            except BaseException:
                self._discard_if_new()
                raise

    def pending(self, files: Sequence[InputFile],
                rescore: bool = False) -> tuple[list[InputFile], list[InputFile]]:
        """Split `files` into (to_score, skipped), in input order: an input is skipped when a
        finished run recorded the same path with the same SHA-256 and its output is still
        there, unless `rescore`."""
        if rescore:
            return list(files), []
        # an input is done while its scored output is still there: deleting an output (or
        # the --out folder, with the state elsewhere) scores that input again
        done = {(path, sha): output for path, sha, output in
                self._db.execute("SELECT path, sha256, output FROM inputs")}
        to_score: list[InputFile] = []
        skipped: list[InputFile] = []
        for f in files:
            output = done.get((stored(f.path), f.sha256))
            (skipped if output is not None and loaded(output).is_file() else to_score
             ).append(f)
        return to_score, skipped

    def scored_by(self, files: Sequence[InputFile]) -> dict[Path, str]:
        """The model id that last scored each of `files` (by path), where one did."""
        wanted = {stored(f.path): f.path for f in files}
        return {wanted[path]: model for path, model in
                self._db.execute("SELECT path, model_id FROM inputs") if path in wanted}

    def writers(self, outputs: Mapping[Path, Path]) -> dict[Path, Path]:
        """For each input -> output path about to be written, another input recorded with
        that output (an earlier run scored a file of the same name into this folder)."""
        owner = {loaded(output): loaded(path) for path, output in
                 self._db.execute("SELECT path, output FROM inputs")}
        return {path: owner[out] for path, out in outputs.items()
                if out in owner and owner[out] != path}

    def begin_run(self, run_id: str, model_id: str, inputs: Sequence[InputFile],
                  out: Path) -> None:
        """Record a run as 'running'. Any other 'running' run died (the caller holds the
        lock), so it is marked 'interrupted' first."""
        now = _now()
        self._begun.add(run_id)
        with self._writing(), self._transaction():
            self._db.execute(
                "UPDATE runs SET status = 'interrupted', finished = ?, "
                "error = 'the process ended before the run finished' WHERE status = 'running'",
                (now,))
            self._db.execute(
                "INSERT INTO runs (run_id, status, started, model_id, out, inputs) "
                "VALUES (?, 'running', ?, ?, ?, ?)",
                (run_id, now, model_id, stored(Path(out).resolve()), len(inputs)))

    def finish_run(self, run_id: str, outputs: Mapping[InputFile, tuple[Path, int]],
                   summary: dict[str, Any]) -> None:
        """In one transaction, record every scored input (input -> (output path, rows)) and
        mark the run 'ok': after a crash either all of it is there or none."""
        summary_json = json.dumps(summary, sort_keys=True, default=str)
        now = _now()
        with self._writing(), self._transaction():
            run = self._db.execute("SELECT model_id, status FROM runs WHERE run_id = ?",
                                   (run_id,)).fetchone()
            if run is None or run["status"] != "running":
                raise ValueError(f"{self.path}: run {run_id!r} is not running; "
                                 "call begin_run before finish_run")
            self._db.executemany(
                "INSERT INTO inputs (path, sha256, bytes, rows, output, run_id, model_id, "
                "scored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "sha256 = excluded.sha256, bytes = excluded.bytes, rows = excluded.rows, "
                "output = excluded.output, run_id = excluded.run_id, "
                "model_id = excluded.model_id, scored_at = excluded.scored_at",
                [(stored(f.path), f.sha256, f.bytes, rows, stored(Path(output).resolve()), run_id,
                  run["model_id"], now) for f, (output, rows) in outputs.items()])
            self._db.execute(
                "UPDATE runs SET status = 'ok', finished = ?, rows = ?, summary = ? "
                "WHERE run_id = ?",
                (now, sum(rows for _, rows in outputs.values()), summary_json, run_id))

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark the run 'failed' with the error text; the inputs it touched stay pending."""
        with self._writing(), self._transaction():
            self._db.execute("UPDATE runs SET status = 'failed', finished = ?, error = ? "
                             "WHERE run_id = ?",
                             (_now(), error.encode("utf-8", "backslashreplace").decode(),
                              run_id))

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest `limit` runs, newest first."""
        rows = self._db.execute(f"SELECT {RUN_COLUMNS} FROM runs "
                                "ORDER BY started DESC, rowid DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def summaries(self, limit: int = 400) -> list[dict[str, Any]]:
        """The latest `limit` finished ('ok') runs, oldest first, each with its summary
        parsed (the report's trend and its comparison with the previous run)."""
        rows = self._db.execute(
            "SELECT run_id, started, finished, model_id, rows, summary FROM runs "
            "WHERE status = 'ok' ORDER BY started DESC, rowid DESC LIMIT ?", (limit,))
        out = []
        for r in rows:
            run = dict(r)
            try:
                run["summary"] = json.loads(run["summary"] or "{}")
            except json.JSONDecodeError:
                run["summary"] = {}
            out.append(run)
        return out[::-1]

    def processed(self) -> list[dict[str, Any]]:
        """Every recorded input with the run that scored it last, by path."""
        return [dict(r) for r in self._db.execute("SELECT * FROM inputs ORDER BY path")]
