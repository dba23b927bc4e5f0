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
# A free port is only free until someone else binds it (CI runs two of these scripts; other
# runs share the machine): a server that cannot bind its port is started again on a new one.
# CDRGATE_TEST_PG_FIRST_PORT names a port each server tries first (a test holds it busy).
# CDRGATE_TEST_PG_BIN names the PostgreSQL binaries (default: the newest under
# /usr/lib/postgresql).
set -euo pipefail

REPLICA=0
if [ "${1:-}" = "--replica" ]; then
  REPLICA=1
  shift
fi

PG_BIN=${CDRGATE_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries (${PG_BIN:-none under /usr/lib/postgresql})" >&2
  exit 2
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The port to try next for a server's start: the test's busy port first, then a free one.
next_port() {
  if [ "$1" -eq 1 ] && [ -n "${CDRGATE_TEST_PG_FIRST_PORT:-}" ]; then
    echo "$CDRGATE_TEST_PG_FIRST_PORT"
  else
    free_port
  fi
}

# A setting's value quoted for postgresql.conf: a path is kept whole, whatever it holds.
conf_quoted() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"
}

# start_server DATA_DIR (PORT_IN_CONF|PORT_ON_COMMAND_LINE) [postgres options...]
# Sets STARTED_PORT. The port free_port found can be taken before the postmaster binds it,
# so a start that failed on "Address already in use" (its log says so) is tried again on a
# new port; any other failure shows the log and pg_ctl's own words (a start can fail before
# the server writes any log), and ends the run. The options pass through a shell inside
# pg_ctl (-o), so none may hold a path: paths go in postgresql.auto.conf.
start_server() {
  local data=$1 where=$2 attempt port said
  shift 2
  for attempt in 1 2 3 4 5; do
    port=$(next_port "$attempt")
    local opts="$*"
    if [ "$where" = PORT_IN_CONF ]; then
      # Tests stop and start this server with pg_ctl alone: the port lives in its config.
      sed -i '/^port = /d' "$data/postgresql.auto.conf"
      echo "port = $port" >>"$data/postgresql.auto.conf"
    else
      opts="$opts -p $port"
    fi
    rm -f "$data/server.log"
    if said=$(as_owner "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
      -o "$opts" 2>&1); then
      STARTED_PORT=$port
      return 0
    fi
    if ! grep -q "Address already in use" "$data/server.log" 2>/dev/null; then
      cat "$data/server.log" >&2 2>/dev/null || true
      printf '%s\n' "$said" >&2
      echo "with-postgres: the server in $data did not start" >&2
      exit 2
    fi
    echo "with-postgres: 127.0.0.1:$port was taken before the server bound it; another port" >&2
  done
  cat "$data/server.log" >&2
  echo "with-postgres: no free port after $attempt tries" >&2
  exit 2
}

DATA=$(mktemp -d "${TMPDIR:-/tmp}/cdrgate-pg.XXXXXX")
REPLICA_DATA=""
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DATA"; fi

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
echo "unix_socket_directories = $(conf_quoted "$DATA")" >>"$DATA/postgresql.auto.conf"
# Durability is pointless for a throwaway test cluster; turning it off keeps CI fast.
# (wal_level=replica and max_wal_senders are the defaults, so a replica needs nothing more;
# trust auth on loopback covers the replication connection too.)
start_server "$DATA" PORT_ON_COMMAND_LINE -c listen_addresses=127.0.0.1 -c fsync=off \
  -c synchronous_commit=off -c full_page_writes=off -c max_connections=200
PORT=$STARTED_PORT

export CDRGATE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PORT/postgres"
echo "with-postgres: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

if [ "$REPLICA" -eq 1 ]; then
  REPLICA_DATA=$(mktemp -d "${TMPDIR:-/tmp}/cdrgate-pg-replica.XXXXXX")
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$REPLICA_DATA"; fi
  chmod 700 "$REPLICA_DATA"
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
unix_socket_directories = $(conf_quoted "$REPLICA_DATA")
fsync = off
max_connections = 200
hot_standby_feedback = on
CONF
  start_server "$REPLICA_DATA" PORT_IN_CONF
  REPLICA_PORT=$STARTED_PORT
  export CDRGATE_TEST_POSTGRES_REPLICA="postgresql://postgres@127.0.0.1:$REPLICA_PORT/postgres"
  export CDRGATE_TEST_POSTGRES_REPLICA_DATA="$REPLICA_DATA"
  export CDRGATE_TEST_POSTGRES_BIN="$PG_BIN"
  if [ "$(id -u)" -eq 0 ]; then export CDRGATE_TEST_PG_AS=postgres; fi
  echo "with-postgres: streaming replica on 127.0.0.1:$REPLICA_PORT" >&2
fi
"$@"
