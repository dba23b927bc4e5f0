"""The JSON query API's reads take the downloads' pool's connections, but at most their share
(``db.QUERY_READS``) at once: long query-API reads that fill the pool left a download's pages
waiting for a connection up to the pool's wait, then 30003 (twenty-fourth round). The reads
beyond the share wait their turn, then 503, never a 500."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.to_thread
import pytest
from starlette.testclient import TestClient

from cdrgate.api.streaming import PAGE_THREADS, QUERY_PAGE_THREADS
from cdrgate.app import create_app
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.services.query import CsvStream
from cdrgate.settings import Settings
from cdrgate.storage import db as storage_db
from cdrgate.storage import query as query_store
from cdrgate.storage import schema
from cdrgate.storage.db import QUERY_READS, Database
from tests.conftest import API_PASSWORD, API_USER, Flow, make_cdr
from tests.waiting import wait_until

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")
STATS = "/v1/stats?group=day"


@contextmanager
def _store(url: str, clock, wait_s: float) -> Iterator[Database]:
    """A store whose pools (and the query API's share) wait ``wait_s`` for a free connection
    (30 s in a server)."""
    database = Database(url, pool_timeout=wait_s)
    schema.upgrade(database)
    set_api_user(database, API_USER, API_PASSWORD, int(clock() * 1000))
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def store(database_url: str, clock) -> Iterator[Database]:
    with _store(database_url, clock, 0.5) as database:
        yield database


@contextmanager
def _served(store: Database, clock) -> Iterator[tuple[TestClient, Flow, str, str]]:
    """The API over ``store``: its client, a logged-in flow's token and a random for DAY."""
    app = create_app(Settings(database=store.url, access_log=False), database=store, clock=clock)
    with TestClient(app, base_url="http://pbx.test:8088", client=("127.0.0.1", 50000)) as http:
        flow = Flow(http)
        token = flow.token()
        yield http, flow, token, flow.get_random(token, "1000", *DAY)["random"]


class _Asking:
    """How many asked (a connection, a thread): ``counted(*args)`` counts a call when
    ``picks(*args)`` holds (every call by default); from any thread."""

    def __init__(self, picks: Any = lambda *_args: True) -> None:
        self.picks = picks
        self.lock = threading.Lock()
        self.count = 0

    def counted(self, *args: Any) -> None:
        if self.picks(*args):
            with self.lock:
                self.count += 1


class _CountedShare:
    """The query API's share (``Database._query_share``), counting the reads that asked for it
    (those past it too, which wait, then are refused)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.asked = _Asking()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        self.asked.counted()
        return bool(self.real.acquire(*args, **kwargs))

    def release(self) -> None:
        self.real.release()


class _Held:
    """``read_stats`` held, its connection taken, until ``release`` is set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.release = threading.Event()

    def wrap(self, real: Any) -> Any:
        def held(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            try:
                self.release.wait(30)
                return real(*args, **kwargs)
            finally:
                with self.lock:
                    self.inside -= 1

        return held


def test_long_query_api_reads_leave_the_downloads_their_connections(store, clock, monkeypatch):
    store_records(store, [make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00")])
    # Not read whole with its spend: its first page is read on the downloads' pool.
    monkeypatch.setattr("cdrgate.services.downloads.PAGE_ROWS", 0)
    held = _Held()
    monkeypatch.setattr(query_store, "read_stats", held.wrap(query_store.read_stats))
    share = _CountedShare(store._query_share)
    monkeypatch.setattr(store, "_query_share", share)
    with _served(store, clock) as (http, flow, token, random):
        bearer = {"Authorization": f"Bearer {token}"}
        answers: list[int] = []

        def stats() -> None:
            answers.append(http.get(STATS, headers=bearer).status_code)

        # As many long reads as the downloads' pool has connections.
        readers = [threading.Thread(target=stats) for _ in range(storage_db.EXPORT_POOL_SIZE)]
        for reader in readers:
            reader.start()
        try:
            # The contention, before the download asks: every read has asked for the share,
            # and its share of them holds their connections (held until released below).
            wait_until(
                lambda: (
                    share.asked.count == storage_db.EXPORT_POOL_SIZE
                    and held.inside == storage_db.QUERY_READS
                ),
                lambda: f"{share.asked.count} reads asked for the share, {held.inside} read",
            )
            response = http.get(flow.download_url(token, random, "1000", *DAY))
            assert response.headers["content-type"] == "text/csv; charset=utf-8", response.text
        finally:
            held.release.set()
            for reader in readers:
                reader.join()
    # Counted once every read has ended: none past the share ever held a connection.
    assert held.most == storage_db.QUERY_READS < storage_db.EXPORT_POOL_SIZE
    # Those past the share waited their turn (at most half a second here, then 503): no 500.
    assert len(answers) == storage_db.EXPORT_POOL_SIZE and set(answers) <= {200, 503}
    assert answers.count(200) >= storage_db.QUERY_READS


def test_query_api_csv_pages_waiting_for_their_share_hold_no_download_page_thread(
    database_url, clock, monkeypatch
):
    """The query API's CSV pages wait for its share in threads of their own: with the share
    held by long reads, CSV pages waiting for it took every one of the downloads'
    ``PAGE_THREADS``, and a download's next page waited behind them (here for as long as the
    share's wait, 20 s)."""
    with _store(database_url, clock, 20) as store:
        store_records(
            store,
            [
                make_cdr(callid=f"c.{n}", callfrom="1000", timestart=f"2026-05-28 1{n}:00:00")
                for n in range(3)
            ],
        )
        # A download of three pages of one row: its pages after the first in page threads.
        monkeypatch.setattr("cdrgate.services.downloads.PAGE_ROWS", 0)
        monkeypatch.setattr("cdrgate.services.export.MAX_PAGE_ROWS", 1)
        held = _Held()
        monkeypatch.setattr(query_store, "read_stats", held.wrap(query_store.read_stats))
        pages = _Held()
        pages.release.set()  # counted, not held: each waits for the share the stats hold
        monkeypatch.setattr(CsvStream, "next_chunk", pages.wrap(CsvStream.next_chunk))
        # The CSV pages that asked for a page thread (those waiting for one too).
        asking = _Asking(lambda work: isinstance(getattr(work, "__self__", None), CsvStream))
        real_run_sync = anyio.to_thread.run_sync

        async def run_sync(work: Any, *args: Any, **kwargs: Any) -> Any:
            asking.counted(work)  # then asks, in the same turn of the loop
            return await real_run_sync(work, *args, **kwargs)

        monkeypatch.setattr("cdrgate.api.streaming.run_sync", run_sync)
        with _served(store, clock) as (http, flow, token, random):
            bearer = {"Authorization": f"Bearer {token}"}
            answers: list[int] = []

            def get(target: str) -> None:
                answers.append(http.get(target, headers=bearer).status_code)

            stats = [threading.Thread(target=get, args=(STATS,)) for _ in range(QUERY_READS)]
            csv = [
                threading.Thread(target=get, args=("/v1/cdrs?format=csv",))
                for _ in range(PAGE_THREADS)
            ]
            downloaded: list[str] = []

            def download() -> None:
                response = http.get(flow.download_url(token, random, "1000", *DAY))
                downloaded.append(response.text)

            downloader = threading.Thread(target=download)
            try:
                for thread in stats:
                    thread.start()
                wait_until(lambda: held.inside == QUERY_READS, "the long reads holding the share")
                for thread in csv:
                    thread.start()
                # The contention, before the download asks: every CSV page has asked for a
                # page thread, and as many as the query API's threads wait in theirs.
                wait_until(
                    lambda: asking.count == PAGE_THREADS and pages.inside == QUERY_PAGE_THREADS,
                    lambda: f"{asking.count} CSV pages asked for a thread, {pages.inside} in one",
                )
                downloader.start()
                downloader.join(10)  # bounded: behind the CSV pages it waited 20 s
                assert not downloader.is_alive(), "the download waited behind CSV pages"
                # Before the release: CSV pages then in memory are read on the loop, counted too.
                assert pages.most == QUERY_PAGE_THREADS < PAGE_THREADS
            finally:
                held.release.set()
                for thread in [*stats, *csv, downloader]:
                    if thread.ident is not None:
                        thread.join()
        assert len(downloaded[0].splitlines()) == 4  # the header and three pages of one row
        assert answers.count(200) == len(answers) == QUERY_READS + PAGE_THREADS
