"""The test launcher of ``cdrgate serve`` under a busy machine: other suites run at the same
time and take loopback ports whenever they like."""

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
def ports_taken_at_spawn(monkeypatch) -> Iterator[list[socket.socket]]:
    """Another process listening, from the moment the server is spawned, on any port the
    launcher chose for it: what a parallel suite does when it binds in between."""
    taken: list[socket.socket] = []
    spawn = subprocess.Popen

    def spawn_after_the_port_is_taken(command: list[str], **kwargs: Any) -> Any:
        port = int(command[command.index("--port") + 1])
        if port:
            thief = socket.socket()
            thief.bind(("127.0.0.1", port))
            thief.listen()
            taken.append(thief)
        return spawn(command, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spawn_after_the_port_is_taken)
    yield taken
    for thief in taken:
        thief.close()


def test_a_port_taken_by_another_process_does_not_fail_a_launch(
    ports_taken_at_spawn, tmp_path: Path
):
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    with servers.running_server(["--log-level", "warning"], env, tmp_path / "serve.log") as server:
        assert httpx.get(server.base_url + "/api/v1.1.0/login", timeout=30).status_code < 500
        assert server.port not in [thief.getsockname()[1] for thief in ports_taken_at_spawn]
