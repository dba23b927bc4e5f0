#!/usr/bin/env bash
# PostgreSQL figures (targets 1-3, and 1 vs 2 workers for 3) on a throwaway loopback cluster:
#   scripts/with-postgres.sh bench/postgres.sh [ROWS]
# with-postgres.sh runs the cluster with fsync=off (a test cluster); see bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
URL=${CDRGATE_TEST_POSTGRES:?run this under scripts/with-postgres.sh}
ROWS=${1:-1000000}
PY=.venv/bin/python
mkdir -p bench/data
{
  echo "== seeding $ROWS CDRs into PostgreSQL"
  /usr/bin/time -f "seed: %e s" .venv/bin/cdrgate seed --count "$ROWS" --database "$URL"
  timeout 1800 "$PY" bench/export_full.py --database "$URL" --repeat 3
  timeout 900 "$PY" bench/export_selective.py --database "$URL"
  timeout 900 "$PY" bench/small_flows.py --database "$URL" --workers 1
  timeout 900 "$PY" bench/small_flows.py --database "$URL" --workers 2
} 2>&1 | tee bench/data/results-postgres.log
grep -h '^RESULT' bench/data/results-postgres.log
