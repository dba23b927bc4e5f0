#!/usr/bin/env bash
# The import's head: `cdrgate import` of a small Yeastar file (ROWS rows, too few for the
# parallel load) into a copy of an empty migrated store, main's build against this one,
# interleaved, ROUNDS runs each (default 10):
#   bench/import_head.sh [MAIN_CDRGATE] [ROUNDS] [ROWS]
# MAIN_CDRGATE (the reference build) defaults to this one: two runs of one build, the noise
# floor. With so few rows the process is
# almost all start-up (the writer's head: imports, opening the store) and exit. Printed per
# build: the load average, wall seconds (min / median / max) and the process's mean CPU
# seconds (user+sys), which neighbours move less than wall time. Each run is killed after 30 s.
set -uo pipefail
cd "$(dirname "$0")/.."
MAIN=${1:-.venv/bin/cdrgate}
ROUNDS=${2:-10}
ROWS=${3:-1000}
THIS=.venv/bin/cdrgate
CSV=bench/data/seed-1000000-1.csv
[ -f "$CSV" ] || { echo "needs $CSV (bench/import_csv.py writes it)" >&2; exit 2; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
head -n $((ROWS + 1)) "$CSV" >"$OUT/small.csv"
for build in main this; do
  bin=$MAIN
  [ "$build" = this ] && bin=$THIS
  "$bin" db upgrade --database "sqlite:///$OUT/empty-$build.db" >/dev/null 2>&1
done

for i in $(seq "$ROUNDS"); do
  for build in main this; do
    bin=$MAIN
    [ "$build" = this ] && bin=$THIS
    cp "$OUT/empty-$build.db" "$OUT/store.db"
    rm -f "$OUT"/store.db-*
    /usr/bin/time -f "%e %U %S" -a -o "$OUT/$build" \
      timeout 30 "$bin" import "$OUT/small.csv" --database "sqlite:///$OUT/store.db" >/dev/null
  done
done
for build in main this; do
  printf "import %s rows  %-4s load %s  wall s min/median/max " "$ROWS" "$build" \
    "$(cut -d' ' -f1 /proc/loadavg)"
  sort -n "$OUT/$build" | awk '{w[NR] = $1; c += $2 + $3}
    END {printf "%s / %s / %s  cpu s mean %.3f\n", w[1], w[int((NR + 1) / 2)], w[NR], c / NR}'
done
