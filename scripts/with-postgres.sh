#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server on 127.0.0.1:
#   scripts/with-postgres.sh make test
#   scripts/with-postgres.sh --replica .venv/bin/python -m pytest tests/replicas
# initdb a fresh cluster in a temp dir, start it on a free loopback port, export
# CDRGATE_TEST_POSTGRES for the tests, run the command, then stop the server and delete
# the data. The server refuses to run as root, so as root it runs as the `postgres` user.
# --replica adds a streaming replica (pg_basebackup -R) on a second loopback port, exported
# as CDRGATE_TEST_POSTGRES_REPLICA, and CDRGATE_TEST_POSTGRES_REPLICA_DATA/_BIN so tests can
# stop and start it (as the cluster's owner: CDRGATE_TEST_PG_AS names it when not ourselves).
set -euo pipefail

REPLICA=0
if [ "${1:-}" = "--replica" ]; then
  REPLICA=1
  shift
fi

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
  exit 2
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

DATA=$(mktemp -d "${TMPDIR:-/tmp}/cdrgate-pg.XXXXXX")
REPLICA_DATA=""
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DATA"; fi
PORT=$(free_port)

cleanup() {
  if [ -n "$REPLICA_DATA" ]; then
    as_owner "$PG_BIN/pg_ctl" -D "$REPLICA_DATA" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$REPLICA_DATA"
  fi
  as_owner "$PG_BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT

as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
# Durability is pointless for a throwaway test cluster; turning it off keeps CI fast.
# (wal_level=replica and max_wal_senders are the defaults, so a replica needs nothing more;
# trust auth on loopback covers the replication connection too.)
as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start -o \
  "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  >/dev/null

export CDRGATE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PORT/postgres"
echo "with-postgres: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

if [ "$REPLICA" -eq 1 ]; then
  REPLICA_DATA=$(mktemp -d "${TMPDIR:-/tmp}/cdrgate-pg-replica.XXXXXX")
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$REPLICA_DATA"; fi
  chmod 700 "$REPLICA_DATA"
  REPLICA_PORT=$(free_port)
  # -R writes standby.signal and primary_conninfo: the copy starts as a streaming replica.
  # Its output goes to a log (it warns about the primary's socket in the data directory).
  if ! as_owner "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$REPLICA_DATA" \
    -R -X stream --checkpoint=fast --no-sync >"$DATA.basebackup.log" 2>&1; then
    cat "$DATA.basebackup.log" >&2
    exit 2
  fi
  rm -f "$DATA.basebackup.log"
  # In its configuration file, not on the command line: tests stop and start it again.
  cat >>"$REPLICA_DATA/postgresql.auto.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $REPLICA_PORT
unix_socket_directories = '$REPLICA_DATA'
fsync = off
max_connections = 200
hot_standby_feedback = on
CONF
  as_owner "$PG_BIN/pg_ctl" -D "$REPLICA_DATA" -l "$REPLICA_DATA/server.log" -w -t 60 start >/dev/null
  export CDRGATE_TEST_POSTGRES_REPLICA="postgresql://postgres@127.0.0.1:$REPLICA_PORT/postgres"
  export CDRGATE_TEST_POSTGRES_REPLICA_DATA="$REPLICA_DATA"
  export CDRGATE_TEST_POSTGRES_BIN="$PG_BIN"
  if [ "$(id -u)" -eq 0 ]; then export CDRGATE_TEST_PG_AS=postgres; fi
  echo "with-postgres: streaming replica on 127.0.0.1:$REPLICA_PORT" >&2
fi
"$@"
