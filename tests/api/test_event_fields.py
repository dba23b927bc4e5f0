"""Login and heartbeat keep the event-push fields a client sends, within sane lengths: a real
server on the test's database (either engine), real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from cdrgate.app import create_app
from cdrgate.services.auth import EVENT_FIELDS
from cdrgate.settings import Settings
from cdrgate.storage.db import Database
from cdrgate.storage.tables import api_token
from tests.conftest import API_MD5, API_USER
from tests.live import live_server

# What a real Yeastar integration sends (spec 2.1 and 3.1).
REAL_CLIENT = {
    "ipaddr": "192.168.5.100",
    "port": "8260",
    "version": "1.0.2",
    "url": "http://192.168.5.100:8260/cdr",
    "urltag": "1",
}


@pytest.fixture
def api(db: Database, clock, api_account) -> Iterator[httpx.Client]:
    app = create_app(Settings(database=db.url, access_log=False), database=db, clock=clock)
    with live_server(app) as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1.1.0/") as http:
            yield http


def login(api: httpx.Client, **fields: object) -> dict[str, str]:
    body = {"username": API_USER, "password": API_MD5, **fields}
    answer: dict[str, str] = api.post("login", json=body).json()
    return answer


def stored_targets(db: Database) -> list[tuple[str | None, ...]]:
    columns = [api_token.c.event_ip, api_token.c.event_port, api_token.c.event_url,
               api_token.c.event_urltag, api_token.c.event_version]  # fmt: skip
    with db.read() as conn:
        return [tuple(row) for row in conn.execute(select(*columns))]


def test_a_real_clients_event_fields_are_kept(api, db):
    token = login(api, **REAL_CLIENT)["token"]
    assert api.post("heartbeat", params={"token": token}, json=REAL_CLIENT).json() == {
        "status": "Success"
    }
    assert stored_targets(db) == [
        ("192.168.5.100", "8260", "http://192.168.5.100:8260/cdr", "1", "1.0.2")
    ]


@pytest.mark.parametrize("field", sorted(set(EVENT_FIELDS) - {"port"}))
def test_an_event_field_longer_than_any_client_sends_is_20000_and_not_stored(api, db, field):
    huge = "x" * 60_000
    assert login(api, **{field: huge}) == {"status": "Failed", "errno": "20000"}
    token = login(api, **REAL_CLIENT)["token"]
    answer = api.post("heartbeat", params={"token": token}, json={field: huge})
    assert answer.json() == {"status": "Failed", "errno": "20000"}
    assert stored_targets(db) == [
        ("192.168.5.100", "8260", "http://192.168.5.100:8260/cdr", "1", "1.0.2")
    ]


def test_a_port_longer_than_any_port_is_20008(api, db):
    # 20008 is the device's own "port error".
    assert login(api, port="8" * 60_000) == {"status": "Failed", "errno": "20008"}
    token = login(api)["token"]
    answer = api.post("heartbeat", params={"token": token}, json={"port": "8" * 60_000})
    assert answer.json() == {"status": "Failed", "errno": "20008"}
    assert stored_targets(db) == [(None, None, None, None, None)]


def test_a_value_as_long_as_its_field_allows_is_kept(api, db):
    longest = {name: "9" * EVENT_FIELDS[name].max_chars for name in REAL_CLIENT}
    assert login(api, **longest)["status"] == "Success"
    assert stored_targets(db) == [tuple(longest[name] for name in
                                        ("ipaddr", "port", "url", "urltag", "version"))]  # fmt: skip
