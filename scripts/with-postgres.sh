#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server on 127.0.0.1:
#   scripts/with-postgres.sh make test
# initdb a fresh cluster in a temp dir, start it on a free loopback port, export
# CDRGATE_TEST_POSTGRES for the tests, run the command, then stop the server and delete
# the data. The server refuses to run as root, so as root it runs as the `postgres` user.
set -euo pipefail

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
  exit 2
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

DATA=$(mktemp -d "${TMPDIR:-/tmp}/cdrgate-pg.XXXXXX")
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DATA"; fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
  as_owner "$PG_BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT

as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
# Durability is pointless for a throwaway test cluster; turning it off keeps CI fast.
as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start -o \
  "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  >/dev/null

export CDRGATE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PORT/postgres"
echo "with-postgres: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2
"$@"
