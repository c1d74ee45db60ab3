#!/usr/bin/env bash
# The demo pipeline: sample data -> fit -> score a new batch -> reports. Run through `make demo`
# (which installs first). DEMO_DIR (default: demo/) holds everything it writes.
set -euo pipefail
OUT="${DEMO_DIR:-demo}"
mkdir -p "$OUT/landing"

echo "== 1/3 sample data"
trafficsiam synth "$OUT/train.parquet" --rows 20000 --seed 1
trafficsiam synth "$OUT/landing/batch-2026-11-02.parquet" --rows 5000 --seed 2 --novel

echo "== 2/3 fit"
trafficsiam fit "$OUT/train.parquet" --out "$OUT/model" --ignore id --ignore timestamp --force

echo "== 3/3 score the new batch (it holds two error types the model never saw)"
# --rescore: the demo scores the same file name every time it runs. Exit code 3 means
# "new error types found" (what a scheduler would alert on): expected here.
status=0
trafficsiam score "$OUT/model" "$OUT/landing/" --out "$OUT/scored" --rescore \
    --alert-exit-code 3 || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
    exit "$status"
fi

echo
echo "outputs:"
echo "  training data   $OUT/train.parquet"
echo "  new batch       $OUT/landing/batch-2026-11-02.parquet (with new error types)"
echo "  model           $OUT/model/ (manifest.json, weights.safetensors, clusters.csv)"
echo "  model report    $OUT/model/report.html"
echo "  scored records  $OUT/scored/batch-2026-11-02.parquet (input columns + ts_*)"
echo "  run tables      $OUT/scored/summary.json, clusters.csv, new_types.csv, features_by_cluster.csv"
echo
echo "Open the scoring report (good traffic, both known error types, the new error type candidates):"
echo "$(cd "$OUT/scored" && pwd)/report.html"
