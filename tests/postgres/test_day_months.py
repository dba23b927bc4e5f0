"""A small download's day on the loop read from its month's partition (storage/day_months.py),
on a running server: a day inside a month whose partition exists reads that table, a range
across two months reads ``cdr``; a month dropped, or dropped and made again, by another
connection while the loop's connections hold statements prepared naming it answers right
(no error, no rows of before); a month attached by another connection is named once the
process reads its list again. The csv_safe path (the day read, then the spend) too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.errors import Errno
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import day_months, partitions, pg_loop
from cdrgate.storage.db import Database
from cdrgate.storage.tables import cdr_random, download_audit
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import API_PASSWORD, API_USER, Flow, make_cdr

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")
ACROSS = ("2026-05-31 12:00:00", "2026-06-01 11:59:59")
OK = "text/csv; charset=utf-8"
MAY = partitions.month_start(parse_pbx_time(DAY[0]))


@pytest.fixture(params=[False, True], ids=["one-statement", "csv_safe"])
def served(pg_db: Database, clock, request) -> Iterator[Flow]:
    set_api_user(pg_db, API_USER, API_PASSWORD, int(clock() * 1000))
    store_records(
        pg_db,
        [
            make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"),
            make_cdr(callid="b.1", callto="1000", callfrom="555", timestart="2026-05-28 11:00:00"),
            make_cdr(callid="c.1", callfrom="1000", timestart="2026-05-31 20:00:00"),
            make_cdr(callid="d.1", callfrom="1000", timestart="2026-06-01 08:00:00"),
        ],
    )
    given = Settings(database=pg_db.url, access_log=False, csv_safe=request.param)
    app = create_app(given, database=pg_db, clock=clock)
    with TestClient(app, base_url="http://pbx.test:8088", client=("127.0.0.1", 50000)) as http:
        yield Flow(http)


def _ran(monkeypatch) -> list[str]:
    """Where each of the loop's statements from now on read the day: ``cdr``, a month's
    partition, or "other" (the partitions' list, the token's read, a spend alone)."""
    ran: list[str] = []
    real_row = pg_loop.LoopStatements.row

    async def row(self, statement, params, *, writes=False):
        sql = statement.numbered_sql
        read = [name for name in ("FROM cdr \n", "FROM cdr_p202605 AS cdr") if name in sql]
        ran.append(read[0].split()[1] if read else "other")
        return await real_row(self, statement, params, writes=writes)

    monkeypatch.setattr(pg_loop.LoopStatements, "row", row)
    return ran


def _lines(flow: Flow, token: str, day: tuple[str, str] = DAY) -> list[str] | str:
    """The day's CSV lines for extension 1000, or the errno it answered."""
    random = flow.get_random(token, "1000", *day)["random"]
    response = flow.http.get(flow.download_url(token, random, "1000", *day))
    assert response.status_code == 200
    if response.headers["content-type"] != OK:
        return str(response.json()["errno"])
    return response.text.splitlines()[1:]


def _day_reads(ran: list[str]) -> list[str]:
    return [where for where in ran if where != "other"]


def test_a_day_inside_a_month_is_read_from_its_partition(served, monkeypatch):
    token = served.token()
    ran = _ran(monkeypatch)
    assert len(_lines(served, token)) == 2
    assert _day_reads(ran) == ["cdr_p202605"]


def test_a_range_across_two_months_reads_cdr(served, monkeypatch):
    token = served.token()
    ran = _ran(monkeypatch)
    assert len(_lines(served, token, ACROSS)) == 2  # May 31st's call and June 1st's
    assert _day_reads(ran) == ["cdr"]


def _keep_may(pg_db: Database) -> None:
    """May's partition dropped by another connection, its rows kept apart."""
    with pg_db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE kept AS SELECT * FROM cdr_p202605")
        conn.exec_driver_sql("DROP TABLE cdr_p202605")


def test_a_month_dropped_by_another_connection_answers_from_cdr(served, pg_db, monkeypatch):
    token = served.token()
    ran = _ran(monkeypatch)
    first = _lines(served, token)  # the loop's connection prepares the statement naming May
    _keep_may(pg_db)
    # No rows: the documented "no CDR" errno, not a 500 nor the rows of before.
    assert _lines(served, token) == str(Errno.CDR_NOT_FOUND.value)
    with pg_db.write() as conn:  # the month's rows back, in cdr_default (no partition)
        conn.exec_driver_sql("INSERT INTO cdr SELECT * FROM kept")
    assert _lines(served, token) == first
    # The statement naming May ran once more and failed before it ran; then cdr.
    assert _day_reads(ran) == ["cdr_p202605", "cdr_p202605", "cdr", "cdr"]
    # Each download spent its random once and wrote one record: the failed statement nothing.
    with pg_db.read() as conn:
        spent = conn.execute(select(func.count()).select_from(cdr_random)).scalar_one()
        records = conn.execute(
            select(download_audit.c.outcome, download_audit.c.errno).order_by(download_audit.c.id)
        ).all()
    assert spent == 3
    assert [tuple(r) for r in records] == [
        ("ok", None),
        ("failed", str(Errno.CDR_NOT_FOUND.value)),
        ("ok", None),
    ]


def test_a_month_dropped_and_made_again_is_read_from_its_new_table(served, pg_db, monkeypatch):
    token = served.token()
    ran = _ran(monkeypatch)
    first = _lines(served, token)
    _keep_may(pg_db)
    with pg_db.write() as conn:  # made again (as the next import makes it), then its rows
        partitions.create_month(conn, MAY)
        conn.exec_driver_sql("INSERT INTO cdr SELECT * FROM kept WHERE callid <> 'b.1'")
    assert _lines(served, token) == first[:1]
    assert _day_reads(ran) == ["cdr_p202605", "cdr_p202605"]  # the name found again


def test_a_month_attached_by_another_connection_is_named_once_known(served, pg_db, monkeypatch):
    token = served.token()
    _keep_may(pg_db)
    with pg_db.write() as conn:
        conn.exec_driver_sql("INSERT INTO cdr SELECT * FROM kept")  # into cdr_default
    ran = _ran(monkeypatch)
    first = _lines(served, token)
    assert len(first) == 2
    with pg_db.write() as conn:  # attached: the month's rows moved into it
        partitions.create_month(conn, MAY)
    assert _lines(served, token) == first  # not known yet: read from cdr
    monkeypatch.setattr(day_months, "REFRESH_S", 0.0)
    assert _lines(served, token) == first
    assert _day_reads(ran) == ["cdr", "cdr", "cdr_p202605"]
