"""State store: skipping already scored inputs, atomic run records, the run lock."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trafficsiam.errors import InputError, TrafficSiamError
from trafficsiam.state import InputFile, StateLocked, StateStore, describe

REPO = Path(__file__).resolve().parents[1]

# Run in a child process: flock conflicts between processes are what the lock is for.
TRY_LOCK = """
import sys
from pathlib import Path
from trafficsiam.state import StateLocked, StateStore
try:
    with StateStore(Path(sys.argv[1])) as store, store.lock(wait=float(sys.argv[2])):
        print("acquired", flush=True)
        if len(sys.argv) > 3:
            __import__("time").sleep(float(sys.argv[3]))
except StateLocked as e:
    print(e)
    sys.exit(e.exit_code)
"""


def run_child(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


def write(path: Path, content: bytes) -> InputFile:
    path.write_bytes(content)
    return describe(path)


@pytest.fixture
def store(tmp_path: Path):
    with StateStore(tmp_path / "state" / "runs.db") as s:
        yield s


def test_describe_hashes_content_and_size(tmp_path: Path) -> None:
    content = os.urandom(3000)
    f = write(tmp_path / "a.parquet", content)
    assert f.sha256 == hashlib.sha256(content).hexdigest()
    assert f.bytes == len(content)
    assert f == describe(tmp_path / "." / "a.parquet", chunk=7)  # resolved, chunking irrelevant
    assert f.path.is_absolute()


def test_describe_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.parquet"):
        describe(tmp_path / "nope.parquet")


def test_pending_skips_scored_and_rescores_changed(store: StateStore, tmp_path: Path) -> None:
    a, b, c = (write(tmp_path / f"{n}.parquet", n.encode()) for n in "abc")
    assert store.pending([c, a, b]) == ([c, a, b], [])
    store.begin_run("r1", "m1", [a, b], tmp_path / "out")
    (tmp_path / "out").mkdir()
    for name in ("a", "b"):
        (tmp_path / "out" / f"{name}.parquet").write_bytes(b"scored")
    store.finish_run("r1", {a: (tmp_path / "out/a.parquet", 3), b: (tmp_path / "out/b.parquet", 4)},
                     {"alerts": 1})
    assert store.pending([c, a, b]) == ([c], [a, b])
    (tmp_path / "out" / "b.parquet").unlink()  # an output deleted: its input is due again
    assert store.pending([c, a, b]) == ([c, b], [a])
    (tmp_path / "out" / "b.parquet").write_bytes(b"scored")
    a2 = write(a.path, b"a changed")  # same path, new content
    assert store.pending([c, a2, b]) == ([c, a2], [b])
    assert store.pending([c, a2, b], rescore=True) == ([c, a2, b], [])
    assert store.runs()[0] | {"started": None, "finished": None} == {
        "run_id": "r1", "status": "ok", "started": None, "finished": None, "model_id": "m1",
        "inputs": 2, "rows": 7, "error": None, "out": str((tmp_path / "out").resolve())}
    assert [(p["path"], p["rows"], p["run_id"]) for p in store.processed()] == [
        (str(a.path), 3, "r1"), (str(b.path), 4, "r1")]


def test_state_survives_reopening(tmp_path: Path) -> None:
    a = write(tmp_path / "a.parquet", b"a")
    with StateStore(tmp_path / "runs.db") as s:
        s.begin_run("r1", "m1", [a], tmp_path)
        s.finish_run("r1", {a: (tmp_path / "o.parquet", 1)}, {})
    (tmp_path / "o.parquet").write_bytes(b"scored")
    with StateStore(tmp_path / "runs.db") as s:
        assert s.pending([a]) == ([], [a])


def test_finish_run_is_atomic(store: StateStore, tmp_path: Path) -> None:
    a, b = (write(tmp_path / f"{n}.parquet", n.encode()) for n in "ab")
    store.begin_run("r1", "m1", [a, b], tmp_path)
    # The second row breaks CHECK (rows >= 0) after the first row was inserted.
    with pytest.raises(sqlite3.IntegrityError):
        store.finish_run("r1", {a: (tmp_path / "a.out", 5), b: (tmp_path / "b.out", -1)}, {})
    assert store.processed() == []
    assert store.runs()[0]["status"] == "running"
    assert store.pending([a, b]) == ([a, b], [])


def test_sigkill_inside_finish_run_commits_nothing(tmp_path: Path) -> None:
    db, a = tmp_path / "runs.db", write(tmp_path / "a.parquet", b"a")
    # outputs.values() is read after the inserts and before COMMIT: die right there.
    script = f"""
import os, signal
from pathlib import Path
from trafficsiam.state import StateStore, describe
class Dying(dict):
    def values(self):
        os.kill(os.getpid(), signal.SIGKILL)
store = StateStore(Path({str(db)!r}))
a = describe(Path({str(a.path)!r}))
store.begin_run("r1", "m1", [a], Path("."))
store.finish_run("r1", Dying({{a: (Path("a.out"), 5)}}), {{}})
"""
    child = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with StateStore(db) as s:
        assert s.processed() == []
        assert s.runs()[0]["status"] == "running"
        s.begin_run("r2", "m1", [a], tmp_path)
        assert [(r["run_id"], r["status"]) for r in s.runs()] == [
            ("r2", "running"), ("r1", "interrupted")]


def test_begin_run_marks_dead_running_run_interrupted(store: StateStore, tmp_path: Path) -> None:
    store.begin_run("r1", "m1", [], tmp_path)
    store.begin_run("r2", "m1", [], tmp_path)
    r2, r1 = store.runs()
    assert (r1["run_id"], r1["status"], r2["status"]) == ("r1", "interrupted", "running")
    assert r1["finished"] is not None


def test_fail_run_records_error(store: StateStore, tmp_path: Path) -> None:
    a = write(tmp_path / "a.parquet", b"a")
    store.begin_run("r1", "m1", [a], tmp_path)
    store.fail_run("r1", "InputError: bad column")
    run = store.runs()[0]
    assert (run["status"], run["error"]) == ("failed", "InputError: bad column")
    assert store.pending([a]) == ([a], [])


def test_finish_run_needs_a_running_run(store: StateStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="begin_run"):
        store.finish_run("ghost", {}, {})


def test_garbage_file_is_input_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    db.write_bytes(b"this is not a database at all, just some text " * 50)
    with pytest.raises(InputError, match=f"{db}.*remove it"):
        StateStore(db)


def test_unknown_schema_version_is_input_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA user_version = 7")
    with pytest.raises(InputError, match=f"{db}.*found 7.*remove it"):
        StateStore(db)


def test_foreign_sqlite_db_is_input_error(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(InputError, match="other.db"):
        StateStore(db)


def test_lock_excludes_other_process_then_releases(store: StateStore) -> None:
    with store.lock():
        held = Path(f"{store.path}.lock").read_text()
        assert held.startswith(f"pid={os.getpid()} host=") and " since=" in held
        child = run_child(str(store.path), "0")
        assert child.returncode == StateLocked.exit_code
        assert f"pid={os.getpid()}," in child.stdout and "--wait SECONDS" in child.stdout
    child = run_child(str(store.path), "0")
    assert (child.returncode, child.stdout) == (0, "acquired\n")
    assert Path(f"{store.path}.lock").exists()


def test_lock_waiter_queues_until_released(store: StateStore) -> None:
    held = store.lock()
    held.__enter__()
    threading.Timer(0.3, held.__exit__, (None, None, None)).start()
    start = time.monotonic()
    with StateStore(store.path) as other, other.lock(wait=1.5, poll=0.05):
        waited = time.monotonic() - start
    assert 0.25 <= waited < 1.5


def test_lock_times_out(store: StateStore) -> None:
    with store.lock(), StateStore(store.path) as other:
        start = time.monotonic()
        with pytest.raises(StateLocked, match=f"{store.path}: another"), other.lock(wait=0.2):
            pass
        assert time.monotonic() - start >= 0.2


def test_lock_released_when_holder_is_killed(store: StateStore) -> None:
    holder = subprocess.Popen([sys.executable, "-c", TRY_LOCK, str(store.path), "0", "30"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "acquired\n"
        with pytest.raises(StateLocked, match=f"pid={holder.pid},"), store.lock():
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    with store.lock():
        pass


# -- a refused first run leaves no state (issue 18, item 3) -----------------------------


def _failing_run(store: StateStore, run_id: str, tmp_path: Path) -> None:
    a = write(tmp_path / f"{run_id}.parquet", run_id.encode())
    with pytest.raises(InputError), store.lock():
        store.begin_run(run_id, "m1", [a], tmp_path)
        store.fail_run(run_id, "InputError: bad column")
        raise InputError("bad column")


def test_a_failed_run_removes_the_state_it_created(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with StateStore(db) as store:
        assert db.is_file()
        _failing_run(store, "r1", tmp_path)
    assert not db.exists() and not Path(f"{db}-journal").exists()


def test_a_failed_run_keeps_a_state_that_was_there(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    StateStore(db).close()  # an empty state, but not this run's
    with StateStore(db) as store:
        _failing_run(store, "r1", tmp_path)
    with StateStore(db) as store:
        assert [(r["run_id"], r["status"]) for r in store.runs()] == [("r1", "failed")]


def test_a_failed_run_keeps_a_new_state_another_run_wrote_to(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first, second = StateStore(db), StateStore(db)  # two first runs racing to create it
    a = write(tmp_path / "a.parquet", b"a")
    with second.lock():
        second.begin_run("r-ok", "m1", [a], tmp_path)
        second.finish_run("r-ok", {a: (tmp_path / "a.out", 1)}, {})
    _failing_run(first, "r-bad", tmp_path)
    first.close()
    second.close()
    with StateStore(db) as store:
        assert {r["run_id"]: r["status"] for r in store.runs()} == {"r-ok": "ok",
                                                                    "r-bad": "failed"}
        assert [p["run_id"] for p in store.processed()] == ["r-ok"]


def test_a_run_waiting_on_a_state_that_was_removed_writes_a_new_one(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first, second = StateStore(db), StateStore(db)  # both opened it; first locks first
    _failing_run(first, "r-bad", tmp_path)
    first.close()
    assert not db.exists()
    a = write(tmp_path / "a.parquet", b"a")
    with second.lock():  # the file second opened is gone: its run must not go with it
        second.begin_run("r-ok", "m1", [a], tmp_path)
        second.finish_run("r-ok", {a: (tmp_path / "a.out", 1)}, {})
    second.close()
    with StateStore(db) as store:
        assert [(r["run_id"], r["status"]) for r in store.runs()] == [("r-ok", "ok")]


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_a_state_path_that_cannot_be_a_file_is_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "scored").mkdir()
    (tmp_path / "notes.txt").write_text("keep me")
    path = tmp_path / ("scored" if where == "a folder" else "notes.txt/state.db")
    with pytest.raises(InputError) as err:
        StateStore(path)
    text = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in text
    if where == "a folder":
        assert text == (f"{path}: is a folder, not a state database file; pass a file path "
                        f"to --state, e.g. {path / 'trafficsiam-state.db'}")
    else:
        assert text == (f"{path}: cannot create the state database's folder "
                        f"{tmp_path / 'notes.txt'} (File exists); pass a --state path whose "
                        "folder can be created")
    # nothing of the user's changed: the folder is empty, the file as it was
    assert list((tmp_path / "scored").iterdir()) == []
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_state_locked_by_another_process_is_one_line_that_never_says_remove_it(
        tmp_path, monkeypatch):
    """Issue 18: another process holds a write on the database (sqlite's timeout cut
    short here): the message says to wait or close that tool, not to remove the file."""
    import sqlite3

    from trafficsiam import state as state_module

    path = tmp_path / "state.db"
    StateStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    real_connect = sqlite3.connect
    monkeypatch.setattr(state_module.sqlite3, "connect",
                        lambda *a, **kw: real_connect(*a, **{**kw, "timeout": 0.1}))
    try:
        with pytest.raises(TrafficSiamError) as err:
            StateStore(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked by another process" in str(err.value)
    assert "remove" not in str(err.value) and "\n" not in str(err.value)
