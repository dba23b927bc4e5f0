"""A NUL a client spells in its request (``"\\u0000"`` in JSON, ``%00`` in a form) against a
real ``cdrgate serve`` on PostgreSQL, whose text cannot hold one: the documented answer, not a
database error (the twenty-fifth round's probe)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator

import pytest

from cdrgate.services.auth import set_api_user
from cdrgate.storage.db import Database
from tests.conftest import postgres_schema
from tests.raw_http import CLOSE, exchange, head_and_body, request
from tests.servers import PASSWORD, PASSWORD_MD5, Server, launch

BODY_JSON_ONLY = {"status": "Failed", "errno": "20000"}
DAY = {"starttime": "2026-05-02 00:00:00", "endtime": "2026-05-02 23:59:59"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("nul")
    with postgres_schema() as url:
        served = launch([], {**os.environ, "CDRGATE_DATABASE": url}, logs / "serve.log")
        database = Database(url)
        try:
            set_api_user(database, "api", PASSWORD, int(time.time() * 1000))
            yield served
        finally:
            database.dispose()
            served.stop()


def answered(server: Server, line: str, body: bytes, extra: bytes = b"") -> tuple[str, bytes]:
    """``line`` with ``body`` on its own connection: the answer's head and body."""
    head, answer_body = head_and_body(exchange(server, request(line, body, extra + CLOSE)))
    return head.decode("latin-1"), answer_body


def api(server: Server, endpoint: str, fields: dict[str, str]) -> dict[str, str]:
    head, body = answered(server, f"POST /api/v1.1.0/{endpoint}", json.dumps(fields).encode())
    assert head.startswith("HTTP/1.1 200 ")
    return json.loads(body)


@pytest.fixture
def logged(server: Server) -> Iterator[None]:
    """After the test: its requests logged no traceback (the log is the module's server's)."""
    start = len(server.output())
    yield
    log = server.output()[start:]
    assert "Traceback" not in log
    assert "unexpected error" not in log


def token(server: Server) -> str:
    return api(server, "login", {"username": "api", "password": PASSWORD_MD5})["token"]


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "api\x00", "password": PASSWORD_MD5},
        {"username": "api", "password": PASSWORD_MD5, "url": "10.0.0.1:8260/\x00"},
        {"username": "api", "password": PASSWORD_MD5, "version": "1.0.2\x00"},
    ],
    ids=["username", "url", "version"],
)
def test_a_login_with_a_nul_is_20000(logged, server, fields):
    # Before: 30003 ("apisrv not started") and a traceback, the store's refusal taken for
    # an outage.
    assert api(server, "login", fields) == BODY_JSON_ONLY


@pytest.mark.parametrize(
    ("endpoint", "fields"),
    [
        ("heartbeat", {"ipaddr": "10.0.0.1\x00", "port": "8260"}),
        ("heartbeat", {"url": "\x00"}),
        ("cdr/get_random", {"extid": "1000\x00", **DAY}),
        ("recording/get_random", {"recording": "a\x00.wav"}),
    ],
    ids=["heartbeat-ipaddr", "heartbeat-url", "cdr-get_random", "recording-get_random"],
)
def test_a_tokened_request_with_a_nul_is_20000_and_the_token_still_works(
    logged, server, endpoint, fields
):
    # Before, a get_random with a NUL extid was answered with a random whose download then
    # failed as a database error.
    key = token(server)
    assert api(server, f"{endpoint}?token={key}", fields) == BODY_JSON_ONLY
    assert api(server, f"heartbeat?token={key}", {})["status"] == "Success"


def test_a_download_link_with_a_nul_in_its_extid_is_20020_and_spends_nothing(logged, server):
    # Before: 30003 and a traceback (the stored randoms asked about a NUL extid).
    key = token(server)
    random = api(server, f"cdr/get_random?token={key}", {"extid": "1000", **DAY})["random"]
    times = "&".join(f"{name}={value.replace(' ', '%20')}" for name, value in DAY.items())

    def download(extid: str) -> dict[str, str]:
        target = f"/api/v1.1.0/cdr/download?extid={extid}&{times}&token={key}&random={random}"
        return json.loads(answered(server, f"GET {target}", b"")[1])

    assert download("1000%00") == {"status": "Failed", "errno": "20020"}
    # The random is still good: spent now, on a store without CDRs.
    assert download("1000") == {"status": "Failed", "errno": "20021"}


def test_a_console_sign_in_with_a_nul_in_the_name_is_a_wrong_name_not_a_500(logged, server):
    head, page = answered(server, "GET /ui/", b"")
    cookie = re.search(r"set-cookie: (cdrgate_signin=[0-9a-f]+)", head, re.IGNORECASE)
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert cookie is not None and csrf is not None
    form = b"username=api%00&password=" + PASSWORD.replace(" ", "+").encode()
    head, page = answered(
        server,
        "POST /ui/login",
        form + b"&csrf=" + csrf[1],
        f"Content-Type: application/x-www-form-urlencoded\r\nCookie: {cookie[1]}\r\n".encode(),
    )
    assert head.startswith("HTTP/1.1 401 ")  # before: 500 Internal Server Error
    assert b"Wrong username or password." in page
