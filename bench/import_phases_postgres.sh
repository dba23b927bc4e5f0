#!/usr/bin/env bash
# Where a PostgreSQL import's time and CPU go, per backend and statement kind:
#   scripts/with-postgres.sh bench/import_phases_postgres.sh [FILE]
# BUILDS (default "this=.venv/bin/cdrgate", LABEL=CDRGATE
# words, as bench/import_postgres.sh takes them) are run interleaved, PAIRS (default 3) times:
# per run a fresh database migrated by the build, autovacuum off, `log_min_duration_statement
# = 0` and `log_statement_stats = on` on the database, one `cdrgate import` of FILE (default
# bench/data/seed-1000000-1.csv). Printed: wall, the cdrgate process's CPU, the server's CPU
# (the postmaster's reaped children) and the load; then from the server log, per backend and
# statement kind, the statements' durations and their CPU (the backend's own user+sys:
# parallel workers' are not in it). Bounded: each import is killed after TIMEOUT (300) s.
set -uo pipefail
cd "$(dirname "$0")/.."
URL=${CDRGATE_TEST_POSTGRES:?run this under scripts/with-postgres.sh}
FILE=${1:-bench/data/seed-1000000-1.csv}
BUILDS=${BUILDS:-this=.venv/bin/cdrgate}
PAIRS=${PAIRS:-3}
TIMEOUT=${TIMEOUT:-300}
BASE=${URL%/*}
DB=bench_phases
export PGOPTIONS="-c client_min_messages=warning"
sql() { psql "$URL" -qAtX -c "$1"; }

LOG=$(sql "SELECT pg_current_logfile()" 2>/dev/null || true)
[ -n "$LOG" ] && LOG=$(sql "SHOW data_directory")/$LOG
[ -f "$LOG" ] || LOG=$(sql "SHOW data_directory")/server.log  # scripts/with-postgres.sh's
SCRATCH=$(mktemp -d /tmp/import_phases.XXXXXX)
sql "ALTER SYSTEM SET autovacuum = off" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
trap 'sql "ALTER SYSTEM RESET autovacuum" >/dev/null; sql "SELECT pg_reload_conf()" >/dev/null; rm -rf "$SCRATCH"' EXIT

POSTMASTER=$(awk '{print $4}' "/proc/$(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")/stat")
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($16 + $17) / hz}' "/proc/$POSTMASTER/stat"; }
settled() {
  while [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB'")" != 0 ]; do sleep 0.1; done
  sleep 0.5
}

cat >"$SCRATCH/phases.py" <<'PY'
"""The server log's statements summed per backend and kind: durations, and CPU from
log_statement_stats' "! x s user, y s system" (its STATEMENT line follows)."""
import collections
import re
import sys

def kind_of(statement):
    head = statement.split(maxsplit=1)[0].upper() if statement.strip() else ""
    if head == "INSERT":
        return "INSERT summary" if "cdr_summary" in statement else "INSERT rows"
    if head == "ALTER" and " ADD " in statement and ("PRIMARY" in statement or "UNIQUE" in statement):
        return "index build (constraint)"
    if head == "CREATE" and " INDEX " in statement:
        return "index build"
    if head == "ALTER" and "CHECK" in statement:
        return "range check"
    if head == "ALTER" and "ATTACH" in statement:
        return "attach"
    if head == "CREATE" and " AS SELECT " in statement:
        return "CREATE TABLE AS"
    if head == "SELECT" and "GROUP BY" in statement:
        return "SELECT ... GROUP BY"
    return "COPY" if head == "COPY" else "other"

durations, cpu, usage = collections.Counter(), collections.Counter(), {}
for line in sys.stdin:
    if found := re.search(r"\[(\d+)\] LOG:  duration: ([0-9.]+) ms  (?:statement|parse [^:]*|bind [^:]*|execute [^:]*): (.*)", line):
        durations[found[1], kind_of(found[3])] += float(found[2]) / 1000
    elif found := re.search(r"\[(\d+)\] LOG:  .*STATISTICS", line):
        backend = found[1]
    elif found := re.search(r"!\s+([0-9.]+) s user, ([0-9.]+) s system, [0-9.]+ s elapsed", line):
        usage[backend] = float(found[1]) + float(found[2])
    elif (found := re.search(r"\[(\d+)\] STATEMENT:  (.*)", line)) and found[1] in usage:
        cpu[found[1], kind_of(found[2])] += usage.pop(found[1])
print(f"  {'backend':>8} {'statements':28} {'duration':>9} {'cpu':>8}")
for backend in sorted({backend for backend, _ in durations | cpu}):
    kinds = sorted(kind for pid, kind in durations | cpu if pid == backend)
    for kind in kinds:
        print(f"  {backend:>8} {kind:28} {durations[backend, kind]:8.2f}s {cpu[backend, kind]:7.2f}s")
    total = (sum(durations[backend, kind] for kind in kinds), sum(cpu[backend, kind] for kind in kinds))
    print(f"  {backend:>8} {'all':28} {total[0]:8.2f}s {total[1]:7.2f}s")
PY

echo "== $FILE; PostgreSQL $(sql 'SHOW server_version'); $(nproc) cores"
for pair in $(seq "$PAIRS"); do
  for build in $BUILDS; do
    label=${build%%=*} cdrgate=${build#*=}
    sql "DROP DATABASE IF EXISTS $DB" >/dev/null
    sql "CREATE DATABASE $DB" >/dev/null
    "$cdrgate" db upgrade --database "$BASE/$DB" >/dev/null 2>&1
    sql "ALTER DATABASE $DB SET log_min_duration_statement = 0" >/dev/null
    sql "ALTER DATABASE $DB SET log_statement_stats = on" >/dev/null
    settled
    start=$(stat -c %s "$LOG")
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    before=$(server_cpu)
    /usr/bin/time -o "$SCRATCH/time" -f "%e %U %S" timeout "$TIMEOUT" "$cdrgate" import "$FILE" \
      --database "$BASE/$DB" >/dev/null 2>"$SCRATCH/err" || echo "FAILED: $label: $(tail -n 3 "$SCRATCH/err")"
    settled
    after=$(server_cpu)
    read -r wall user sys <"$SCRATCH/time"
    printf "RESULT %-10s #%s wall %6.2f s  client cpu %5.2f s  server cpu %6.2f s  load %s\n" \
      "$label" "$pair" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$after - $before" | bc)" "$load"
    tail -c +$((start + 1)) "$LOG" | python3 "$SCRATCH/phases.py"
  done
done
sql "DROP DATABASE IF EXISTS $DB" >/dev/null
