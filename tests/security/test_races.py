"""Races against a real `cdrgate serve` on loopback: one random, many downloads; many wrong
passwords, one lockout counter. And what the server's own logs say about it all."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cdrgate.errors import Errno
from tests.conftest import Flow
from tests.servers import PASSWORD_MD5, Server, ServerFactory

RACERS = 100
GUESSERS = 20


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> Server:
    # Debug level: uvicorn's own loggers get their say too, and must not leak secrets either.
    return module_server_factory("--log-level", "debug")


def _client(server: Server, source_ip: str = "127.0.0.1") -> httpx.Client:
    # All of 127.0.0.0/8 is loopback: binding the source address gives each test its own
    # client IP, so a lockout in one test cannot leak into another.
    transport = httpx.HTTPTransport(local_address=source_ip)
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=60)


def _race(count: int, call) -> list[Any]:
    start = threading.Barrier(count)

    def one(index: int):
        start.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


# A month is paged after the redeem; a day's small result is read in the redeem's transaction.
@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-05-01 00:00:00", "2026-05-31 23:59:59"),
        ("2026-05-28 00:00:00", "2026-05-28 23:59:59"),
    ],
    ids=["month", "day"],
)
def test_a_hundred_concurrent_downloads_of_one_random_yield_exactly_one_csv(server, start, end):
    # The racers' clients first, the random last: it is valid 30 s, and on a loaded machine
    # setting up a hundred clients must not eat into that.
    clients = [_client(server) for _ in range(RACERS)]
    try:
        with _client(server) as http:
            flow = Flow(http)
            token = flow.login(password=PASSWORD_MD5)["token"]
            random = flow.get_random(token, "all", start, end)["random"]
            link = flow.download_url(token, random, "all", start, end)
        responses = _race(RACERS, lambda i: clients[i].get(link))
    finally:
        for client in clients:
            client.close()

    csvs = [r for r in responses if r.headers["content-type"].startswith("text/csv")]
    refused = [r.json() for r in responses if r not in csvs]
    assert len(csvs) == 1, {(r.status_code, r.text[:80]) for r in responses}
    assert csvs[0].text.startswith("callid,")
    assert refused == [{"status": "Failed", "errno": Errno.CDR_RANDOM_INVALID.value}] * (RACERS - 1)


def test_concurrent_wrong_logins_never_get_more_than_five_tries(server):
    guesser_ip = "127.0.0.2"
    clients = [_client(server, guesser_ip) for _ in range(GUESSERS)]
    body = {"username": "api", "password": "0" * 32, "port": "8260"}
    try:
        answers = _race(GUESSERS, lambda i: clients[i].post("/api/v1.1.0/login", json=body).json())
    finally:
        for client in clients:
            client.close()
    errnos = [answer["errno"] for answer in answers]
    assert errnos.count(Errno.BAD_CREDENTIALS.value) == 5
    assert errnos.count(Errno.LOCKED_OUT.value) == GUESSERS - 5
    with _client(server, guesser_ip) as http:
        assert Flow(http).login(password=PASSWORD_MD5) == {
            "status": "Failed",
            "errno": Errno.LOCKED_OUT.value,
        }
    # The lock is per client IP: the application server itself can still log in.
    with _client(server) as http:
        assert Flow(http).login(password=PASSWORD_MD5)["status"] == "Success"


def test_tokens_and_randoms_never_reach_the_logs(server):
    secrets_used = []
    with _client(server, "127.0.0.3") as http:
        for version in ("v1.1.0", "v2.0.0"):
            flow = Flow(http, version)
            token = flow.login(password=PASSWORD_MD5)["token"]
            answer = flow.get_random(token)
            secrets_used += [token, answer["random"]]
            link = flow.download_url(
                token, answer["random"], "all", "2026-05-01 00:00:00", "2026-05-31 23:59:59"
            )
            assert http.get(link).status_code == 200
            assert http.get(link).json()["errno"] == Errno.CDR_RANDOM_INVALID.value  # replay
            # A secret in an unusual place: a path segment and a second query parameter.
            http.get(f"/api/{version}/cdr/download/{token}?x=1&token={token}&random={token}")
            http.post(f"/api/{version}/heartbeat?token={token}", json={})
            http.post(f"/api/{version}/logout?token={token}")
    server.stop()  # flush everything, including shutdown messages
    log = server.output()
    assert "cdr/download?" in log  # the access log did record the requests
    assert "token=<redacted>" in log
    for secret in secrets_used:
        assert secret not in log
