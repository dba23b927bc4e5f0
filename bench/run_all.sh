#!/usr/bin/env bash
# All SQLite benches in sequence, each bounded by a timeout; output also kept in
# bench/data/results-<script>.log. Run from anywhere: bench/run_all.sh
# REPEAT (default 3) sets the runs per measurement for the slow, whole-process ones.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
REPEAT=${REPEAT:-3}
mkdir -p bench/data
run() {
  local name=$1
  shift
  # A failed bench is reported and the next one still runs.
  timeout 1800 "$PY" "bench/$name.py" "$@" 2>&1 | tee "bench/data/results-$name.log" || true
}
run export_full --repeat "$REPEAT"
run export_selective
run small_flows
run import_csv --repeat "$REPEAT"
run seed_rows --repeat "$REPEAT"
grep -h '^RESULT' bench/data/results-*.log
