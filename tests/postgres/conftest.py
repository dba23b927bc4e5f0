"""PostgreSQL-only fixtures: a migrated database in a fresh schema, and a fleet of real
``cdrgate serve`` processes (one with ``--workers 2``, one single) sharing one database."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.conftest import migrated_postgres, postgres_schema
from tests.servers import Server, launch, run_cli, wait_up

# The streamed export must be much larger than the memory bound the test allows.
FLEET_CDRS = 120_000
FLEET_START = "2026-03-01"


@pytest.fixture
def pg_db() -> Iterator[Database]:
    with migrated_postgres() as database:
        yield database


@dataclass
class Fleet:
    multi: Server  # --workers 2
    single: Server
    database_url: str
    password_md5: str
    schema_at_start: str | None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    logs = tmp_path_factory.mktemp("fleet")
    with postgres_schema() as url:
        env = {**os.environ, "CDRGATE_DATABASE": url}
        common = ["--trusted-proxy", "127.0.0.1", "--log-level", "warning"]
        # Both start on an empty schema at once: serve migrates, one process at a time.
        servers = [
            launch(["--workers", "2", *common], env, logs / "multi.log", wait=False),
            launch(common, env, logs / "single.log", wait=False),
        ]
        try:
            for server in servers:
                wait_up(server)
            database = Database(url)
            revision = schema.current_revision(database)
            database.dispose()
            password = run_cli("api-user", "set", "api", "--generate", env=env).strip()
            run_cli(
                "seed", "--count", str(FLEET_CDRS), "--start", FLEET_START, "--days", "28",
                env=env,
            )  # fmt: skip
            md5 = hashlib.md5(password.encode()).hexdigest()
            yield Fleet(servers[0], servers[1], url, md5, revision)
        finally:
            for server in servers:
                server.stop()
