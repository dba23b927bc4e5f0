"""A write transaction on psycopg (a worker thread's) that commits, then loses its connection
before the COMMIT's answer comes: its backend terminated and psycopg's error raised, as a
connection lost right then raises it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from tests.pg_backends import terminate_backends


def lose_commit_after(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, label: str
) -> list[str]:
    """The first transaction that called ``module.name(conn, ...)`` commits, then its answer
    is lost; the list returned gets ``label`` when that happened."""
    return _lose_at_commit(monkeypatch, module, name, label, committed=True)


def lose_connection_before_commit(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, label: str
) -> list[str]:
    """The first transaction that called ``module.name(conn, ...)`` loses its connection just
    before its COMMIT (its backend terminated: psycopg's own error then), so nothing it wrote
    is kept; the list returned gets ``label`` when that happened."""
    return _lose_at_commit(monkeypatch, module, name, label, committed=False)


def _lose_at_commit(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, label: str, *, committed: bool
) -> list[str]:
    """The connection of the first transaction that called ``module.name`` is lost at its
    COMMIT: after the COMMIT went through (``committed``: the answer is what is lost), or
    before it was sent."""
    lost: list[str] = []
    watched: list[Any] = []  # the pooled connections that called it
    real_call = getattr(module, name)

    def call(conn: Any, *args: Any, **kwargs: Any) -> Any:
        watched.append(conn.connection)
        return real_call(conn, *args, **kwargs)

    real_commit = PGDialect_psycopg.do_commit

    def commit(self: Any, pooled: Any) -> None:
        if pooled not in watched or lost:
            real_commit(self, pooled)
        elif committed:
            real_commit(self, pooled)
            lost.append(label)
            terminate_backends(pooled.driver_connection.info.backend_pid)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        else:
            lost.append(label)
            terminate_backends(pooled.driver_connection.info.backend_pid)
            real_commit(self, pooled)  # psycopg's own error: its backend is gone

    monkeypatch.setattr(module, name, call)
    monkeypatch.setattr(PGDialect_psycopg, "do_commit", commit)
    return lost
