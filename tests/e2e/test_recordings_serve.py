"""`cdrgate serve --recordings DIR` as a real process: the SDK and curl-like clients over
real sockets, a file copied in while it runs, and the allowedip rule between two addresses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from cdrgate.client import CdrClient, PbxError
from cdrgate.storage.db import Database
from tests.servers import PASSWORD, PASSWORD_MD5, Server, launch, prepare_database

pytestmark = pytest.mark.e2e


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Server, list[str], object]]:
    database_url = prepare_database(tmp_path)
    db = Database(database_url)
    with db.read() as conn:
        names = list(
            conn.exec_driver_sql(
                "SELECT recording FROM cdr WHERE recording != '' ORDER BY recording LIMIT 3"
            ).scalars()
        )
    db.dispose()
    folder = tmp_path / "recordings"
    (folder / "2026" / "05").mkdir(parents=True)
    (folder / "2026" / "05" / names[0]).write_bytes(b"RIFF-first" * 1000)
    env = {**os.environ, "CDRGATE_DATABASE": database_url, "CDRGATE_ACCESS_LOG": "0"}
    server = launch(("--recordings", str(folder)), env, tmp_path / "serve.log", tmp_path)
    try:
        yield server, names, folder
    finally:
        server.stop()


def test_sdk_downloads_over_a_real_socket_and_finds_a_file_copied_in_later(served, tmp_path):
    server, names, folder = served
    with CdrClient(server.base_url, "api", PASSWORD) as client:
        first = client.download_recording(names[0], tmp_path / "first.wav")
        assert first.path.read_bytes() == b"RIFF-first" * 1000
        with pytest.raises(PbxError) as caught:
            client.download_recording(names[1], tmp_path)
        assert caught.value.errno == "20014"
        (folder / "2026" / "06").mkdir()
        (folder / "2026" / "06" / names[1]).write_bytes(b"later")
        assert client.download_recording(names[1], tmp_path).path.read_bytes() == b"later"


def test_a_download_from_another_address_needs_allowedip(served):
    server, names, _folder = served
    url = server.base_url + "/api/v1.1.0/"
    with (
        httpx.Client() as app,
        httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other,
    ):
        login = {"username": "api", "password": PASSWORD_MD5, "port": "8260"}
        token = app.post(url + "login", json=login).json()["token"]

        def link(**extra: str) -> str:
            body = {"recording": names[0], **extra}
            answer = app.post(url + "recording/get_random", params={"token": token}, json=body)
            random = answer.json()["random"]
            # Seeded names may hold "+" (callers like +4179...): encoded, as a client must.
            name = quote(names[0], safe="")
            return f"{url}recording/download?recording={name}&token={token}&random={random}"

        assert other.get(link()).json() == {"status": "Failed", "errno": "20015"}
        allowed = other.get(link(allowedip="127.0.0.2"))
        assert allowed.headers["content-type"] == "audio/wav"
        assert allowed.content == b"RIFF-first" * 1000


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_serve_warns_when_the_recordings_folder_is_not_a_folder(kind, tmp_path):
    # A typo in --recordings would otherwise look like a PBX without recordings: all 20014.
    database_url = prepare_database(tmp_path)
    folder = tmp_path / "recordnigs"
    if kind == "a file":
        folder.write_text("not a folder")
    env = {**os.environ, "CDRGATE_DATABASE": database_url, "CDRGATE_ACCESS_LOG": "0"}
    log = tmp_path / "serve.log"
    server = launch(("--recordings", str(folder)), env, log, tmp_path)
    server.stop()
    warnings = [line for line in log.read_text().splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: recordings folder {folder} is not a folder: every recording answers 20014"
    ]
