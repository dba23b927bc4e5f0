"""Client fixtures: the SDK wired to the real app, in process, through an httpx transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from cdrgate.client import CdrClient
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.client.helpers import Recorder
from tests.conftest import API_PASSWORD, API_USER

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
