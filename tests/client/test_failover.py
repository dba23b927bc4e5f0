"""Several base URLs (cdrgate nodes sharing one database): a connection failure moves the
SDK to the next node, a random is never sent twice, and a broken download resumes without
repeating or losing a row. Both "nodes" here are the one real app, as nodes on one database."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.client import CdrClient, ConnectError
from tests.client.helpers import CutStream, endpoint_of
from tests.conftest import API_PASSWORD, API_USER, make_cdr

NODE_A, NODE_B = "http://node-a.test:8088", "http://node-b.test:8088"
DAY = ("2026-05-10 00:00:00", "2026-05-10 23:59:59")


class Nodes(httpx.BaseTransport):
    """Routes both hosts to ``app``; node A refuses connections (``down``) or has its
    ``cut``-th download broken after ``limit`` bytes. Remembers (host, endpoint, random)."""

    def __init__(self, app: httpx.BaseTransport, *, down: bool = False, cut: int = 0) -> None:
        self.app = app
        self.down = down
        self.cut = cut
        self.limit = 0
        self.calls: list[tuple[str, str, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append((host, endpoint_of(request), request.url.params.get("random")))
        if host == "node-a.test" and self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        response = self.app.handle_request(request)
        if host == "node-a.test" and endpoint_of(request) == "cdr/download" and self.cut:
            self.cut -= 1
            if self.cut == 0:
                return httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    stream=CutStream(response.stream, self.limit),
                    request=request,
                )
        return response


@pytest.fixture
def nodes(app_transport: Any) -> Any:
    def factory(**kwargs: Any) -> tuple[CdrClient, Nodes]:
        transport = Nodes(app_transport(), **kwargs)
        client = CdrClient([NODE_A, NODE_B], API_USER, API_PASSWORD, transport=transport)
        return client, transport

    return factory


def test_a_node_refusing_connections_is_passed_over_for_the_next(nodes, add_cdrs):
    add_cdrs(make_cdr(callid="2.1", timestart="2026-05-10 09:00:00"))
    client, transport = nodes(down=True)
    with client:
        assert [cdr.callid for cdr in client.iter_cdrs("all", *DAY)] == ["2.1"]
        assert client.node_url == NODE_B
        assert client.base_url == NODE_A  # the service's identity stays the first URL
    assert [(host, endpoint) for host, endpoint, _ in transport.calls[:2]] == [
        ("node-a.test", "login"),
        ("node-b.test", "login"),
    ]


def test_a_download_broken_mid_stream_resumes_on_the_next_node_without_a_row_twice(nodes, add_cdrs):
    # Three CDRs in one second, then more: the break falls inside that second.
    add_cdrs(
        *(make_cdr(callid=f"3.{i}", timestart="2026-05-10 09:00:00") for i in range(3)),
        *(make_cdr(callid=f"4.{i}", timestart=f"2026-05-10 1{i}:00:00") for i in range(3)),
    )
    client, transport = nodes(cut=1)
    line = make_cdr(callid="3.0", timestart="2026-05-10 09:00:00").csv_line()
    transport.limit = len(CSV_HEADER) + 2 * len(line) + 5  # two whole rows, then a break
    out = io.BytesIO()
    with client:
        result = client.download("all", *DAY, out)
    rows = out.getvalue().decode().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == [
        "3.0", "3.1", "3.2", "4.0", "4.1", "4.2"
    ]  # fmt: skip
    assert result.rows == 6
    downloads = [
        (host, random) for host, endpoint, random in transport.calls if endpoint == "cdr/download"
    ]
    assert [host for host, _ in downloads] == ["node-a.test", "node-b.test"]
    assert downloads[0][1] != downloads[1][1]  # a fresh random: the first may be spent


def test_a_download_request_that_cannot_connect_is_not_resent_with_its_random(nodes, add_cdrs):
    add_cdrs(make_cdr(callid="5.1", timestart="2026-05-10 09:00:00"))
    client, transport = nodes()

    def refuse_downloads_on_a(request: httpx.Request) -> httpx.Response:
        if request.url.host == "node-a.test" and endpoint_of(request) == "cdr/download":
            transport.calls.append(("node-a.test", "cdr/download", request.url.params["random"]))
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return Nodes.handle_request(transport, request)

    transport.handle_request = refuse_downloads_on_a
    with client:
        assert [cdr.callid for cdr in client.iter_cdrs("all", *DAY)] == ["5.1"]
    randoms = [random for _, endpoint, random in transport.calls if endpoint == "cdr/download"]
    assert len(randoms) == 2 and len(set(randoms)) == 2


def test_with_every_node_down_the_error_names_the_last_one_tried(app_transport):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = CdrClient(
        [NODE_A, NODE_B], API_USER, API_PASSWORD, transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(ConnectError, match=r"node-b\.test"):
        client.login()
    client.close()


def test_base_urls_may_be_one_comma_separated_string():
    client = CdrClient(f"{NODE_A}, {NODE_B}/api/v1.1.0/", API_USER, API_PASSWORD)
    assert client.base_urls == (NODE_A, NODE_B)
    client.close()
    with pytest.raises(ValueError, match="give the PBX URL"):
        CdrClient(" , ", API_USER, API_PASSWORD)
