"""A pooled PostgreSQL connection's liveness, checked on checkout without a round trip.

SQLAlchemy's ``pool_pre_ping`` sends an empty statement on every checkout, so that a request
after a database restart or failover gets a fresh connection instead of an error. That is a
round trip per request: on a small flow (get_random + download) two of its eleven
(bench/RESULTS.md, sixteenth round).

A pooled connection is idle: the server sends it nothing while no statement runs, unless it
closes it (a restart, a failover, ``pg_terminate_backend``: its last message then the end of
the stream) or, rarely, has a notice for it. So its socket has something to read only if it
may be gone: then, and only then, the connection is pinged as ``pool_pre_ping`` would (a
notice is read on the way and the connection kept). A silent loss (a cable cut, no FIN) is
not seen here, nor was it by the ping: the request's statement finds it, within the TCP
keepalive and user timeout every connection is given (``pg_tcp``).
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import InvalidatePoolError


def ping_when_unsure(engine: Engine) -> None:
    """Check each connection ``engine``'s pool hands out (instead of ``pool_pre_ping``)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not _has_input(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # As pool_pre_ping does: every pooled connection made before now is replaced
            # (a restart closed them all), and this checkout gets a fresh one.
            raise InvalidatePoolError(str(exc).splitlines()[0]) from exc


def _has_input(dbapi_connection: Any) -> bool:
    """Whether the idle connection's socket has bytes (or the end of the stream) to read."""
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # closed on our side: psycopg refuses fileno()
        return True
    # poll, not select: a busy server's descriptors may lie beyond select's 1024.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
