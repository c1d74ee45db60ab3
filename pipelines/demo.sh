#!/usr/bin/env bash
# The demo pipeline: sample data -> fit. Run through `make demo` (which installs first).
# DEMO_DIR (default: demo/) holds everything it writes.
set -euo pipefail
OUT="${DEMO_DIR:-demo}"
mkdir -p "$OUT"

echo "== 1/2 sample data"
trafficsiam synth "$OUT/train.parquet" --rows 20000 --seed 1
trafficsiam synth "$OUT/batch-2026-11-02.parquet" --rows 5000 --seed 2 --novel

echo "== 2/2 fit"
trafficsiam fit "$OUT/train.parquet" --out "$OUT/model" --ignore id --ignore timestamp --force

echo
echo "outputs:"
echo "  training data   $OUT/train.parquet"
echo "  new batch       $OUT/batch-2026-11-02.parquet (with a new error type)"
echo "  model           $OUT/model/ (manifest.json, weights.safetensors, clusters.csv)"
echo "  cluster table   $OUT/model/clusters.csv"
