"""Scoring throughput: rows per second of `trafficsiam.scoring.score` beside an I/O floor,
peak memory at two input sizes, and a profile of where a score run spends its time.

Setup (in this process, not timed): a model fitted once on `synth.generate(20_000, seed=1)`
with `id` and `timestamp` ignored (the demo's settings, `pipelines/demo.sh`), and one
parquet input per size, `synth.generate(..., novel=True)` in chunks of at most 1,000,000
rows (seeds 2, 3, ...; ids renumbered so they stay unique) appended with a
`pyarrow.parquet.ParquetWriter`, so that 5,000,000 rows never sit in memory at once.

Per size, each run in a fresh subprocess (so the peak RSS, VmHWM, is that run's):

* `floor`: what any scorer must do at least, with no model: stream the same file with
  `pq.ParquetFile(pre_buffer=False).iter_batches`, as `score.iter_chunks` reads parquet,
  in record batches of `score.batch_size` rows (65,536), append the eight
  columns of the ts_* types (int64, string, float64 x 4, string, string; values
  sliced from arrays built once, so the floor costs no compute), write each batch with
  `pq.ParquetWriter` and its default compression (as `score` does), fsync the output
  (as `score` does before its rename). Both children start from the same interpreter
  (this script imports `_common`, which loads torch and pandas), so their peaks compare.
* `score`: `score(model_folder, file, out, state=<tmp>, rescore=True, quiet=True)` (with
  `--no-report`: `report=False`, no report.html), the
  library call behind `trafficsiam score`, model loading included. A few of the
  package's functions are wrapped with timers (called once per batch, negligible
  overhead) to split the run into stages; "other" is what no timer covers.

Then, once, a `score` run of the smallest size under cProfile (slower than the timed
run; read it for shares, not for seconds): top functions by cumulative and by own time,
the full profile saved to `bench/results/score_throughput[_quick].prof`
(`python -m pstats` or snakeviz read it).

Goals (the scoring-throughput issue): score >= 25 % of the floor's rows per second, and
the score run's peak RSS at the largest size within 10 % of that at the smallest.

    .venv/bin/python bench/score_throughput.py                # 1M and 5M rows
    .venv/bin/python bench/score_throughput.py --quick        # 200k and 400k rows
    .venv/bin/python bench/score_throughput.py --work /tmp/st # keep inputs + model there
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _common as common

CHUNK_ROWS = 1_000_000
FIT_ROWS, FIT_SEED, INPUT_SEED = 20_000, 1, 2


def _rss_mib() -> float:
    """Peak resident memory of this process so far, MiB.

    VmHWM, not `ru_maxrss`: Linux keeps ru_maxrss across fork and execve, so a child
    would report at least the parent's size at the fork (the parent holds torch and the
    generated data); VmHWM belongs to the address space, which execve replaces.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ------------------------------------------------------------------ setup (parent)


def fit_model(work: Path, source: str) -> Path:
    """The demo model fitted by the package at `source` (its digest), in `work`; reused
    when that code already fitted one there (the artifact format changes with the code)."""
    import torch

    from trafficsiam import api, synth
    from trafficsiam.config import build_config

    folder = work / f"model-{source}"
    if (folder / "manifest.json").is_file():
        return folder
    train = work / f"train-{FIT_ROWS}.parquet"
    synth.write(train, rows=FIT_ROWS, seed=FIT_SEED)
    cfg = build_config({"data": {"ignore": ["id", "timestamp"]}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # idle OpenMP threads spin on a busy 2-core machine (BENCHMARKS.md)
    try:
        api.fit(train, folder, cfg, force=True, quiet=True)
    finally:
        torch.set_num_threads(threads)
    return folder


def write_input(path: Path, rows: int) -> Path:
    """`rows` synthetic records with novel types, written chunk by chunk; reused if present
    with the right row count."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trafficsiam import synth

    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    writer: pq.ParquetWriter | None = None
    try:
        done = 0
        for i, start in enumerate(range(0, rows, CHUNK_ROWS)):
            n = min(CHUNK_ROWS, rows - start)
            frame = synth.generate(n, seed=INPUT_SEED + i, novel=True)
            if start:
                ids = np.arange(start + 1, start + n + 1)
                frame["id"] = pd.Series([f"f{j:08d}" for j in ids], dtype=str)
            table = pa.Table.from_pandas(frame, preserve_index=False,
                                         schema=writer.schema if writer else None)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            done += n
        assert writer is not None and done == rows
        writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------ children


# The columns the floor appends: score's TS_COLUMNS (checked by the parent, so that the
# floor's child does not import the package).
FLOOR_COLUMNS = ("ts_cluster", "ts_scenario", "ts_strength", "ts_novelty", "ts_anomaly",
                 "ts_p_good", "ts_verdict", "ts_new_type")


def run_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """Read, append the ts_*-typed columns, write: the least any scorer does."""
    rss_start = _rss_mib()
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    rss_imports = _rss_mib()
    bs = int(spec["batch_size"])
    rng = np.random.default_rng(0)
    cluster = rng.choice(np.array([0, 1, 2, -1]), bs, p=[0.8, 0.08, 0.08, 0.04])
    scenario = np.array(["good", "error_type_1", "error_type_2", None], dtype=object)[cluster]
    verdict = np.where(cluster == 0, "good", np.where(cluster > 0, "known_error", "outlier"))
    new_type = np.array([None, "new-1"], dtype=object)[(cluster < 0).astype(int)]
    filler = {
        "ts_cluster": pa.array(cluster, pa.int64()),
        "ts_scenario": pa.array(scenario, pa.string()),
        "ts_strength": pa.array(rng.random(bs), pa.float64()),
        "ts_novelty": pa.array(rng.random(bs) * 2, pa.float64()),
        "ts_anomaly": pa.array(rng.random(bs) * 3, pa.float64()),
        "ts_p_good": pa.array(rng.random(bs), pa.float64()),
        "ts_verdict": pa.array(verdict.astype(object), pa.string()),
        "ts_new_type": pa.array(new_type, pa.string()),
    }
    assert tuple(filler) == FLOOR_COLUMNS
    out = Path(spec["out"]) / "floor.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    stages = dict.fromkeys(("read", "append columns", "write", "fsync"), 0.0)
    cpu0, start = _cpu_s(), time.perf_counter()
    writer: pq.ParquetWriter | None = None
    rows = 0
    if spec.get("reader") == "dataset":  # diagnostic: the pyarrow.dataset scanner
        batches = ds.dataset(spec["input"], format="parquet").to_batches(
            batch_size=bs, use_threads=True)
    else:  # as trafficsiam.read.iter_chunks reads parquet: one row group at a time
        batches = pq.ParquetFile(spec["input"], pre_buffer=False).iter_batches(
            batch_size=bs, use_threads=True)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        t1 = time.perf_counter()
        stages["read"] += t1 - t0
        if batch is None:
            break
        table = pa.Table.from_batches([batch])
        n = table.num_rows
        for name, arr in filler.items():
            table = table.append_column(name, arr.slice(0, n))
        t2 = time.perf_counter()
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        stages["append columns"] += t2 - t1
        stages["write"] += time.perf_counter() - t2
        rows += n
    assert writer is not None
    t0 = time.perf_counter()
    writer.close()
    with open(out, "rb") as fh:
        os.fsync(fh.fileno())
    stages["fsync"] += time.perf_counter() - t0  # close writes the footer: counted here
    seconds = time.perf_counter() - start
    return {"kind": "floor", "reader": spec.get("reader", "parquetfile"), "rows": rows,
            "seconds": seconds, "cpu_s": _cpu_s() - cpu0,
            "stages": stages, "output_bytes": out.stat().st_size,
            "rss_start_mib": rss_start, "rss_after_imports_mib": rss_imports,
            "rss_peak_mib": _rss_mib()}


class _Stages:
    """Accumulated wall time per named stage, by wrapping functions in place."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.missing: list[str] = []

    def _add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:  # the package changed: report what could not be timed
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return

        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self._add(name, time.perf_counter() - t)

        setattr(owner, attr, timed)

    def wrap_iter(self, owner: Any, attr: str, name_of: Callable[..., str]) -> None:
        """A generator function: time spent producing each item, under name_of(args)."""
        fn = getattr(owner, attr, None)
        if fn is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return

        def timed(*a: Any, **kw: Any) -> Iterator[Any]:
            name = name_of(*a, **kw)
            it = fn(*a, **kw)
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self._add(name, time.perf_counter() - t)
                    return
                self._add(name, time.perf_counter() - t)
                yield item

        setattr(owner, attr, timed)


# (stage, parent stage or None): top-level stages add up to the run minus "other".
SCORE_STAGES = (
    ("load model", None), ("hash inputs", None), ("prepare scorer", None),
    ("pass 1 read", None), ("pass 1 assess", None), ("feature frame", "pass 1 assess"),
    ("normalise", "pass 1 assess"), ("embed", "pass 1 assess"),
    ("known scorer", "pass 1 assess"), ("neighbours", "known scorer"),
    ("pass 1 sample", None), ("discover", None), ("pass 2 read", None),
    ("pass 2 ts columns", None), ("pass 2 write", None), ("fsync", None),
)


def _instrument() -> _Stages:
    import pyarrow.parquet as pq

    from trafficsiam import artifact, read
    from trafficsiam.assign import Assigner
    from trafficsiam.calibrate import KnownScorer
    from trafficsiam.newtypes import Sample
    from trafficsiam.normalise import Normaliser
    from trafficsiam.scoring import batch, passes, run

    st = _Stages()
    st.wrap(artifact, "load", "load model")
    st.wrap(run, "describe", "hash inputs")
    st.wrap(batch.Scoring, "__init__", "prepare scorer")
    st.wrap_iter(read, "iter_chunks", lambda path, columns, *a, **kw:
                 "pass 1 read" if columns else "pass 2 read")
    st.wrap(batch.Scoring, "assess", "pass 1 assess")
    st.wrap(batch.Scoring, "feature_frame", "feature frame")
    st.wrap(Normaliser, "transform", "normalise")
    st.wrap(batch, "embed", "embed")
    st.wrap(KnownScorer, "assess", "known scorer")
    st.wrap(Assigner, "neighbours", "neighbours")
    st.wrap(Sample, "offer", "pass 1 sample")
    st.wrap(passes, "discover", "discover")
    st.wrap(passes, "finish", "pass 2 ts columns")
    st.wrap(pq.ParquetWriter, "write_table", "pass 2 write")
    st.wrap(os, "fsync", "fsync")
    return st


def run_score(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    rss_start = _rss_mib()
    import numpy as np  # noqa: F401  (imports counted in the baseline)
    import torch

    from trafficsiam.scoring import run as sc

    logging.getLogger("trafficsiam").setLevel(logging.WARNING)
    rss_imports = _rss_mib()
    out, state = Path(spec["out"]), Path(spec["state"])
    if spec.get("profile"):
        import cProfile
        import pstats

        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        result = sc.score(spec["model"], spec["input"], out, state=state, rescore=True,
                          quiet=True)
        prof.disable()
        seconds = time.perf_counter() - start
        prof.dump_stats(spec["profile"])
        stats = pstats.Stats(spec["profile"])
        return {"kind": "profile", "rows": result.summary["records"], "seconds": seconds,
                "top_cumulative": _top(stats, "cumulative", 25),
                "top_own": _top(stats, "tottime", 25), "rss_peak_mib": _rss_mib()}
    stages = _instrument()
    cpu0, start = _cpu_s(), time.perf_counter()
    result = sc.score(spec["model"], spec["input"], out, state=state, rescore=True, quiet=True,
                      report=spec.get("report", True))
    seconds = time.perf_counter() - start
    cpu = _cpu_s() - cpu0
    output = result.outputs[0][1]
    return {"kind": "score", "rows": result.summary["records"], "seconds": seconds,
            "cpu_s": cpu, "stages": stages.seconds, "stage_calls": stages.calls,
            "untimed": stages.missing, "verdicts": result.summary["verdicts"],
            "new_types": len(result.new_types), "output_bytes": output.stat().st_size,
            "torch_threads": torch.get_num_threads(),
            "rss_start_mib": rss_start, "rss_after_imports_mib": rss_imports,
            "rss_peak_mib": _rss_mib()}


def _where(filename: str) -> str:
    for marker in ("site-packages/", str(common.REPO) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _top(stats: Any, key: str, n: int) -> list[dict[str, Any]]:
    """The n heaviest functions of a pstats.Stats by `key` (cumulative or tottime)."""
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _) in stats.stats.items():
        name = func if filename == "~" else f"{_where(filename)}:{line}({func})"
        rows.append({"function": name, "calls": nc, "own_s": tt, "cumulative_s": ct,
                     "primitive_calls": cc})
    field = "cumulative_s" if key == "cumulative" else "own_s"
    rows.sort(key=lambda r: -r[field])
    return rows[:n]


# ------------------------------------------------------------------ parent


def spawn(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    tag = f"{spec['kind']}-{spec.get('reader', '')}-{spec['rows']}-{spec.get('repeat', 0)}"
    spec_path, result_path = tmp / f"spec-{tag}.json", tmp / f"result-{tag}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path),
           "--child-result", str(result_path)]
    load_before = _load()
    proc = subprocess.run(cmd, cwd=common.REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed (exit {proc.returncode}): {' '.join(cmd)}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result.update(load_before=load_before, load_after=_load(), repeat=spec.get("repeat", 0))
    shutil.rmtree(spec["out"], ignore_errors=True)  # outputs are large; keep the disk free
    return result


def summarise(runs: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        floor = [r for r in runs if r["kind"] == "floor" and r["reader"] == "parquetfile"
                 and r["rows"] == n]
        score = [r for r in runs if r["kind"] == "score" and r["rows"] == n]
        f_rate = max(n / r["seconds"] for r in floor)  # best of the repeats
        s_rate = max(n / r["seconds"] for r in score)
        rows.append({
            "rows": n,
            "floor s": min(r["seconds"] for r in floor),
            "floor rows/s": f_rate,
            "score s": min(r["seconds"] for r in score),
            "score rows/s": s_rate,
            "score / floor": s_rate / f_rate,
            "score CPU s": min(r["cpu_s"] for r in score),
            "floor peak RSS MiB": max(r["rss_peak_mib"] for r in floor),
            "score peak RSS MiB": max(r["rss_peak_mib"] for r in score),
            "RSS after imports MiB (floor / score)": "{:.0f} / {:.0f}".format(
                max(r["rss_after_imports_mib"] for r in floor),
                max(r["rss_after_imports_mib"] for r in score)),
            "load before / after": " / ".join(
                f"{r['load_before'][0]:.2f}-{r['load_after'][0]:.2f}" for r in floor + score
                if r["load_before"] and r["load_after"]),
        })
    return rows


def stage_rows(runs: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """Stage seconds of the fastest score run per size, with shares of the run."""
    best = {n: min((r for r in runs if r["kind"] == "score" and r["rows"] == n),
                   key=lambda r: r["seconds"]) for n in sizes}
    out = []
    for name, parent in SCORE_STAGES:
        row: dict[str, Any] = {"stage": name if parent is None else f"  of which {name}"}
        for n, r in best.items():
            s = r["stages"].get(name)
            row[f"{n:,} rows s"] = float("nan") if s is None else s
            row[f"{n:,} share"] = float("nan") if s is None else s / r["seconds"]
        out.append(row)
    other: dict[str, Any] = {"stage": "other (state db, reports, spool I/O, ...)"}
    total: dict[str, Any] = {"stage": "**score() total**"}
    for n, r in best.items():
        top = sum(v for k, v in r["stages"].items()
                  if dict(SCORE_STAGES).get(k, "x") is None)
        other[f"{n:,} rows s"] = r["seconds"] - top
        other[f"{n:,} share"] = (r["seconds"] - top) / r["seconds"]
        total[f"{n:,} rows s"], total[f"{n:,} share"] = r["seconds"], 1.0
    return out + [other, total]


def report(payload: dict[str, Any]) -> None:
    table, runs, sizes = payload["summary"], payload["runs"], payload["sizes"]
    print("## Throughput and peak memory (best of the repeats)\n")
    print(common.markdown_table(table))
    print()
    ratio_ok = all(r["score / floor"] >= 0.25 for r in table)
    p_small, p_big = table[0]["score peak RSS MiB"], table[-1]["score peak RSS MiB"]
    growth = (p_big - p_small) / p_small
    ratios = ", ".join(f"{r['score / floor']:.1%}" for r in table)
    print(f"Goal score >= 25 % of the floor: {'met' if ratio_ok else 'NOT met'} ({ratios}).")
    print(f"Goal peak RSS within 10 % from {sizes[0]:,} to {sizes[-1]:,} rows: "
          f"{'met' if abs(growth) <= 0.10 else 'NOT met'} ({p_small:.0f} -> {p_big:.0f} MiB, "
          f"{growth:+.1%}).\n")
    print("## Stages of the score run (timers around package functions)\n")
    print(common.markdown_table(stage_rows(runs, sizes)))
    missing = sorted({m for r in runs if r["kind"] == "score" for m in r.get("untimed", [])})
    if missing:
        print(f"\nNot timed (no longer in the package): {', '.join(missing)}")
    floor = min((r for r in runs if r["kind"] == "floor" and r["reader"] == "parquetfile"
                 and r["rows"] == sizes[-1]), key=lambda r: r["seconds"])
    print(f"\nFloor at {sizes[-1]:,} rows: " + ", ".join(
        f"{k} {v:.2f} s" for k, v in floor["stages"].items()) + "\n")
    check = [{"reader": r["reader"], "rows": r["rows"], "rows/s": r["rows"] / r["seconds"],
              "read s": r["stages"]["read"], "peak RSS MiB": r["rss_peak_mib"]}
             for r in runs if r["kind"] == "floor" and r["repeat"] == 0]
    print("## Reader check: the floor with ParquetFile.iter_batches(pre_buffer=False) (as\n"
          "## score reads) and with the pyarrow.dataset scanner\n")
    print(common.markdown_table(sorted(check, key=lambda r: (r["reader"], r["rows"]))))
    print()
    prof = payload.get("profile")
    if prof:
        print(f"## cProfile of one score run, {prof['rows']:,} rows "
              f"({prof['seconds']:.1f} s under the profiler)\n")
        cols = ["function", "calls", "own_s", "cumulative_s"]
        print("Top 10 by cumulative time:\n")
        print(common.markdown_table(prof["top_cumulative"][:10], cols))
        print("\nTop 15 by own time:\n")
        print(common.markdown_table(prof["top_own"][:15], cols))
        print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000],
                    help="input sizes (default 1,000,000 and 5,000,000)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="floor/score pairs per size, alternated; the best is reported")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    ap.add_argument("--no-report", action="store_true",
                    help="score with report=False (no report.html: the page's fixed cost out)")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the inputs and the model, kept and reused "
                         "(default: a temporary folder, removed)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 200,000 and 400,000 rows")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        spec = json.loads(Path(args.child).read_text(encoding="utf-8"))
        result = run_floor(spec) if spec["kind"] == "floor" else run_score(spec)
        Path(args.child_result).write_text(json.dumps(result, default=str), encoding="utf-8")
        return 0

    from trafficsiam.contract import TS_COLUMNS

    if FLOOR_COLUMNS != TS_COLUMNS:  # the floor must write what score writes
        raise SystemExit(f"FLOOR_COLUMNS {FLOOR_COLUMNS} != contract.TS_COLUMNS {TS_COLUMNS}")
    if args.quick:
        args.rows = [200_000, 400_000]
    sizes = sorted(set(args.rows))
    machine = common.machine_info()
    print(f"# score_throughput\n\n{machine['cpu']}, {machine['cores']} cores, "
          f"{machine['ram_gib']} GiB, torch {machine['torch']}, load average at start "
          f"{machine['load_average_at_start']}\n{common.source_line(machine)}")
    tmp = Path(tempfile.mkdtemp(prefix="trafficsiam-bench-"))
    work = args.work or tmp
    work.mkdir(parents=True, exist_ok=True)
    name = "score_throughput_quick" if args.quick else "score_throughput"
    try:
        t = time.perf_counter()
        model = fit_model(work, machine["trafficsiam_source"]["sha256"])
        from trafficsiam import api

        batch_size = api.load(model).config.score.batch_size
        print(f"  model ready ({time.perf_counter() - t:.1f} s); batch size {batch_size}",
              file=sys.stderr)
        inputs = {}
        for n in sizes:
            t = time.perf_counter()
            inputs[n] = write_input(work / f"input-{n}.parquet", n)
            print(f"  input {n:,} rows ready ({time.perf_counter() - t:.1f} s, "
                  f"{inputs[n].stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)
        runs: list[dict[str, Any]] = []
        for n in sizes:
            for rep in range(args.repeats):
                for kind in ("floor", "score"):
                    print(f"  {kind} {n:,} rows (repeat {rep + 1}) ...", file=sys.stderr)
                    try:
                        runs.append(spawn({
                            "kind": kind, "rows": n, "repeat": rep, "input": str(inputs[n]),
                            "model": str(model), "batch_size": batch_size,
                            "out": str(tmp / f"out-{kind}-{n}"),
                            "state": str(tmp / f"state-{kind}-{n}-{rep}.db"),
                            "report": not args.no_report,
                        }, tmp))
                    except SystemExit as err:  # keep what ran: the package changes under us
                        common.write_json(f"{name}_partial", {
                            "machine": machine, "failed": str(err), "runs": runs})
                        raise
        for n in sizes:  # diagnostic, not in the summary: does the reader set peak memory?
            print(f"  floor (dataset reader) {n:,} rows ...", file=sys.stderr)
            runs.append(spawn({
                "kind": "floor", "reader": "dataset", "rows": n, "input": str(inputs[n]),
                "batch_size": batch_size, "out": str(tmp / f"out-floor-pf-{n}")}, tmp))
        profile = None
        if not args.no_profile:
            common.RESULTS.mkdir(parents=True, exist_ok=True)
            prof_path = common.RESULTS / f"{name}.prof"
            print(f"  profile {sizes[0]:,} rows ...", file=sys.stderr)
            profile = spawn({"kind": "score", "rows": sizes[0], "input": str(inputs[sizes[0]]),
                             "model": str(model), "out": str(tmp / "out-profile"),
                             "state": str(tmp / "state-profile.db"),
                             "profile": str(prof_path)}, tmp)
            profile["file"] = str(prof_path.relative_to(common.REPO))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = _load()
    print(f"load average at end {load_end}\n")
    source_end = common.source_digest()
    if source_end["sha256"] != machine["trafficsiam_source"]["sha256"]:
        print(f"**trafficsiam changed during the run**: now {source_end['sha256']} "
              f"({source_end['newest_file']}, {source_end['newest_mtime']})\n")
    payload = {"machine": machine, "trafficsiam_source_at_end": source_end,
               "load_average_at_end": load_end, "args": vars(args),
               "sizes": sizes, "batch_size": batch_size, "summary": summarise(runs, sizes),
               "runs": runs, "profile": profile}
    report(payload)
    path = common.write_json(name, payload)
    print(f"results: {path.relative_to(common.REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
