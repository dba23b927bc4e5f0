"""Answers holding a token, a random or call records are kept by no cache and sniffed by no
browser, on every API of a real ``cdrgate serve``."""

from __future__ import annotations

import os

import httpx
import pytest

from cdrgate.api.envelope import PRIVATE_HEADERS
from cdrgate.storage.db import Database
from tests.conftest import Flow
from tests.servers import PASSWORD_MD5, Server, ServerFactory, launch, prepare_database


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> Server:
    return module_server_factory()


def _private(response: httpx.Response) -> bool:
    return all(response.headers.get(name) == value for name, value in PRIVATE_HEADERS.items())


def test_device_api_answers_are_private(server: Server):
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        flow = Flow(http)
        login = http.post(
            flow.url("login"), json={"username": "api", "password": PASSWORD_MD5, "port": "8260"}
        )
        token = login.json()["token"]
        body = {
            "extid": "all",
            "starttime": "2026-05-01 00:00:00",
            "endtime": "2026-05-02 00:00:00",
        }
        random = http.post(flow.url("cdr/get_random"), params={"token": token}, json=body)
        assert random.json()["status"] == "Success"
        download = flow.download(token)
        refused = http.post(flow.url("heartbeat"), params={"token": "0" * 32})
        assert refused.json()["status"] == "Failed"
        for answer in (login, random, download, refused):
            assert _private(answer), (answer.request.url.path, answer.headers)


def test_query_api_and_metrics_answers_are_private(server: Server):
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        token = Flow(http).login(password=PASSWORD_MD5)["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        answers = [
            http.get("/v1/cdrs", params={"limit": 1}, headers=bearer),
            http.get("/v1/cdrs", params={"limit": 1}, headers={**bearer, "Accept": "text/csv"}),
            http.get("/v1/cdrs"),  # the 401 problem document
            http.get("/metrics"),
        ]
    for answer in answers:
        assert _private(answer), (answer.request.url, answer.status_code, answer.headers)


def test_recording_answers_are_private(tmp_path):
    # A recording is a call's audio: the device API's recording/download (its 206 and 416
    # too) carried Cache-Control but not nosniff, and the 416 neither.
    url = prepare_database(tmp_path)
    db = Database(url)
    with db.read() as conn:
        name = conn.exec_driver_sql(
            "SELECT recording FROM cdr WHERE recording != '' ORDER BY recording LIMIT 1"
        ).scalar_one()
    db.dispose()
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / name).write_bytes(b"RIFF" * 100)
    env = {**os.environ, "CDRGATE_DATABASE": url}
    server = launch(("--recordings", str(folder)), env, tmp_path / "serve.log", tmp_path)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            flow = Flow(http)
            token = flow.login(password=PASSWORD_MD5)["token"]

            def download(range_: str | None) -> httpx.Response:
                asked = http.post(
                    flow.url("recording/get_random"),
                    params={"token": token},
                    json={"recording": name},
                )
                link = {"recording": name, "token": token, "random": asked.json()["random"]}
                headers = {"Range": range_} if range_ else {}
                return http.get(flow.url("recording/download"), params=link, headers=headers)

            answers = [download(None), download("bytes=0-9"), download("bytes=9000-")]
    finally:
        server.stop()
    assert [answer.status_code for answer in answers] == [200, 206, 416]
    for answer in answers:
        assert _private(answer), (answer.status_code, answer.headers)


def test_push_answers_are_private_too(server: Server):
    # Every device API answer carries the headers (SECURITY.md): a push's refusals too.
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        url = Flow(http).url("cdr/push")
        answers = [
            http.post(url, json=[]),  # no key: 401
            http.post(url, content=b"x", headers={"Authorization": "Bearer " + "0" * 32}),
        ]
    for answer in answers:
        assert answer.json()["status"] == "Failed"
        assert _private(answer), (answer.status_code, answer.headers)
