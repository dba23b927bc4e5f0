"""The SDK over real sockets: a `cdrgate serve` process, and uvicorn with real TLS."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
import trustme

from cdrgate.app import create_app
from cdrgate.client import CdrClient, ConnectError, TlsError
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.client.helpers import free_socket, live_server
from tests.conftest import API_PASSWORD, API_USER, make_cdr
from tests.servers import serving

DAYS = ("2026-05-27 00:00:00", "2026-05-29 23:59:59")


@pytest.fixture
def served_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    db = Database(url)
    schema.upgrade(db)
    set_api_user(db, API_USER, API_PASSWORD, 0)
    store_records(
        db,
        [
            make_cdr(callid="a", timestart="2026-05-27 23:59:59"),
            make_cdr(callid="b", timestart="2026-05-28 00:00:00", callfrom="1001"),
            make_cdr(callid="c", timestart="2026-05-29 12:00:00", didnumber="5550100"),
        ],
    )
    db.dispose()
    return url


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


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(served_db, ca, tmp_path) -> Iterator[str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    app = create_app(Settings(database=served_db, access_log=False))
    with live_server(app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as port:
        yield f"https://127.0.0.1:{port}"


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
