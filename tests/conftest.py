"""Shared fixtures: a real database (SQLite file; PostgreSQL too when configured), an injected
clock, an app factory and a tiny Yeastar client speaking the wire protocol like real ones."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.cdr import CdrRecord
from cdrgate.clock import ManualClock
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import schema
from cdrgate.storage.db import Database, normalise_url

API_USER = "api"
API_PASSWORD = "correct horse battery"
API_MD5 = hashlib.md5(API_PASSWORD.encode()).hexdigest()


# A PostgreSQL server URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres) makes every
# database test run on both engines, each PostgreSQL test in a fresh schema of its own.
POSTGRES_ENV = "CDRGATE_TEST_POSTGRES"
ENGINES = ["sqlite", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not os.environ.get(POSTGRES_ENV):
        raise pytest.UsageError(
            f"CI is set but {POSTGRES_ENV} is not: the PostgreSQL tests must not be skipped "
            "in CI (run .ci/run, or scripts/with-postgres.sh make test)"
        )


@pytest.fixture(scope="session", autouse=True)
def no_proxies_from_the_environment() -> Iterator[None]:
    """The client honours HTTP_PROXY and the like: a developer's own proxy must not carry
    the tests' loopback requests (tests that want a proxy set one themselves)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
                patch.delenv(name)
        yield


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema on the test server; yields a URL whose search_path is it."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"needs PostgreSQL: set {POSTGRES_ENV}")
    name = f"t_{secrets.token_hex(6)}"
    admin = make_url(normalise_url(server)).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        url = make_url(server).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def migrated_postgres() -> Iterator[Database]:
    """A migrated store in a fresh ``postgres_schema``, disposed at the end."""
    with postgres_schema() as url:
        database = Database(url)
        schema.upgrade(database)
        try:
            yield database
        finally:
            database.dispose()


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cdrgate.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def make_db() -> Iterator[Callable[[str], Database]]:
    """``make_db(url)``: one more handle on a database, disposed after the test."""
    opened: list[Database] = []

    def factory(url: str) -> Database:
        opened.append(Database(url))
        return opened[-1]

    yield factory
    for database in opened:
        database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_780_000_000.0)


@pytest.fixture
def api_account(db: Database, clock: ManualClock) -> tuple[str, str]:
    set_api_user(db, API_USER, API_PASSWORD, int(clock() * 1000))
    return API_USER, API_MD5


def make_cdr(**overrides: Any) -> CdrRecord:
    """A plausible CDR; override any field."""
    values: dict[str, Any] = {
        "callid": "1780000000.1",
        "timestart": "2026-05-28 10:00:00",
        "callfrom": "1000",
        "callto": "0215550100",
        "callduraction": 42,
        "talkduraction": 34,
        "srctrunkname": "",
        "dsttrunkname": "SIP-Provider",
        "status": "ANSWERED",
        "type": "Outbound",
        "pincode": "",
        "recording": "",
        "didnumber": "",
        "sn": "369392534749",
    }
    values.update(overrides)
    return CdrRecord(**values)


@pytest.fixture
def add_cdrs(db: Database) -> Callable[..., list[CdrRecord]]:
    def add(*records: CdrRecord) -> list[CdrRecord]:
        store_records(db, records)
        return list(records)

    return add


@pytest.fixture
def make_client(db: Database, clock: ManualClock) -> Iterator[Callable[..., TestClient]]:
    """``make_client(ip="127.0.0.1", **settings)``: an in-process client of a fresh app."""
    clients: list[TestClient] = []

    def factory(ip: str = "127.0.0.1", **settings: Any) -> TestClient:
        app = create_app(
            Settings(database=db.url, access_log=False, **settings), database=db, clock=clock
        )
        client = TestClient(app, base_url="http://pbx.test:8088", client=(ip, 50000))
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient], api_account: tuple[str, str]) -> TestClient:
    return make_client()


class Flow:
    """The three calls every Yeastar integration makes, as plain HTTP."""

    def __init__(self, http: Any, version: str = "v1.1.0") -> None:
        self.http = http
        self.version = version
        self.selector = "number" if version == "v2.0.0" else "extid"

    def url(self, endpoint: str) -> str:
        return f"/api/{self.version}/{endpoint}"

    def login(self, username: str = API_USER, password: str = API_MD5) -> dict[str, Any]:
        body = {"username": username, "password": password, "port": "8260"}
        return self.http.post(self.url("login"), json=body).json()

    def token(self) -> str:
        answer = self.login()
        assert answer["status"] == "Success", answer
        return answer["token"]

    def get_random(
        self, token: str, ext: str = "all", start: str = "2026-05-01 00:00:00",
        end: str = "2026-05-31 23:59:59", **extra: str,
    ) -> dict[str, Any]:  # fmt: skip
        body = {self.selector: ext, "starttime": start, "endtime": end, **extra}
        return self.http.post(self.url("cdr/get_random"), params={"token": token}, json=body).json()

    def download_url(self, token: str, random: str, ext: str, start: str, end: str) -> str:
        # Built the way the Node and Python clients do: %20 for spaces, ':' and ',' raw.
        return (
            f"{self.url('cdr/download')}?{self.selector}={ext}"
            f"&starttime={start.replace(' ', '%20')}&endtime={end.replace(' ', '%20')}"
            f"&token={token}&random={random}"
        )

    def download(
        self, token: str, ext: str = "all", start: str = "2026-05-01 00:00:00",
        end: str = "2026-05-31 23:59:59", method: str = "GET", **extra: str,
    ) -> Any:  # fmt: skip
        answer = self.get_random(token, ext, start, end, **extra)
        assert answer["status"] == "Success", answer
        return self.http.request(
            method, self.download_url(token, answer["random"], ext, start, end)
        )


@pytest.fixture
def flow(client: TestClient) -> Flow:
    return Flow(client)
