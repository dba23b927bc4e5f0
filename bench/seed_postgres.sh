#!/usr/bin/env bash
# Seed wall time on PostgreSQL, each run into a fresh database, optionally interleaved with
# another build's cdrgate (e.g. main's):
#   scripts/with-postgres.sh bench/seed_postgres.sh [ROWS] [REPEAT] [BASELINE_CDRGATE]
# Migrations are not timed (`db upgrade` first); the load average is printed beside each run.
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${CDRGATE_TEST_POSTGRES:?run this under scripts/with-postgres.sh}
ROWS=${1:-1000000}
REPEAT=${2:-2}
BASELINE=${3:-}
SERVER=${URL%/*}
n=0
run() {  # run LABEL CDRGATE
  n=$((n + 1))
  psql -q "$URL" -c "CREATE DATABASE seed_bench_$n" >/dev/null
  "$2" db upgrade --database "$SERVER/seed_bench_$n" >/dev/null 2>&1
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  start=$(date +%s.%N)
  "$2" seed --count "$ROWS" --database "$SERVER/seed_bench_$n" >/dev/null
  end=$(date +%s.%N)
  printf '%-8s seed %8d rows  %6.2f s   (load %s)\n' "$1" "$ROWS" "$(echo "$end - $start" | bc)" "$load"
}
for _ in $(seq "$REPEAT"); do
  if [ -n "$BASELINE" ]; then run baseline "$BASELINE"; fi
  run this .venv/bin/cdrgate
done
