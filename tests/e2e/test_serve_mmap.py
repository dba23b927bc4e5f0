"""A real ``cdrgate serve`` on a SQLite store maps the store file into memory once a small
flow has read it (``sqlite_mmap_mib``), and does not with the map turned off (0): seen in
the process's /proc/<pid>/maps, where SQLite's map of the file is a line naming it."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import launch, run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

DAY = {"starttime": "2025-01-10 00:00:00", "endtime": "2025-01-10 23:59:59"}


def _store_mapped_after_a_flow(tmp_path: Path, mmap_mib: str) -> bool:
    store = tmp_path / "served.db"
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{store}"}
    run_cli("seed", "--count", "2000", "--seed", "11", "--days", "30", env=env)
    password = run_cli("api-user", "set", "api", "--generate", env=env).strip()
    server = launch((), {**env, "CDRGATE_SQLITE_MMAP_MIB": mmap_mib}, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.base_url) as http:
            md5 = hashlib.md5(password.encode()).hexdigest()
            login = {"username": "api", "password": md5, "port": "8260"}
            token = http.post("/api/v1.1.0/login", json=login).json()["token"]
            ask = {"extid": "all", **DAY}
            answer = http.post(f"/api/v1.1.0/cdr/get_random?token={token}", json=ask).json()
            query = httpx.QueryParams({**ask, "token": token, "random": answer["random"]})
            assert http.get(f"/api/v1.1.0/cdr/download?{query}").status_code == 200
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    finally:
        server.stop()
    # WAL mode maps the -shm file whatever the setting: only the store's own name counts.
    return any(line.endswith(str(store)) for line in maps.splitlines())


def test_serve_reads_a_sqlite_store_through_a_map(tmp_path):
    assert _store_mapped_after_a_flow(tmp_path, "1024")


def test_serve_with_the_map_turned_off_does_not_map_the_store(tmp_path):
    assert not _store_mapped_after_a_flow(tmp_path, "0")
