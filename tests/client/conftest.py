"""Client fixtures: the SDK wired to the real app, in process, through an httpx transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trustme
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.client import CdrClient
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.client.helpers import Recorder, live_server
from tests.conftest import API_PASSWORD, API_USER, make_cdr

BASE_URL = "http://pbx.test:8088"


@pytest.fixture
def app_transport(
    make_client: Callable[..., TestClient], api_account: tuple[str, str]
) -> Callable[..., httpx.BaseTransport]:
    """``app_transport(**settings)``: the app behind Starlette's in-process transport."""

    def factory(**settings: Any) -> httpx.BaseTransport:
        # The TestClient's transport runs the ASGI app without a socket; the SDK takes any
        # httpx transport, so it talks to the real app exactly as to a device.
        return make_client(**settings)._transport

    return factory


@pytest.fixture
def make_sdk(
    app_transport: Callable[..., httpx.BaseTransport],
) -> Iterator[Callable[..., tuple[CdrClient, Recorder]]]:
    """``make_sdk(password=..., settings={}, after=hook, **client_kwargs)`` -> (client, recorder)."""
    clients: list[CdrClient] = []

    def factory(
        *,
        password: str = API_PASSWORD,
        settings: dict[str, Any] | None = None,
        after: Any = None,
        **kwargs: Any,
    ) -> tuple[CdrClient, Recorder]:
        recorder = Recorder(app_transport(**(settings or {})), after)
        client = CdrClient(BASE_URL, API_USER, password, transport=recorder, **kwargs)
        clients.append(client)
        return client, recorder

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def sdk(make_sdk: Callable[..., tuple[CdrClient, Recorder]]) -> CdrClient:
    return make_sdk()[0]


@pytest.fixture
def mirror(tmp_path) -> Iterator[Database]:
    """An empty SQLite database that syncs copy into."""
    database = Database(f"sqlite:///{tmp_path / 'mirror.db'}")
    schema.upgrade(database)
    yield database
    database.dispose()


# The real app on real sockets (uvicorn in a thread), with three CDRs in DAYS.
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


@pytest.fixture
def http_server(served_db) -> Iterator[str]:
    """The app over plain HTTP on loopback; yields its base URL."""
    with live_server(create_app(Settings(database=served_db, access_log=False))) as port:
        yield f"http://127.0.0.1:{port}"
