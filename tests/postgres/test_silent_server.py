"""A PostgreSQL server gone without a word (no FIN, no RST) fails a statement waiting on it
within the keepalive bound (storage/pg_tcp.py), psycopg's and asyncpg's alike; the defaults
are set on every connection a URL does not set them for.

Loopback cannot drop packets without a firewall rule, so the relay between cdrgate and the
test server makes its end of a connection vanish instead: the socket is destroyed without a
word (``TCP_REPAIR``, which needs CAP_NET_ADMIN: skipped without), after the statement has
reached it and been acknowledged. Nothing then comes back until the client sends something
itself: a keepalive probe, which the kernel answers with a reset. Without keepalives the client
sends nothing, and the statement waited for ever."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.errors import Errno, StorageUnavailable
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import pg_loop, pg_tcp, schema
from cdrgate.storage.db import LOOP_POOL_SIZE, Database
from tests.conftest import API_PASSWORD, API_USER, Flow, make_cdr, postgres_schema

TCP_REPAIR = 19  # linux/tcp.h; not in the socket module
# Fast settings for the relay's connections: the first probe after 1 s of silence.
FAST = {"keepalives_idle": "1", "keepalives_interval": "1", "keepalives_count": "2"}
# Far beyond the ~1 s the fast settings take; only a statement that never fails reaches it.
NEVER_S = 60.0
DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")


class SilentRelay:
    """Forwards loopback connections to the test server until ``go_silent``: from then on,
    each connection that sends anything vanishes (its bytes acknowledged, never forwarded),
    and new connections are refused, as a host that is gone."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._silent = threading.Event()
        self.vanished = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def go_silent(self) -> None:
        self._silent.set()
        # shutdown, not only close: it ends the accept() under way (close would leave the
        # socket listening until that call returns).
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # silent: closed
            upstream = socket.create_connection(self._upstream)
            gone = threading.Event()
            threading.Thread(target=self._down, args=(upstream, client, gone), daemon=True).start()
            threading.Thread(target=self._up, args=(client, upstream, gone), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, gone: threading.Event) -> None:
        with client, upstream:
            while data := _recv(client):
                if self._silent.is_set():
                    gone.set()
                    # The bytes' acknowledgement, which the kernel delays, sent now: else the
                    # client retransmits them into the vanished socket and is answered a reset.
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                    # Destroyed without a FIN or RST: nothing more leaves this end.
                    client.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
                    self.vanished += 1
                    return
                upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)

    def _down(self, upstream: socket.socket, client: socket.socket, gone: threading.Event) -> None:
        while data := _recv(upstream):
            if self._silent.is_set():
                return  # the server's words go nowhere
            try:
                client.sendall(data)
            except OSError:
                return
        if not gone.is_set():
            try:
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _can_vanish() -> bool:
    with socket.socket() as probe:
        try:
            probe.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        except PermissionError:
            return False
        probe.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
    return True


@contextmanager
def _through_relay(**query: str) -> Iterator[tuple[str, str, SilentRelay]]:
    """A migrated schema's URL, the same URL through a ``SilentRelay`` with ``query`` added,
    and the relay."""
    if not _can_vanish():
        pytest.skip("needs CAP_NET_ADMIN (TCP_REPAIR) to make a connection vanish")
    with postgres_schema() as url:
        direct = Database(url)
        schema.upgrade(direct)
        direct.dispose()
        parsed = make_url(url)
        relay = SilentRelay((parsed.host or "127.0.0.1", parsed.port or 5432))
        relayed = parsed.set(host="127.0.0.1", port=relay.port).update_query_dict(query)
        yield url, relayed.render_as_string(hide_password=False), relay


def _within(work: Callable[[], Any]) -> Any:
    """``work``'s result or exception, run in a thread that may wait for ever (the defect)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(NEVER_S)
    assert outcome, f"still waiting on a silent server after {NEVER_S:.0f} s"
    return outcome[0]


def test_a_statement_on_a_server_gone_silent_fails_with_storage_unavailable() -> None:
    with _through_relay(**FAST) as (_url, relayed, relay):
        db = Database(relayed)
        try:
            with db.read() as conn:  # a pooled connection, in step with the server
                assert conn.execute(text("SELECT 1")).scalar() == 1
            relay.go_silent()

            def statement() -> Any:
                with db.read() as conn:
                    return conn.execute(text("SELECT 1")).scalar()

            failure = _within(statement)
            assert isinstance(failure, StorageUnavailable), failure
            assert relay.vanished == 1
        finally:
            db.dispose()


def test_a_get_random_on_the_loop_with_its_server_gone_silent_is_answered_30003(clock) -> None:
    with _through_relay(**FAST) as (url, relayed, relay):
        direct = Database(url)
        set_api_user(direct, API_USER, API_PASSWORD, int(clock() * 1000))
        store_records(direct, [make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00")])
        direct.dispose()
        db = Database(relayed)
        app = create_app(Settings(database=relayed, access_log=False), database=db, clock=clock)
        try:
            with TestClient(
                app, base_url="http://pbx.test:8088", client=("127.0.0.1", 50000)
            ) as http:
                flow = Flow(http)
                token = flow.token()
                # The first reads this process's key (in a thread); the second runs on the
                # loop, its asyncpg connection made. Then the server goes silent.
                for _ in range(2):
                    assert flow.get_random(token, "1000", *DAY)["status"] == "Success"
                relay.go_silent()
                answer = _within(lambda: flow.get_random(token, "1000", *DAY))
                assert answer == {"status": "Failed", "errno": Errno.APISRV_DOWN.value}
                assert relay.vanished >= 1
        finally:
            db.dispose()


def _loop_socket_options(url: str) -> dict[str, int]:
    async def connect() -> dict[str, int]:
        conn = await pg_loop.LoopStatements(make_url(url), LOOP_POOL_SIZE)._connect()
        try:
            sock = conn._transport.get_extra_info("socket")
            return {
                "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            }
        finally:
            await conn.close()

    return asyncio.run(connect())


def _psycopg_parameters(url: str) -> dict[str, str]:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            parameters = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        db.dispose()
    return {name: parameters[name] for name in pg_tcp.TCP_DEFAULTS if name in parameters}


def test_every_connection_gets_the_keepalive_defaults_a_url_leaves_out() -> None:
    with postgres_schema() as url:
        defaults = {name: str(value) for name, value in pg_tcp.TCP_DEFAULTS.items()}
        assert _psycopg_parameters(url) == defaults
        assert _loop_socket_options(url) == dict(pg_tcp.TCP_DEFAULTS)

        overridden = make_url(url).update_query_dict({"keepalives_idle": "30"})
        own = overridden.render_as_string(hide_password=False)
        assert _psycopg_parameters(own)["keepalives_idle"] == "30"
        assert _loop_socket_options(own) == {**pg_tcp.TCP_DEFAULTS, "keepalives_idle": 30}
