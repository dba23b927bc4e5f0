"""The SDK over real sockets: a `cdrgate serve` process, and uvicorn with real TLS."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from cdrgate.client import CdrClient, ConnectError, TlsError
from tests.client.helpers import free_socket
from tests.conftest import API_PASSWORD, API_USER
from tests.servers import serving

DAYS = ("2026-05-27 00:00:00", "2026-05-29 23:59:59")


@pytest.fixture
def cdrgate_serve(served_db: str, tmp_path) -> Iterator[str]:
    """`cdrgate serve` as a child process on a free loopback port; yields its base URL."""
    env = {**os.environ, "CDRGATE_DATABASE": served_db}
    with serving(["--log-level", "warning"], env, tmp_path / "serve.log") as server:
        yield server.base_url


@pytest.mark.e2e
def test_download_from_a_real_cdrgate_serve(cdrgate_serve):
    for version in ("v1.1.0", "v2.0.0"):
        with CdrClient(cdrgate_serve, API_USER, API_PASSWORD, api_version=version) as client:
            out = io.BytesIO()
            result = client.download("all", *DAYS, out)
            typed = list(client.iter_cdrs("1001", *DAYS))
        assert [line.split(",")[0] for line in out.getvalue().decode().splitlines()] == [
            "callid", "a", "b", "c",
        ]  # fmt: skip
        assert (result.rows, result.windows) == (3, 3)
        assert [cdr.callid for cdr in typed] == ["b"]


def test_tls_with_the_pbx_ca_file(tls_server, ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with CdrClient(tls_server, API_USER, API_PASSWORD, verify=ca_file) as client:
        assert [cdr.callid for cdr in client.iter_cdrs("all", *DAYS)] == ["a", "b", "c"]


def test_tls_refuses_an_unknown_certificate_by_default(tls_server):
    with CdrClient(tls_server, API_USER, API_PASSWORD) as client:
        with pytest.raises(TlsError, match="certificate verify failed"):
            client.login()


def test_tls_verification_can_be_switched_off(tls_server):
    with CdrClient(tls_server, API_USER, API_PASSWORD, verify=False) as client:
        assert len(list(client.iter_cdrs("all", *DAYS))) == 3


def test_an_unreachable_pbx_is_a_connect_error():
    sock = free_socket()  # bound but never listening: connections are refused
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with CdrClient(url, API_USER, API_PASSWORD) as client:
            with pytest.raises(ConnectError, match="cannot connect"):
                client.login()
    finally:
        sock.close()
