"""A real ``cdrgate serve``: forwarding headers from a client that is not a --trusted-proxy
change nothing. uvicorn's own proxy handling (on by default, trusting loopback) is off."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cdrgate.services.audit_log import AuditQuery, attempts
from cdrgate.storage.db import Database
from tests.servers import PASSWORD_MD5
from tests.waiting import wait_until

START, END = "2026-05-02 00:00:00", "2026-05-02 23:59:59"
SPOOF = {
    "X-Forwarded-For": "203.0.113.9",
    "Forwarded": "for=203.0.113.9",
    "X-Real-IP": "203.0.113.9",
}


def client(server, ip: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=ip)
    return httpx.Client(base_url=server.base_url, transport=transport, headers=SPOOF, timeout=30)


def login(
    http: httpx.Client, md5: str = PASSWORD_MD5, spoof: str = "203.0.113.9"
) -> dict[str, Any]:
    body = {"username": "api", "password": md5, "port": "8260"}
    headers = {"X-Forwarded-For": spoof, "Forwarded": f"for={spoof}"}
    return http.post("/api/v1.1.0/login", json=body, headers=headers).json()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_spoofed_forwarded_address_does_not_get_past_permit(start_server, workers):
    server = start_server("--permit", "127.0.0.2", "--workers", workers)
    with client(server) as http:
        assert login(http, spoof="127.0.0.2") == {"status": "Failed", "errno": "20015"}


def test_the_audit_and_the_lockout_see_the_socket_address_not_the_headers(start_server):
    server = start_server(CDRGATE_LOCKOUT_FAILURES="2")
    with client(server) as http:
        token = login(http)["token"]
        body = {"extid": "all", "starttime": START, "endtime": END}
        random = http.post(f"/api/v1.1.0/cdr/get_random?token={token}", json=body).json()
        params = {**body, "token": token, "random": random["random"]}
        assert http.get("/api/v1.1.0/cdr/download", params=params).status_code == 200

        # Each failure claims another origin; all of them count against 127.0.0.1.
        for n in range(2):
            assert login(http, "0" * 32, spoof=f"198.51.100.{n}")["errno"] == "20003"
        assert login(http, spoof="198.51.100.99") == {"status": "Failed", "errno": "20002"}

    db = Database(server.database_url)
    try:
        audited = attempts(db, AuditQuery())
    finally:
        db.dispose()
    assert [row.client_ip for row in audited] == ["127.0.0.1"]


def test_the_access_log_names_the_client_as_the_rules_saw_it(start_server):
    # Behind a trusted proxy the socket peer is the proxy: the line names the client it
    # forwarded, as the permit list, the lockout and the audit see it. From any other peer
    # the header is a claim, and the line names the peer.
    server = start_server("--trusted-proxy", "127.0.0.1")
    with client(server) as http:
        assert http.get("/?via=proxy").status_code == 200
    with client(server, "127.0.0.2") as http:
        assert http.get("/?via=other").status_code == 200

    def named(via: str) -> list[str]:
        """The client each access line of ``GET /?via=...`` names."""
        lines = [line for line in server.log.read_text().splitlines() if f'/?via={via}"' in line]
        return [line.split("cdrgate.access: ", 1)[1].split(" ", 1)[0] for line in lines]

    # An access line is written once the answer has gone: it may come after the client's read.
    wait_until(lambda: bool(named("proxy") and named("other")), "both access lines")
    assert named("proxy") == ["203.0.113.9"] and named("other") == ["127.0.0.2"]


def test_networks_written_as_ipv4_mapped_ipv6_match_ipv4_clients(start_server):
    # How a dual-stack socket (and many logs) write an IPv4 address: the rules compare
    # clients as IPv4, so these entries matched no one: every client refused, the proxy
    # not believed.
    server = start_server("--permit", "::ffff:127.0.0.2", "--trusted-proxy", "::ffff:127.0.0.3/128")
    with client(server, "127.0.0.2") as http:
        assert login(http)["status"] == "Success"
    with client(server, "127.0.0.3") as proxy:
        assert login(proxy, spoof="127.0.0.2")["status"] == "Success"
        assert login(proxy, spoof="127.0.0.9") == {"status": "Failed", "errno": "20015"}
    with client(server, "127.0.0.9") as outsider:
        assert login(outsider, spoof="127.0.0.2") == {"status": "Failed", "errno": "20015"}
