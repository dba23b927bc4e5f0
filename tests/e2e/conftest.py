"""A real ``cdrgate serve`` process on loopback, set up through the real CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import launch, run_cli


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
    server = launch((), env, tmp_path / "serve.log", tmp_path)
    try:
        yield Served(server.base_url, server.port, server.log, database_url, password)
    finally:
        server.stop()
