"""A recordings folder, CDRs naming files in it, and the recording flow as plain HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from cdrgate.app import create_app
from cdrgate.clock import Clock
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage.db import Database
from tests.conftest import API_MD5, API_PASSWORD, API_USER, make_cdr

WAV = b"RIFF" + b"\x00" * 40 + b"tone" * 100


def app_with_one_recording(db: Database, clock: Clock, folder: Path, name: str) -> Starlette:
    """A server's app over ``db`` with the API account, one recording ``name`` (WAV) filed
    under 2026/05/28 in ``folder``, and one CDR naming it."""
    (folder / "2026" / "05" / "28").mkdir(parents=True)
    (folder / "2026" / "05" / "28" / name).write_bytes(WAV)
    set_api_user(db, API_USER, API_PASSWORD, int(clock() * 1000))
    store_records(db, [make_cdr(recording=name)])
    settings = Settings(database=db.url, access_log=False, recordings=str(folder))
    return create_app(settings, database=db, clock=clock)


class RecordingFlow:
    def __init__(self, http: Any, version: str = "v1.1.0") -> None:
        self.http = http
        self.version = version

    def url(self, endpoint: str) -> str:
        return f"/api/{self.version}/{endpoint}"

    def token(self) -> str:
        body = {"username": API_USER, "password": API_MD5, "port": "8260"}
        answer = self.http.post(self.url("login"), json=body).json()
        assert answer["status"] == "Success", answer
        return answer["token"]

    def get_random(self, token: str, name: str | None, **extra: Any) -> dict[str, Any]:
        body = {"recording": name, **extra} if name is not None else dict(extra)
        return self.http.post(
            self.url("recording/get_random"), params={"token": token}, json=body
        ).json()

    def random(self, token: str, name: str, **extra: Any) -> str:
        answer = self.get_random(token, name, **extra)
        assert answer["status"] == "Success", answer
        return answer["random"]

    def fetch(self, token: str, name: str, random: str, method: str = "GET", **kw: Any) -> Any:
        query = f"recording={name}&random={random}&token={token}"
        return self.http.request(method, f"{self.url('recording/download')}?{query}", **kw)

    def download(self, name: str, **kw: Any) -> Any:
        token = self.token()
        return self.fetch(token, name, self.random(token, name), **kw)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    (root / "2026" / "05" / "28").mkdir(parents=True)
    return root


@pytest.fixture
def store_recording(folder: Path, add_cdrs):
    """``store_recording(name, data, sub="2026/05/28", cdr=True)``: a file and a CDR naming it."""
    counter = iter(range(1, 10_000))

    def store(name: str, data: bytes = WAV, sub: str = "2026/05/28", cdr: bool = True) -> Path:
        path = folder / sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if cdr:
            add_cdrs(make_cdr(callid=f"1780000000.{next(counter)}", recording=name))
        return path

    return store


@pytest.fixture
def rec_client(make_client, api_account, folder):
    return make_client(recordings=str(folder))


@pytest.fixture
def rec(rec_client) -> RecordingFlow:
    return RecordingFlow(rec_client)
