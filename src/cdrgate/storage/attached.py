"""Scratch files attached to a store's connection for one write transaction (a seed's
chunks, a parallel import's second part).

A file attached inside a transaction stays attached, and open, until the transaction ends,
which is when the connection goes back to its pool; a pooled connection must not keep it.
So the store's engine detaches every attached file at check-in, once a loader has asked it to.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event

# SQLite's own schemas: everything else on a store's connection was attached by a loader.
_OWN = frozenset({"main", "temp"})


def detach_on_checkin(engine: Engine) -> None:
    """From now on, ``engine``'s connections go back to its pool with no file attached."""
    if not event.contains(engine, "checkin", _detach_all):
        event.listen(engine, "checkin", _detach_all)


def _detach_all(dbapi_connection: Any, _record: Any) -> None:
    if dbapi_connection is None:
        return
    for row in dbapi_connection.execute("PRAGMA database_list").fetchall():
        if row[1] not in _OWN:
            dbapi_connection.execute(f'DETACH "{row[1]}"')
