"""scripts/with-postgres.sh as CI runs it: a port it picked can be taken before its server
binds it (two such scripts run at once in CI; other runs share the machine), and the run
must still get its servers rather than fail."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "with-postgres.sh"
# Asks each server the script started whether it is a standby: the primary says no, the
# replica yes. psycopg is the tests' own driver.
PROBE = """
import json, os, psycopg
def standby(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
print(json.dumps({
    "primary": os.environ["CDRGATE_TEST_POSTGRES"],
    "replica": os.environ["CDRGATE_TEST_POSTGRES_REPLICA"],
    "primary_standby": standby(os.environ["CDRGATE_TEST_POSTGRES"]),
    "replica_standby": standby(os.environ["CDRGATE_TEST_POSTGRES_REPLICA"]),
}))
"""


needs_postgres = pytest.mark.skipif(
    not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="needs PostgreSQL's server binaries"
)


@needs_postgres
def test_a_port_taken_before_the_server_binds_it_is_replaced_by_a_free_one() -> None:
    # A listening socket on the port each server tries first: what another postmaster that
    # won the race for that port looks like.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = {**os.environ, "CDRGATE_TEST_PG_FIRST_PORT": str(busy)}
        run = subprocess.run(
            [str(SCRIPT), "--replica", sys.executable, "-c", PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, run.stderr
    servers = json.loads(run.stdout)
    assert f":{busy}/" not in servers["primary"]
    assert f":{busy}/" not in servers["replica"]
    assert servers["primary_standby"] is False
    assert servers["replica_standby"] is True
    # Both servers tried the busy port first and said why they moved on.
    assert run.stderr.count(f"127.0.0.1:{busy} was taken") == 2, run.stderr


def owner_readable_dir(prefix: str) -> Path:
    """A new directory the cluster's owner can reach: as root the script runs PostgreSQL as
    `postgres`, which cannot enter pytest's own temporary directories (0700, root's)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@needs_postgres
def test_a_tmpdir_with_spaces_still_gets_its_servers() -> None:
    spaced = owner_readable_dir("with postgres ")
    try:
        run = subprocess.run(
            [str(SCRIPT), "--replica", sys.executable, "-c", PROBE],
            env={**os.environ, "TMPDIR": str(spaced)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        servers = json.loads(run.stdout)
        assert (servers["primary_standby"], servers["replica_standby"]) == (False, True)
        assert list(spaced.iterdir()) == []  # both clusters deleted after the run
    finally:
        shutil.rmtree(spaced)


@needs_postgres
def test_a_start_that_fails_before_the_server_log_exists_says_why() -> None:
    # pg_ctl failing on its own (a log it cannot open, say), before any server wrote a log:
    # what it says is the only clue.
    real = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    fake = owner_readable_dir("with-postgres-bin ")
    try:
        for name in ("initdb", "postgres", "pg_basebackup"):
            (fake / name).symlink_to(real / name)
        pg_ctl = fake / "pg_ctl"
        pg_ctl.write_text(
            "#!/bin/sh\n"
            'case " $* " in *" start "*) echo "pg_ctl: cannot open the log (fake)" >&2; exit 1;; esac\n'
            f'exec "{real}/pg_ctl" "$@"\n'
        )
        pg_ctl.chmod(0o755)
        run = subprocess.run(
            [str(SCRIPT), "true"],
            env={**os.environ, "CDRGATE_TEST_PG_BIN": str(fake)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(fake)
    assert run.returncode == 2
    assert "pg_ctl: cannot open the log (fake)" in run.stderr
    assert "did not start" in run.stderr
