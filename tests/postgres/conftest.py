"""PostgreSQL-only fixtures: a migrated database in a fresh schema, and a fleet of real
``cdrgate serve`` processes (one with ``--workers 2``, one single) sharing one database."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.conftest import postgres_schema
from tests.servers import CLI, free_port, run_cli

# The streamed export must be much larger than the memory bound the test allows.
FLEET_CDRS = 120_000
FLEET_START = "2026-03-01"


@pytest.fixture
def pg_db() -> Iterator[Database]:
    with postgres_schema() as url:
        database = Database(url)
        schema.upgrade(database)
        yield database
        database.dispose()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.base_url + "/", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail("cdrgate serve did not start:\n" + self.log.read_text())
                time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """Child processes running a uvicorn worker (multiprocessing spawn)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid and b"spawn_main" in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(args: list[str], env: dict[str, str], log: Path) -> Server:
    port = free_port()
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--log-level", "warning", *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Server(process, f"http://127.0.0.1:{port}", log)


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
        proxy = ["--trusted-proxy", "127.0.0.1"]
        # Both start on an empty schema at once: serve migrates, one process at a time.
        servers = [
            start_server(["--workers", "2", *proxy], env, logs / "multi.log"),
            start_server(proxy, env, logs / "single.log"),
        ]
        try:
            for server in servers:
                server.wait_ready()
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
