"""A real ``cdrgate serve`` process on loopback, set up through the real CLI."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import CLI, free_port, run_cli


@dataclass
class Served:
    base_url: str
    port: int
    log: Path
    database_url: str
    password: str


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    database_url = f"sqlite:///{tmp_path / 'served.db'}"
    env = {**os.environ, "CDRGATE_DATABASE": database_url}
    run_cli("seed", "--count", "3000", "--seed", "11", "--days", "30", env=env)
    password = run_cli("api-user", "set", "api", "--generate", env=env).strip()
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base_url + "/", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("cdrgate serve did not start:\n" + log.read_text())
            time.sleep(0.1)
    try:
        yield Served(base_url, port, log, database_url, password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
