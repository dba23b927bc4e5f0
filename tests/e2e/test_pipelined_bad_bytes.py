"""A real ``cdrgate serve`` given requests that parse followed, on the same connection, by bytes
that do not: the requests are answered, then the 400, then the close (as nginx does)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cdrgate.api.streaming import WHOLE_SEND_BYTES
from tests.conftest import Flow
from tests.raw_http import exchange
from tests.servers import PASSWORD_MD5, Server, launch, prepare_database

START, END = "2026-05-01 00:00:00", "2026-05-31 23:59:59"
# Enough calls that a month's download is streamed, not sent whole.
SEEDED = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory: Path = tmp_path_factory.mktemp("pipelined")
    url = prepare_database(directory, seed=SEEDED)
    env = {**os.environ, "CDRGATE_DATABASE": url}
    served = launch(["--idle-timeout", "30"], env, directory / "serve.log", directory)
    yield served
    served.stop()


@pytest.fixture
def flow(server: Server) -> Iterator[Flow]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        yield Flow(http)


def login_request(body: bytes, content_length: int) -> bytes:
    return (
        b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: pbx.test\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % content_length
    ) + body


def split_answers(received: bytes) -> list[tuple[bytes, bytes]]:
    """``[(status line, body), ...]`` of Content-Length or chunked answers, in order."""
    answers = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            body, received = rest[:size], rest[size:]
        else:
            assert headers[b"transfer-encoding"] == b"chunked", head
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                body, rest = body + rest[:size], rest[size + 2 :]
                if size == 0:
                    break
            received = rest
        answers.append((status, body))
    return answers


def test_a_login_followed_by_bytes_that_do_not_parse_is_answered_before_the_400(server):
    body = json.dumps({"username": "api", "password": PASSWORD_MD5, "port": "8260"}).encode()
    # A Content-Length too short: the body's tail is read as the next request, which is junk.
    cut = len(body) - 5
    answers = split_answers(exchange(server, login_request(body, cut)))

    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]
    # The login saw the cut body: not JSON, so a refusal in the API's own shape, not a 500.
    assert json.loads(answers[0][1])["status"] == "Failed"
    assert "Traceback" not in server.output()


def test_pipelined_quick_requests_are_all_answered_before_the_400(server):
    body = json.dumps({"username": "api", "password": PASSWORD_MD5, "port": "8260"}).encode()
    data = login_request(body, len(body)) * 3 + b"\x00not a request\r\n\r\n"
    answers = split_answers(exchange(server, data))

    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK"] * 3 + [
        b"HTTP/1.1 400 Bad Request"
    ]
    assert all(json.loads(answer)["status"] == "Success" for _, answer in answers[:3])


def test_a_streamed_download_followed_by_bytes_that_do_not_parse_is_sent_whole(server, flow):
    token = flow.login(password=PASSWORD_MD5)["token"]
    random = flow.get_random(token, "all", START, END)["random"]
    target = flow.download_url(token, random, "all", START, END)
    data = f"GET {target} HTTP/1.1\r\nHost: pbx.test\r\n\r\n".encode() + b"}junk\r\n\r\n"
    answers = split_answers(exchange(server, data))

    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]
    csv = answers[0][1]
    assert len(csv) > WHOLE_SEND_BYTES  # streamed, not sent whole
    assert csv.count(b"\n") == SEEDED + 1  # every call and the header line


def test_a_request_whose_own_body_does_not_parse_gets_the_400_alone(server):
    # Chunked framing broken inside the only request: nothing was parsed before it.
    data = (
        b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: pbx.test\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    answers = split_answers(exchange(server, data))
    assert [status for status, _ in answers] == [b"HTTP/1.1 400 Bad Request"]


def test_a_request_whose_body_does_not_parse_after_one_that_did_gets_the_400_after_it(server):
    body = json.dumps({"username": "api", "password": PASSWORD_MD5, "port": "8260"}).encode()
    data = login_request(body, len(body)) + (
        b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: pbx.test\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\nzz\r\n'
    )
    answers = split_answers(exchange(server, data))

    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]
    assert json.loads(answers[0][1])["status"] == "Success"
