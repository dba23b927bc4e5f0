#!/usr/bin/env bash
# Start-up of `cdrgate --version` and `cdrgate --help`: main's build against this one,
# interleaved, ROUNDS runs each (default 10):
#   bench/cli_startup.sh [MAIN_CDRGATE] [ROUNDS]
# MAIN_CDRGATE (the reference build) defaults to this one: two runs of one build, the noise
# floor. Printed per command and build: the
# load average, wall seconds (min / median / max) and the process's mean CPU seconds
# (user+sys), which neighbours move less than wall time. Bounded: each run is killed after 30 s.
set -uo pipefail
cd "$(dirname "$0")/.."
MAIN=${1:-.venv/bin/cdrgate}
ROUNDS=${2:-10}
THIS=.venv/bin/cdrgate
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for args in --version --help; do
  for i in $(seq "$ROUNDS"); do
    for build in main this; do
      bin=$MAIN
      [ "$build" = this ] && bin=$THIS
      /usr/bin/time -f "%e %U %S" -a -o "$OUT/$build" timeout 30 "$bin" "$args" >/dev/null
    done
  done
  for build in main this; do
    printf "%-9s %-4s load %s  wall s min/median/max " "$args" "$build" "$(cut -d' ' -f1 /proc/loadavg)"
    sort -n "$OUT/$build" | awk '{w[NR] = $1; c += $2 + $3}
      END {printf "%s / %s / %s  cpu s mean %.3f\n", w[1], w[int((NR + 1) / 2)], w[NR], c / NR}'
    rm -f "$OUT/$build"
  done
done
