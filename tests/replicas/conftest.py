"""A PostgreSQL primary with a streaming replica (``scripts/with-postgres.sh --replica``) and
real ``cdrgate serve`` nodes on it: three, as if on three hosts, all reading exports from the
replica. Skipped unless CDRGATE_TEST_POSTGRES_REPLICA is set (``.ci/run`` sets it)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan
from cdrgate.services.auth import set_api_user
from cdrgate.storage.db import Database, normalise_url
from tests.conftest import postgres_schema
from tests.servers import PASSWORD, Server, launch, wait_up

REPLICA_ENV = "CDRGATE_TEST_POSTGRES_REPLICA"
NODE_CDRS = 20_000  # about 20 export pages: a download spans many page reads
MAY = ("2026-05-01 00:00:00", "2026-05-31 23:59:59")
# Waiting for the replica is a wait for an event, not a measure of speed: generous.
CATCH_UP_S = 60.0


def plain_dsn(url: str) -> str:
    """A psycopg DSN of a test URL, without its search_path option (for the pg_* views)."""
    return (
        make_url(normalise_url(url))
        .set(drivername="postgresql", query={})
        .render_as_string(hide_password=False)
    )


def replica_of(primary_url: str) -> str:
    """The test schema's URL on the replica: same search_path, the replica's address."""
    replica = make_url(os.environ[REPLICA_ENV])
    primary = make_url(primary_url)
    return primary.set(host=replica.host, port=replica.port).render_as_string(hide_password=False)


class ReplicaServer:
    """Stop, start, pause and wait for the replica cluster (run as its owner)."""

    def __init__(self) -> None:
        self.url = os.environ[REPLICA_ENV]
        self.data = os.environ["CDRGATE_TEST_POSTGRES_REPLICA_DATA"]
        self.bin = Path(os.environ["CDRGATE_TEST_POSTGRES_BIN"])
        owner = os.environ.get("CDRGATE_TEST_PG_AS")
        self._as = ["runuser", "-u", owner, "--"] if owner else []

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / "pg_ctl"), "-D", self.data, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", f"{self.data}/server.log", "-w", "-t", "60", "start")

    def execute(self, sql: str) -> object:
        with psycopg.connect(plain_dsn(self.url), autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
        return row[0] if row else None

    def wait_for(self, primary_url: str) -> None:
        """Until the replica has replayed everything the primary has committed so far."""
        with psycopg.connect(plain_dsn(primary_url), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        deadline = time.monotonic() + CATCH_UP_S
        while not self.execute(f"SELECT pg_last_wal_replay_lsn() >= '{row[0]}'::pg_lsn"):
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.05)


@pytest.fixture(scope="session")
def replica() -> ReplicaServer:
    if not os.environ.get(REPLICA_ENV):
        pytest.skip(
            f"needs a streaming replica: scripts/with-postgres.sh --replica ({REPLICA_ENV})"
        )
    return ReplicaServer()


@dataclass
class Cluster:
    nodes: list[Server]
    database_url: str
    replica_url: str

    @property
    def urls(self) -> list[str]:
        return [node.base_url for node in self.nodes]


def start_nodes(url: str, replica_url: str, logs: Path, count: int, *extra: str) -> list[Server]:
    env = {**os.environ, "CDRGATE_DATABASE": url}
    args = ["--replica", replica_url, "--trusted-proxy", "127.0.0.1", "--log-level", "info", *extra]
    # All start at once on an empty schema: the migration lock lets exactly one migrate.
    nodes = [launch(args, env, logs / f"node{i}.log", wait=False) for i in range(count)]
    for node in nodes:
        wait_up(node)
    return nodes


@pytest.fixture(scope="module")
def cluster(replica: ReplicaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("nodes")
    with postgres_schema() as url:
        replica_url = replica_of(url)
        nodes = start_nodes(url, replica_url, logs, 3)
        try:
            db = Database(url)
            try:
                plan = SeedPlan(
                    count=NODE_CDRS, seed=11, start="2026-05-01 00:00:00", days=30, extensions=20
                )
                seed_database(db, plan)
                set_api_user(db, "api", PASSWORD, 1_780_000_000_000)
            finally:
                db.dispose()
            replica.wait_for(url)
            yield Cluster(nodes, url, replica_url)
        finally:
            for node in nodes:
                node.stop()
