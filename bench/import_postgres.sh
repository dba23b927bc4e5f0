#!/usr/bin/env bash
# `cdrgate import` of a 1M-row Yeastar CSV and `cdrgate seed --count 1000000` on PostgreSQL:
# builds interleaved, with psql's \copy of the same file into a plain 14-column text table as
# the reference, in the same run:
#   scripts/with-postgres.sh bench/import_postgres.sh [FILE] [MAIN_CDRGATE]
# FILE defaults to bench/data/seed-1000000-1.csv (bench/import_csv.py writes it);
# MAIN_CDRGATE, when given, is a reference build run beside this one. BUILDS, when set, lists the builds instead, as
# LABEL=CDRGATE words (default: "main=MAIN_CDRGATE this=.venv/bin/cdrgate", or this one alone); a build of another
# worktree runs through a two-line script: `PYTHONPATH=<worktree>/src exec .venv/bin/python -m
# cdrgate "$@"`. ROUNDS (default 2) rounds of: \copy, then per build an import into an empty
# store, a seed of 1M rows into an empty store, and an import into a store already holding 1M
# other rows (the same months, other callids; made once per build, as its migrations may
# differ), each into a fresh database. Printed per run: wall and CPU seconds of the cdrgate
# process (user+sys), the server's CPU seconds (its finished backends, from the postmaster's
# reaped children; autovacuum is off meanwhile) and the load average. Bounded: each run is
# killed after TIMEOUT (300) s.
set -uo pipefail
cd "$(dirname "$0")/.."
URL=${CDRGATE_TEST_POSTGRES:?run this under scripts/with-postgres.sh}
FILE=${1:-bench/data/seed-1000000-1.csv}
MAIN=${2:-}
BUILDS=${BUILDS:-${MAIN:+main=$MAIN }this=.venv/bin/cdrgate}
BASE=${URL%/*}
TIMEOUT=${TIMEOUT:-300}
ROUNDS=${ROUNDS:-2}
COLUMNS_SQL="callid text, timestart text, callfrom text, callto text, callduraction text,
  talkduraction text, srctrunkname text, dsttrunkname text, status text, type text,
  pincode text, recording text, didnumber text, sn text"

export PGOPTIONS="-c client_min_messages=warning"
sql() { psql "$URL" -qAtX -c "$1"; }

# No autovacuum while measuring: the postmaster reaps its workers too, and their vacuum and
# analyze of a store made just before (5.7 s of CPU for a 1M-row store below) landed in
# whichever run was going on: +10.8 s in the nineteenth round's first import (bench/
# RESULTS.md, twentieth round). Each run's figure is then its own work.
sql "ALTER SYSTEM SET autovacuum = off" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
# This run's own files: another run of this script may go on meanwhile.
SCRATCH=$(mktemp -d /tmp/import_postgres.XXXXXX)
trap 'sql "ALTER SYSTEM RESET autovacuum" >/dev/null; sql "SELECT pg_reload_conf()" >/dev/null; rm -rf "$SCRATCH"' EXIT

# The postmaster reaps every backend, so its children's CPU grows by what each finished
# connection used.
POSTMASTER=$(awk '{print $4}' "/proc/$(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")/stat")
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($16 + $17) / hz}' "/proc/$POSTMASTER/stat"; }

fresh() {  # fresh DB [TEMPLATE]
  sql "DROP DATABASE IF EXISTS $1" >/dev/null
  sql "CREATE DATABASE $1${2:+ TEMPLATE $2}" >/dev/null
}

settled() {  # until DB's backends have exited and been reaped (their CPU is then counted)
  while [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$1'")" != 0 ]; do
    sleep 0.1
  done
  sleep 0.5
}

measure() {  # measure LABEL DB COMMAND...
  local label=$1 db=$2 load before after out
  shift 2
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  settled "$db"
  # The last run's pages written out first, the server's and the kernel's (as benchlib's
  # settle_disk): their write-back would otherwise land inside this run's timing.
  sql "CHECKPOINT" >/dev/null
  sync
  before=$(server_cpu)
  /usr/bin/time -o $SCRATCH/time -f "%e %U %S" timeout "$TIMEOUT" "$@" \
    >/dev/null 2>$SCRATCH/err || echo "FAILED: $label: $(tail -n 3 $SCRATCH/err)"
  settled "$db"
  after=$(server_cpu)
  read -r wall user sys <$SCRATCH/time
  printf "RESULT %-22s wall %6.2f s  client cpu %5.2f s  server cpu %6.2f s  load %s\n" \
    "$label" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$after - $before" | bc)" "$load"
  sql "DROP DATABASE IF EXISTS $db" >/dev/null
}

import_run() {  # import_run LABEL CDRGATE [TEMPLATE]
  fresh bench_import "${3:-}"
  measure "$1" bench_import "$2" import "$FILE" --database "$BASE/bench_import"
}

copy_run() {
  fresh bench_copy
  psql "$BASE/bench_copy" -qAtX -c "CREATE TABLE plain ($COLUMNS_SQL)"
  measure "psql \\copy" bench_copy psql "$BASE/bench_copy" -qAtX \
    -c "\\copy plain FROM '$FILE' (FORMAT csv, HEADER)"
}

echo "== $FILE: $(($(wc -l <"$FILE") - 1)) rows; PostgreSQL $(sql 'SHOW server_version'); $(nproc) cores"
seed_run() {  # seed_run LABEL CDRGATE
  fresh bench_seed
  # Migrated first and untimed, as bench/seed_pairs_postgres.sh does: a seed into a database
  # with no tables runs the sixteen migrations first (~2.5 s at load 3).
  "$2" db upgrade --database "$BASE/bench_seed" >/dev/null 2>&1
  measure "$1" bench_seed "$2" seed --count 1000000 --database "$BASE/bench_seed"
}

OTHER=$SCRATCH/other.csv
sed -E '2,$ s/^([^,]*),/\1b,/' "$FILE" >"$OTHER"
for build in $BUILDS; do
  fresh "full_${build%%=*}"
  "${build#*=}" import "$OTHER" --database "$BASE/full_${build%%=*}" >/dev/null 2>&1
  # What autovacuum would have done to a store in use (runs copy it as their template).
  psql "$BASE/full_${build%%=*}" -qAtX -c "VACUUM (ANALYZE)" >/dev/null
done

for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  copy_run
  for build in $BUILDS; do import_run "${build%%=*} (empty) #$round" "${build#*=}"; done
  for build in $BUILDS; do seed_run "${build%%=*} seed #$round" "${build#*=}"; done
  for build in $BUILDS; do
    import_run "${build%%=*} (1M stored) #$round" "${build#*=}" "full_${build%%=*}"
  done
done
for build in $BUILDS; do sql "DROP DATABASE full_${build%%=*}" >/dev/null; done
