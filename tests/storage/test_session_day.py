"""A small download's token and day in one PostgreSQL statement: the same session and lines as
the two reads it replaces, and no day for a download the write transaction must answer (a token
dead or due its sliding mark, another address, a scoped account). SQLite makes the two reads
apart (services/downloads.py), so these run on PostgreSQL only."""

from __future__ import annotations

import pytest

from cdrgate.scope import parse as parse_scope
from cdrgate.scope import stored_form
from cdrgate.storage import accounts, session_day, tokens
from cdrgate.storage.cdrs import CdrQuery, read_whole
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr

HASH = "t" * 64
SEEN_MS = 1_780_000_000_000
LOGIN_IP = "192.0.2.7"
DAY = CdrQuery(
    parse_pbx_time("2026-05-28 00:00:00"), parse_pbx_time("2026-05-28 23:59:59"), ("1000",)
)


@pytest.fixture
def session(db: Database, add_cdrs) -> Database:
    if db.dialect != "postgresql":
        pytest.skip("one statement on PostgreSQL only")
    add_cdrs(
        make_cdr(callid="a.1", timestart="2026-05-28 10:00:00", callfrom="1000"),
        make_cdr(callid="a.2", timestart="2026-05-28 09:00:00", callto="1000", callfrom="555"),
        make_cdr(callid="a.3", timestart="2026-05-28 11:00:00", callfrom="1001"),
        make_cdr(callid="a.4", timestart="2026-05-29 10:00:00", callfrom="1000"),
    )
    with db.write() as conn:
        accounts.upsert(conn, "api", "x", SEEN_MS, None)
        tokens.create(conn, HASH, "api", LOGIN_IP, SEEN_MS, {})
    return db


def _read(
    db: Database,
    fresh_after_ms: int = SEEN_MS - 1,
    client_ip: str = LOGIN_IP,
    *,
    token_hash: str = HASH,
    query: CdrQuery = DAY,
    most: int = 1000,
) -> session_day.SessionDay:
    with db.read(one_statement=True) as conn:
        return session_day.read(conn, token_hash, fresh_after_ms, client_ip, query, most)


def test_a_fresh_token_from_its_address_reads_its_session_and_the_days_lines(session):
    with session.read() as conn:
        expected = read_whole(conn, DAY, 1000)
        seen = tokens.last_seen(conn, HASH)
    assert expected is not None and len(expected) == 2  # in download order
    assert _read(session) == (seen, expected)


def test_a_day_without_a_call_is_read_as_no_line(session):
    empty = CdrQuery(DAY.start_ts - 86400, DAY.end_ts - 86400, ("1000",))
    assert _read(session, query=empty).day == []


def test_a_day_longer_than_asked_is_not_answered(session):
    assert _read(session, most=1).day is None
    assert _read(session, most=2).day is not None


@pytest.mark.parametrize(
    "why",
    ["sliding mark due or expired", "another address", "scoped account"],
)
def test_the_day_is_not_read_when_the_transaction_must_answer(session, why):
    fresh_after, client_ip = SEEN_MS - 1, LOGIN_IP
    if why == "sliding mark due or expired":
        fresh_after = SEEN_MS
    elif why == "another address":
        client_ip = "192.0.2.8"
    else:
        with session.write() as conn:
            accounts.set_extensions(conn, "api", stored_form(parse_scope("1000")), SEEN_MS)
    read = _read(session, fresh_after, client_ip)
    assert read.seen is not None and read.seen.account == "api"
    assert read.day is None


def test_an_unknown_token_reads_nothing(session):
    assert _read(session, token_hash="u" * 64) == (None, None)
