"""asyncpg's form of a flow's statements and of the database URL (storage/pg_loop.py); the
statements themselves run in tests/postgres/test_flow_on_loop.py."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from cdrgate.storage import session_day, session_spend, signed_spend, tokens
from cdrgate.storage.driver import PostgresStatement
from cdrgate.storage.pg_loop import _asyncpg_dsn


def test_a_statements_marks_are_numbered_in_order_and_a_literal_percent_kept():
    statement = PostgresStatement("SELECT %s::VARCHAR LIKE 'a%%' || %s, %s", ("a", "b", "c"))
    assert statement.numbered_sql == "SELECT $1::VARCHAR LIKE 'a%' || $2, $3"


@pytest.mark.parametrize(
    "statement",
    [
        tokens.last_seen_statement(),
        signed_spend.statement(),
        session_day._statement(3, None),
        session_spend._statement(3, None),
        session_day._statement(3, "cdr_p202605"),
        session_spend._statement(3, "cdr_p202605"),
    ],
    ids=["token", "spend", "day", "day-and-spend", "month-day", "month-day-and-spend"],
)
def test_the_flows_statements_have_one_number_a_mark(statement: PostgresStatement):
    numbered = statement.numbered_sql
    assert "%s" not in numbered
    assert f"${len(statement.marks)}" in numbered
    assert f"${len(statement.marks) + 1}" not in numbered


def test_the_urls_options_become_server_settings_and_the_driver_is_dropped():
    url = make_url(
        "postgresql+psycopg://u:p%40ss@db.example:5433/cdr?sslmode=require"
        "&options=-csearch_path%3Dt_1 -c work_mem=8MB --lock-timeout=5s"
    )
    dsn, settings = _asyncpg_dsn(url)
    assert settings == {"search_path": "t_1", "work_mem": "8MB", "lock_timeout": "5s"}
    assert dsn == "postgresql://u:p%40ss@db.example:5433/cdr?sslmode=require"


def test_options_it_cannot_read_are_refused():
    with pytest.raises(ValueError, match="options"):
        _asyncpg_dsn(make_url("postgresql+psycopg://db/cdr?options=-csearch_path"))
    with pytest.raises(ValueError, match="options"):
        _asyncpg_dsn(make_url("postgresql+psycopg://db/cdr?options=verbose"))
    with pytest.raises(ValueError, match="options"):
        _asyncpg_dsn(make_url("postgresql+psycopg://db/cdr?options=-c"))


class _Conn:
    """An asyncpg connection as the pool sees it; ``refuses``: asyncpg's answer when the server
    ended it while idle and the loop has read the server's error but not yet the end."""

    def __init__(self, refuses: bool) -> None:
        self.refuses, self.terminated = refuses, False

    def is_closed(self) -> bool:
        return self.terminated

    def terminate(self) -> None:
        self.terminated = True

    async def fetchrow(self, sql: str, *args: object) -> tuple[int]:
        import asyncpg

        if self.refuses:
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
        return (7,)


def test_a_statement_asyncpg_would_not_start_runs_on_another_connection_a_write_too():
    import asyncio

    from cdrgate.storage.pg_loop import LoopStatements

    made: list[_Conn] = []

    async def connect() -> _Conn:
        made.append(_Conn(refuses=len(made) < 2))
        return made[-1]

    async def run() -> list[object]:
        statements = LoopStatements(make_url("postgresql+psycopg://db/cdr"), 5)
        statements._connect = connect  # type: ignore[method-assign]
        # Two connections in the pool, both out of step (as after pg_terminate_backend).
        spends = (statements.row(signed_spend.statement(), _SPEND, writes=True) for _ in range(2))
        return list(await asyncio.gather(*spends))

    assert asyncio.run(run()) == [(7,), (7,)]
    # The two out of step closed, not given back; the statements ran on a new one.
    assert [conn.terminated for conn in made[:2]] == [True, True]
    assert len(made) > 2 and not any(conn.terminated for conn in made[2:])


_SPEND = {name: None for name in signed_spend.statement().marks}
