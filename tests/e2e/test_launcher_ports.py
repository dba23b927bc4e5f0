"""The test launcher of ``cdrgate serve`` under a busy machine: other suites run at the same
time and take loopback ports whenever they like. So the launcher hands the server no port of
its choosing (one picked and handed over is free only until then), and finds the one the
server bound among every process's listeners."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdrgate.testing import servers


@pytest.fixture
def spawned_beside_a_listener(monkeypatch) -> Iterator[tuple[list[str], socket.socket]]:
    """The ports the launcher hands ``cdrgate serve``, and another process's listener on
    loopback from before the spawn (what a parallel suite holds)."""
    handed: list[str] = []
    spawn = subprocess.Popen
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()

    def recorded(command: list[str], **kwargs: Any) -> Any:
        handed.append(command[command.index("--port") + 1])
        return spawn(command, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recorded)
    try:
        yield handed, other
    finally:
        other.close()


def test_the_server_binds_its_own_port_and_the_launcher_finds_it(
    spawned_beside_a_listener, tmp_path: Path
):
    handed, other = spawned_beside_a_listener
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    # At info, uvicorn's log names the port it bound: the check on what the launcher found.
    with servers.running_server(["--log-level", "info"], env, tmp_path / "serve.log") as server:
        assert handed == ["0"]  # the kernel picks it at the server's bind: nothing to take
        assert f"running on http://127.0.0.1:{server.port} " in server.output()
        assert server.port != other.getsockname()[1]
        assert httpx.get(server.base_url + "/api/v1.1.0/login", timeout=30).status_code < 500
