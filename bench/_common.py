"""Shared helpers of the benchmarks: locating the real data sets, preparing a
normalised matrix the way `trafficsiam.api.fit` does, machine facts, output.

Run the benchmarks from the repository root, e.g. `.venv/bin/python bench/fit_stages.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trafficsiam.write import json_default

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

NSL_KDD_LABELS = ("attack", "category", "is_attack", "difficulty")


# ------------------------------------------------------------------ data sets


def datasets_dir() -> Path | None:
    """The shared data folder: $TRAFFICSIAM_DATASETS when set, else ../shared/datasets
    beside the repository; None when that folder does not exist."""
    env = os.environ.get("TRAFFICSIAM_DATASETS")
    path = Path(env) if env else REPO.parent / "shared" / "datasets"
    return path if path.is_dir() else None


def nsl_kdd(name: str = "KDDTrain+.parquet") -> Path | None:
    """Path of an NSL-KDD file, or None (with a message on stderr) when it is absent."""
    root = datasets_dir()
    path = root / "nsl-kdd" / name if root is not None else None
    if path is None or not path.is_file():
        where = os.environ.get("TRAFFICSIAM_DATASETS") or str(REPO.parent / "shared" / "datasets")
        print(
            f"NSL-KDD {name} not found under {where}/nsl-kdd/; set TRAFFICSIAM_DATASETS to the "
            "folder holding nsl-kdd/ to include the real-data cases (skipped now)",
            file=sys.stderr,
        )
        return None
    return path


def require_nsl_kdd(name: str = "KDDTrain+.parquet") -> Path:
    """Like `nsl_kdd` but exits with status 2 when the file is absent."""
    path = nsl_kdd(name)
    if path is None:
        raise SystemExit(2)
    return path


def nsl_kdd_data_config(label: str) -> dict[str, Any]:
    """`data:` section for NSL-KDD with `label` as the label and the other labels ignored."""
    return {
        "label_column": label,
        "good_label": "normal",
        "ignore": [c for c in NSL_KDD_LABELS if c != label],
    }


def prepare_matrix(
    frame: pd.DataFrame, data_cfg: dict[str, Any], source: str = "frame"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x float32 [rows, features], integer label codes, label names) exactly as
    `trafficsiam.api.fit` prepares them: validate, infer the schema, fit the normaliser."""
    from trafficsiam import validate
    from trafficsiam.config import build_config
    from trafficsiam.normalise import Normaliser
    from trafficsiam.read import Records

    cfg = build_config({"data": data_cfg})
    records = Records(
        frame=frame.reset_index(drop=True),
        paths=[Path(source)],
        file_index=np.zeros(len(frame), dtype=np.int32),
        row_in_file=np.arange(len(frame), dtype=np.int64),
    )
    labels = validate.check_labels(records, cfg.data)
    schema = validate.infer_schema(records, cfg.data)
    features = records.frame[list(schema.columns)]
    normaliser = Normaliser.fit(features, schema, cfg.normalise)
    x, _ = normaliser.transform(features)
    names, codes = np.unique(np.asarray(labels.to_numpy()).astype(str), return_inverse=True)
    return np.ascontiguousarray(x, dtype=np.float32), codes.reshape(-1), [str(n) for n in names]


def synth_data_config() -> dict[str, Any]:
    return {"label_column": "scenario", "good_label": "good", "ignore": ["id", "timestamp"]}


# ------------------------------------------------------------------ machine


def machine_info() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "trafficsiam_source": source_digest(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": mem_gib,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load,
    }


def source_digest() -> dict[str, str]:
    """SHA-256 (12 hex digits) over trafficsiam/**/*.py and the newest file's mtime: the
    package is edited while benchmarks run, so results name the code they measured."""
    files = sorted((REPO / "trafficsiam").rglob("*.py"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(REPO)).encode())
        digest.update(f.read_bytes())
    newest = max(files, key=lambda f: f.stat().st_mtime)
    when = datetime.fromtimestamp(newest.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return {"sha256": digest.hexdigest()[:12], "newest_file": str(newest.relative_to(REPO)),
            "newest_mtime": when}


def source_line(machine: dict[str, Any]) -> str:
    src = machine["trafficsiam_source"]
    return (f"trafficsiam source sha256 {src['sha256']} (newest file {src['newest_file']}, "
            f"{src['newest_mtime']}), run {machine['date']}\n")


# ------------------------------------------------------------------ output


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            if abs(v) >= 1000:
                return f"{v:,.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            return f"{v:.3f}" if abs(v) <= 1 else f"{v:.2f}"
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10_000:
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=json_default) + "\n", encoding="utf-8")
    return path


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def save_runs(out: Path, runs: pd.DataFrame, text: str) -> None:
    """A benchmark's per-run rows (runs.csv) and its tables (tables.md, with the machine),
    both under `out`; the tables are printed too."""
    runs.to_csv(out / "runs.csv", index=False)
    (out / "tables.md").write_text(f"machine: {json.dumps(machine_info())}\n\n{text}\n",
                                   encoding="utf-8")
    print(text, flush=True)


def over_seeds(values: pd.Series) -> str:
    """A metric over seeds as the tables of BENCHMARKS.md give it: the mean and, with
    more than one seed, the range; `n/a` when no seed has it."""
    v = values.astype(float)
    if v.notna().sum() == 0:
        return "n/a"
    return f"{v.mean():.3f} ({v.min():.3f}-{v.max():.3f})" if len(v) > 1 else f"{v.mean():.3f}"
