"""Fixtures for the security tests: real servers from ``tests.servers``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerFactory, StartServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """For modules whose tests can share servers (starting one costs seconds)."""
    factory = ServerFactory(tmp_path_factory.mktemp("served"))
    yield factory
    factory.close()
