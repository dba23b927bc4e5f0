"""End to end: real sockets against a real ``cdrgate serve``, the way deployed clients call it."""

from __future__ import annotations

import csv
import hashlib
import io
import socket

import httpx

from cdrgate.cdr import CSV_HEADER
from cdrgate.services.downloads import CdrFilter
from cdrgate.storage import cdrs
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time

START, END = "2026-01-05 00:00:00", "2026-01-09 23:59:59"


def client_from(ip: str, served) -> httpx.Client:
    """A client whose socket is bound to ``ip`` (127.0.0.x are all this machine)."""
    return httpx.Client(base_url=served.base_url, transport=httpx.HTTPTransport(local_address=ip))


def login(http: httpx.Client, served) -> str:
    md5 = hashlib.md5(served.password.encode()).hexdigest()
    answer = http.post(
        "/api/v1.1.0/login", json={"username": "api", "password": md5, "port": "8260"}
    )
    return answer.json()["token"]


def get_random(http: httpx.Client, token: str, ext: str = "all", **extra: str) -> str:
    body = {"extid": ext, "starttime": START, "endtime": END, **extra}
    return http.post(f"/api/v1.1.0/cdr/get_random?token={token}", json=body).json()["random"]


def link(token: str, random: str, ext: str = "all") -> str:
    return (
        f"/api/v1.1.0/cdr/download?extid={ext}&starttime={START.replace(' ', '%20')}"
        f"&endtime={END.replace(' ', '%20')}&token={token}&random={random}"
    )


def expected_csv(served, ext: str = "all") -> str:
    db = Database(served.database_url)
    flt = CdrFilter(ext, parse_pbx_time(START), parse_pbx_time(END))
    with db.read() as conn:
        body = "".join(cdrs.read_lines(conn, flt.query()))
    db.dispose()
    return CSV_HEADER + body


def test_the_whole_flow_returns_exactly_the_stored_cdrs(served):
    with client_from("127.0.0.1", served) as http:
        token = login(http, served)
        response = http.get(link(token, get_random(http, token, "1003,1007"), "1003,1007"))
    assert response.status_code == 200
    assert response.text == expected_csv(served, "1003,1007")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert len(rows) > 20
    assert all("1003" in (row[2], row[3]) or "1007" in (row[2], row[3]) for row in rows[1:])


def test_download_from_another_ip_needs_allowedip(served):
    with (
        client_from("127.0.0.2", served) as app_server,
        client_from("127.0.0.3", served) as third_party,
    ):
        token = login(app_server, served)
        random = get_random(app_server, token)
        assert third_party.get(link(token, random)).json() == {"status": "Failed", "errno": "20015"}
        random = get_random(app_server, token, allowedip="127.0.0.3")
        assert third_party.get(link(token, random)).text == expected_csv(served)


def test_a_link_with_literal_spaces_works_like_on_the_device(served):
    with client_from("127.0.0.1", served) as http:
        token = login(http, served)
        random = get_random(http, token)
    raw_link = (
        f"/api/v1.1.0/cdr/download?extid=all&starttime={START}&endtime={END}"
        f"&token={token}&random={random}"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(f"GET {raw_link} HTTP/1.0\r\nHost: pbx\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    # An HTTP/1.0 client (PHP's default) cannot decode chunks: it gets a length instead.
    assert b"transfer-encoding" not in head.lower()
    assert f"content-length: {len(body)}".encode() in head.lower()
    assert body.decode() == expected_csv(served)


def test_a_link_with_raw_utf8_gets_the_api_answer_not_a_plain_text_400(served):
    # curl sends a link as typed: a character past ASCII leaves as raw UTF-8 bytes, which
    # nginx and the device take. The parser refused them with "Invalid HTTP request received."
    ext = "1003,é"  # one extension, and one typed wrong: it finds no CDR
    with client_from("127.0.0.1", served) as http:
        token = login(http, served)
        random = get_random(http, token, ext)
    raw_link = link(token, random, ext).encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.0\r\nHost: pbx\r\n\r\n" % raw_link)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body.decode() == expected_csv(served, ext) == expected_csv(served, "1003")


def test_tokens_and_randoms_never_reach_the_log(served):
    with client_from("127.0.0.1", served) as http:
        token = login(http, served)
        random = get_random(http, token)
        http.get(link(token, random))
        http.get(link(token, random))  # refused: logged too
    text = served.log.read_text()
    assert "cdr/download" in text and "<redacted>" in text
    assert token not in text and random not in text


def test_a_token_sent_percent_encoded_never_reaches_the_log(served):
    # Clients that encodeURIComponent the whole pair (token%3D...) or its name or value: the
    # log keeps the query as sent, where neither the name nor the bare 32 hex digits showed.
    with client_from("127.0.0.1", served) as http:
        token = login(http, served)
        hexed = "".join(f"%{ord(c):02x}" for c in token)
        for query in (f"token%3D{token}", f"%74oken={hexed}", f"%2574oken%253D{token}"):
            http.post(f"/api/v1.1.0/heartbeat?{query}", json={})
        assert http.post(f"/api/v1.1.0/heartbeat?%74oken={hexed}", json={}).json() == {
            "status": "Success"
        }  # the server takes it: a live token
    text = served.log.read_text()
    assert "heartbeat" in text and "token=<redacted>" in text
    assert token not in text and hexed not in text and "%74oken" not in text
