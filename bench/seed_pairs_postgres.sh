#!/usr/bin/env bash
# `cdrgate seed --count ROWS` into an empty PostgreSQL store, builds interleaved (A, B, A, B,
# ...), each run into a fresh database:
#   scripts/with-postgres.sh env BUILDS="main=/tmp/cdrgate-main this=.venv/bin/cdrgate" \
#       bench/seed_pairs_postgres.sh [ROWS] [ROUNDS]
# A build of another worktree runs through a two-line script: `PYTHONPATH=<worktree>/src exec
# .venv/bin/python -m cdrgate "$@"`. Printed per run, as bench/import_postgres.sh does: wall
# and CPU seconds of the cdrgate process (user+sys), the server's CPU seconds (its finished
# backends and parallel workers, from the postmaster's reaped children) and the load average.
# Migrations are not timed (`db upgrade` first, so each build's own). Bounded: each run is
# killed after TIMEOUT (300) s.
set -uo pipefail
cd "$(dirname "$0")/.."
URL=${CDRGATE_TEST_POSTGRES:?run this under scripts/with-postgres.sh}
ROWS=${1:-1000000}
ROUNDS=${2:-3}
BUILDS=${BUILDS:-this=.venv/bin/cdrgate}
BASE=${URL%/*}
TIMEOUT=${TIMEOUT:-300}
# This run's own files: two runs at once (helpers sharing a machine) must not read each other's.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

export PGOPTIONS="-c client_min_messages=warning"
sql() { psql "$URL" -qAtX -c "$1"; }
POSTMASTER=$(awk '{print $4}' "/proc/$(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")/stat")
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($16 + $17) / hz}' "/proc/$POSTMASTER/stat"; }
settled() {  # until DB's backends have exited and been reaped (their CPU is then counted)
  while [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$1'")" != 0 ]; do
    sleep 0.1
  done
  sleep 0.5
}

echo "== seed $ROWS rows; PostgreSQL $(sql 'SHOW server_version'); $(nproc) cores"
for round in $(seq "$ROUNDS"); do
  for build in $BUILDS; do
    label=${build%%=*} cdrgate=${build#*=}
    sql "DROP DATABASE IF EXISTS bench_seed" >/dev/null
    sql "CREATE DATABASE bench_seed" >/dev/null
    "$cdrgate" db upgrade --database "$BASE/bench_seed" >/dev/null 2>&1
    settled bench_seed
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    before=$(server_cpu)
    /usr/bin/time -o "$SCRATCH/time" -f "%e %U %S" timeout "$TIMEOUT" \
      "$cdrgate" seed --count "$ROWS" --database "$BASE/bench_seed" \
      >/dev/null 2>"$SCRATCH/err" || echo "FAILED: $label: $(tail -n 3 "$SCRATCH/err")"
    settled bench_seed
    after=$(server_cpu)
    read -r wall user sys <"$SCRATCH/time"
    printf "RESULT %-10s #%d  wall %6.2f s  client cpu %5.2f s  server cpu %6.2f s  load %s\n" \
      "$label" "$round" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$after - $before" | bc)" "$load"
  done
done
sql "DROP DATABASE IF EXISTS bench_seed" >/dev/null
