"""scripts/with-postgres.sh as CI runs it: a port it picked can be taken before its server
binds it (two such scripts run at once in CI; other runs share the machine), and the run
must still get its servers rather than fail."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
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


@pytest.mark.skipif(
    not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="needs PostgreSQL's server binaries"
)
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
