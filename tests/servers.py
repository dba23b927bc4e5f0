"""Real ``cdrgate serve`` processes on loopback, shared by the e2e and security tests and the soak bench."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cdrgate.seed import SeedPlan
from cdrgate.services.auth import set_api_user
from cdrgate.services.importing import seed_database
from cdrgate.storage import schema
from cdrgate.storage.db import Database

CLI = [sys.executable, "-m", "cdrgate"]
PASSWORD = "a long enough api password"
PASSWORD_MD5 = hashlib.md5(PASSWORD.encode()).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Server:
    base_url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    directory: Path
    database_url: str
    env: dict[str, str]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


StartServer = Callable[..., Server]


def prepare_database(directory: Path, seed: int = 300) -> str:
    """A migrated SQLite database with ``seed`` CDRs in May 2026 and the API user ``api``.

    Built in-process (not through the CLI) because each CLI start costs seconds here."""
    path = directory / "cdrgate.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        db = Database(url)
        schema.upgrade(db)
        plan = SeedPlan(count=seed, seed=7, start="2026-05-01 00:00:00", days=30, extensions=20)
        seed_database(db, plan)
        set_api_user(db, "api", PASSWORD, 1_780_000_000_000)
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


def launch(
    args: tuple[str, ...], env: dict[str, str], log: Path, directory: Path, scheme: str = "http"
) -> Server:
    """Start ``cdrgate serve`` on a free loopback port and wait until it answers."""
    port = free_port()
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    server = Server(
        f"{scheme}://127.0.0.1:{port}", port, process, log, directory, env["CDRGATE_DATABASE"], env
    )
    _wait_until_up(server)
    return server


def _wait_until_up(server: Server) -> None:
    for _ in range(300):  # about 30 s: the machine is shared and may be slow
        if server.process.poll() is not None:
            pytest.fail("cdrgate serve exited:\n" + server.output())
        try:
            httpx.get(server.base_url + "/", timeout=1, verify=False)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    pytest.fail("cdrgate serve did not start:\n" + server.output())
