"""ExportResponse fits a long export to its client: grown pages, each read while the one before
is sent, while the client keeps up; small pages, each read only once the last is handed over,
after the client made a send wait. Driven through the ASGI interface with a scripted client."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from starlette.types import Message

from cdrgate.api import streaming
from cdrgate.api.streaming import ExportResponse
from cdrgate.cdr import CSV_HEADER
from cdrgate.services import export
from cdrgate.services.export import Export, first_page
from cdrgate.settings import Settings
from cdrgate.storage import cdrs
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.timefmt import format_pbx_time, parse_pbx_time
from tests.conftest import make_cdr

BASE = parse_pbx_time("2026-05-28 00:00:00")
COUNT = 400
QUERY = CdrQuery(BASE, BASE + 1000)


@pytest.fixture
def tiny_pages(monkeypatch):
    """Pages of 3 rows growing to 24, so a few hundred CDRs make a long export."""
    monkeypatch.setattr(export, "PAGE_ROWS", 3)
    monkeypatch.setattr(export, "MAX_PAGE_ROWS", 5)


@pytest.fixture
def stored(db):
    with db.write() as conn:
        cdrs.insert_records(
            db,
            conn,
            [
                make_cdr(callid=f"c{i:03d}", timestart=format_pbx_time(BASE + i))
                for i in range(COUNT)
            ],
        )
    return db


class Clock:
    """The response's clock, moved by the client only: a stalled send takes a second of it,
    whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class Client:
    """The client side of one download. Pages ``stalled`` (by index) are taken after a second
    on the response's clock; the others at once, once a read ahead of the next page, if one
    runs, has ended (polled in real time, up to a bound; the response's clock stands still).
    No read ahead runs while the first page is sent, nor the first after a stall: not polled."""

    def __init__(self, exp: Export, clock: Clock, stalled: range) -> None:
        self.export = exp
        self.clock = clock
        self.stalled = stalled
        self.body = b""
        # Per page handed over: (its rows, was the next page read while it was being sent).
        self.pages: list[tuple[int, bool]] = []

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body" or not message["body"]:
            return
        index = len(self.pages)
        if index in self.stalled:
            self.clock.now += 1
        elif index not in (0, self.stalled.stop):
            with anyio.move_on_after(5):
                while not self.export.ready:
                    await anyio.sleep(0.001)
        ahead = self.export.ready and not self.export._cursor.last
        self.pages.append((message["body"].count(b"\n") - (index == 0), ahead))
        self.body += message["body"]

    async def receive(self) -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


def _download(db, monkeypatch, stalled: range):
    clock = Clock()
    monkeypatch.setattr(streaming, "time", clock)
    finished: list[tuple[Any, ...]] = []
    exp = Export(db, first_page(db, QUERY, False), "x.csv", False, lambda *a: finished.append(a))
    client = Client(exp, clock, stalled)
    response = ExportResponse(exp, {}, Settings(download_rate_window=0))
    asyncio.run(response({"type": "http"}, client.receive, client.send))
    with db.read() as conn:
        expected = CSV_HEADER + "".join(cdrs.read_lines(conn, QUERY))
    assert client.body.decode() == expected
    assert finished == [("ok", COUNT, len(expected.encode()))]
    return client.pages


def test_a_client_that_keeps_up_gets_grown_pages_each_read_while_the_last_is_sent(
    stored, tiny_pages, monkeypatch
):
    pages = _download(stored, monkeypatch, stalled=range(0))
    rows = [count for count, _ in pages]
    assert max(rows) == export.grown_rows(stored)
    # The first page is sent before the client is known to keep up; every later one but
    # the last had the next page read while it was sent.
    assert [ahead for _, ahead in pages[1:-1]] == [True] * (len(pages) - 2)


def test_a_client_that_makes_sends_wait_gets_small_pages_without_read_ahead(
    stored, tiny_pages, monkeypatch
):
    pages = _download(stored, monkeypatch, stalled=range(1000))
    assert max(count for count, _ in pages) <= export.MAX_PAGE_ROWS
    assert not any(ahead for _, ahead in pages)


def test_an_export_falls_back_to_small_pages_when_its_client_stalls_and_grows_again_after(
    stored, tiny_pages, monkeypatch
):
    stalled = range(8, 12)
    pages = _download(stored, monkeypatch, stalled=stalled)
    grown = export.grown_rows(stored)
    before, during, after = (
        pages[: stalled.start],
        pages[stalled.start + 1 : stalled.stop],
        pages[stalled.stop :],
    )
    assert max(count for count, _ in before) == grown
    # The page read ahead while the first stalled send waited is dropped, not sent.
    assert all(count <= export.MAX_PAGE_ROWS and not ahead for count, ahead in during)
    assert max(count for count, _ in after) == grown
