"""Real ``cdrgate serve`` processes for the e2e, security and PostgreSQL tests, started by the
one launcher in :mod:`cdrgate.testing.servers`; this adds the test data and pytest reporting."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan
from cdrgate.services.auth import set_api_user
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from cdrgate.testing.servers import CLI, Server, ServerStartError, start_server, wait_until_up

__all__ = ["CLI", "PASSWORD", "PASSWORD_MD5", "Server", "ServerFactory", "launch", "run_cli"]

PASSWORD = "a long enough api password"
PASSWORD_MD5 = hashlib.md5(PASSWORD.encode()).hexdigest()


def run_cli(*args: str, env: Mapping[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def launch(
    args: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    directory: Path | None = None,
    scheme: str = "http",
    wait: bool = True,
) -> Server:
    """:func:`cdrgate.testing.servers.start_server`, a failed start being a test failure."""
    try:
        return start_server(args, env, log, scheme=scheme, cwd=directory, wait=wait)
    except ServerStartError as exc:
        pytest.fail(str(exc))


def wait_up(server: Server) -> None:
    try:
        wait_until_up(server)
    except ServerStartError as exc:
        pytest.fail(str(exc))


@contextmanager
def serving(args: Sequence[str], env: Mapping[str, str], log: Path) -> Iterator[Server]:
    server = launch(args, env, log)
    try:
        yield server
    finally:
        server.stop()


StartServer = Callable[..., Server]


def prepare_database(directory: Path, seed: int = 300) -> str:
    """A migrated SQLite database with ``seed`` CDRs in May 2026 and the API user ``api``.

    Built in-process (not through the CLI) because each CLI start costs seconds here."""
    path = directory / "cdrgate.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        db = Database(url)
        try:
            schema.upgrade(db)
            plan = SeedPlan(count=seed, seed=7, start="2026-05-01 00:00:00", days=30, extensions=20)
            seed_database(db, plan)
            set_api_user(db, "api", PASSWORD, 1_780_000_000_000)
        finally:
            db.dispose()
    return url


class ServerFactory:
    """``factory(*serve_args, scheme="http", **env)`` starts a server; ``close()`` stops all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.servers: list[Server] = []

    def __call__(self, *args: str, scheme: str = "http", **env_extra: str) -> Server:
        database_url = prepare_database(self.directory)
        env = {**os.environ, "CDRGATE_DATABASE": database_url, **env_extra}
        log = self.directory / f"serve-{len(self.servers)}.log"
        server = launch(args, env, log, self.directory, scheme)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
