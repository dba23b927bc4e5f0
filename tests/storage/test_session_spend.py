"""A small download's token, day, spend and audit record in one PostgreSQL statement
(storage/session_spend.py): the random spent and its record written, with the rows and the bytes
the download sends, only when the download can be answered from the day read with the token;
otherwise nothing written and the row read as session_day's; one spend and one record of any
number of concurrent ones."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from cdrgate.cdr import CSV_HEADER_BYTES
from cdrgate.scope import parse as parse_scope
from cdrgate.scope import stored_form
from cdrgate.storage import accounts, session_day, session_spend, tokens
from cdrgate.storage.cdrs import CdrQuery, read_whole
from cdrgate.storage.db import Database
from cdrgate.storage.driver import postgres_driver
from cdrgate.storage.randoms import RandomRow
from cdrgate.storage.tables import cdr_random, download_audit
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr

HASH = "t" * 64
SEEN_MS = 1_780_000_000_000
NOW = SEEN_MS + 1_000
LOGIN_IP = "192.0.2.7"
DAY = CdrQuery(
    parse_pbx_time("2026-05-28 00:00:00"), parse_pbx_time("2026-05-28 23:59:59"), ("1000",)
)
ROW = RandomRow(NOW + 60_000, "r" * 64, HASH, "1000", DAY.start_ts, DAY.end_ts, LOGIN_IP, None, NOW)
RECORD = {
    "at_ms": NOW, "account": None, "client_ip": LOGIN_IP, "api_version": "v1.1.0",
    "selector": "1000", "starttime": "s", "endtime": "e", "rows": 0, "bytes": 0,
    "outcome": "ok", "errno": None, "kind": "cdr",
}  # fmt: skip


@pytest.fixture
def session(db: Database, add_cdrs) -> Database:
    if db.dialect != "postgresql":
        pytest.skip("one statement on PostgreSQL only")
    add_cdrs(
        # Not ASCII: the bytes counted are UTF-8's, not the characters.
        make_cdr(callid="a.1", timestart="2026-05-28 10:00:00", callfrom="1000", pincode="né€"),
        make_cdr(callid="a.2", timestart="2026-05-28 09:00:00", callto="1000", callfrom="555"),
        make_cdr(callid="a.3", timestart="2026-05-28 11:00:00", callfrom="1001"),
    )
    with db.write() as conn:
        accounts.upsert(conn, "api", "x", SEEN_MS, None)
        tokens.create(conn, HASH, "api", LOGIN_IP, SEEN_MS, {})
    return db


def _run(
    db: Database, *, fresh_after: int = SEEN_MS - 1, alive_after: int = SEEN_MS - 1,
    client_ip: str = LOGIN_IP, token_hash: str = HASH, query: CdrQuery = DAY, most: int = 1000,
    least: int = 0, row: RandomRow = ROW, month: str | None = None,
) -> Sequence[Any] | None:  # fmt: skip
    values = session_spend.params(
        token_hash, fresh_after, alive_after, client_ip, query, most, least,
        row._replace(client_ip=client_ip), RECORD, len(CSV_HEADER_BYTES),
    )  # fmt: skip
    statements = db.autocommit()
    assert statements is not None
    with statements as conn:
        raw = postgres_driver(conn)
        found: Sequence[Any] | None = (
            session_spend.statement(query, month).run_at_once(raw, values).fetchone()
        )
        return found


def _written(db: Database) -> tuple[list[Any], list[dict[str, Any]]]:
    with db.read() as conn:
        spent = [tuple(row) for row in conn.execute(select(cdr_random))]
        records = [row._asdict() for row in conn.execute(select(download_audit))]
    return spent, records


def _day_read(db: Database, **kwargs: Any) -> session_day.SessionDay:
    with db.read(one_statement=True) as conn:
        return session_day.read(
            conn, kwargs.get("token_hash", HASH), kwargs.get("fresh_after", SEEN_MS - 1),
            kwargs.get("client_ip", LOGIN_IP), kwargs.get("query", DAY), kwargs.get("most", 1000),
        )  # fmt: skip


# The day read from ``cdr``, or from its month's partition (``storage/day_months.py``): the
# same answer and the same writes.
MONTHS = pytest.mark.parametrize("month", [None, "cdr_p202605"], ids=["cdr", "month"])


@MONTHS
def test_the_random_is_spent_with_a_record_of_the_rows_and_bytes_the_download_sends(session, month):
    with session.read() as conn:
        lines = read_whole(conn, DAY, 1000)
    assert lines is not None and len(lines) == 2
    sent = len(CSV_HEADER_BYTES) + len("".join(lines).encode())  # as ``Export`` sends them
    assert sent > len(CSV_HEADER_BYTES) + len("".join(lines))  # the test's line is not ASCII
    row = _run(session, month=month)
    spent = session_spend.spent_of(row)
    assert spent is not None and (spent.rows, spent.bytes) == (2, sent)
    assert row is not None and session_day.answer(row, 1000) == _day_read(session)
    randoms, records = _written(session)
    assert randoms == [ROW]
    assert records == [
        {**RECORD, "id": spent.record_id, "account": "api", "rows": 2, "bytes": sent}
    ]


def test_an_empty_day_is_spent_when_allowed_and_not_where_it_is_refused(session):
    empty = CdrQuery(DAY.start_ts - 86400, DAY.end_ts - 86400, ("1000",))
    assert session_spend.spent_of(_run(session, query=empty, least=1)) is None
    assert _written(session) == ([], [])
    spent = session_spend.spent_of(_run(session, query=empty))
    assert spent is not None and (spent.rows, spent.bytes) == (0, len(CSV_HEADER_BYTES))


@MONTHS
@pytest.mark.parametrize(
    "why",
    [
        "sliding mark due", "token expired", "another address", "scoped account",
        "day longer than a page", "unknown token",
    ],
)  # fmt: skip
def test_nothing_is_written_when_the_download_cannot_be_answered_from_the_day(session, why, month):
    kwargs: dict[str, Any] = {}
    if why == "sliding mark due":
        kwargs["fresh_after"] = SEEN_MS
    elif why == "token expired":
        kwargs["alive_after"] = SEEN_MS
    elif why == "another address":
        kwargs["client_ip"] = "192.0.2.8"
    elif why == "scoped account":
        with session.write() as conn:
            accounts.set_extensions(conn, "api", stored_form(parse_scope("1000")), SEEN_MS)
    elif why == "day longer than a page":
        kwargs["most"] = 1
    else:
        kwargs["token_hash"] = "u" * 64
    row = _run(session, month=month, **kwargs)
    assert session_spend.spent_of(row) is None
    assert _written(session) == ([], [])
    read_kwargs = {k: v for k, v in kwargs.items() if k != "alive_after"}
    assert session_day.answer(row, kwargs.get("most", 1000)) == _day_read(session, **read_kwargs)


def test_a_random_spent_already_writes_nothing(session):
    assert session_spend.spent_of(_run(session)) is not None
    row = _run(session, row=ROW._replace(used_ms=NOW + 1))
    assert session_spend.spent_of(row) is None
    assert row is not None and session_day.answer(row, 1000).day is not None  # answerable
    randoms, records = _written(session)
    assert randoms == [ROW] and len(records) == 1


@MONTHS
def test_concurrent_spends_of_one_random_leave_one_row_and_one_record(session, month):
    with ThreadPoolExecutor(8) as pool:
        spent = list(
            pool.map(lambda _: session_spend.spent_of(_run(session, month=month)), range(8))
        )
    assert sum(one is not None for one in spent) == 1
    with session.read() as conn:
        assert conn.execute(select(func.count()).select_from(cdr_random)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(download_audit)).scalar_one() == 1
