"""The ``sync_state`` table: how far `cdrgate sync` got with each PBX it mirrors."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from cdrgate.storage.dialect import insert
from cdrgate.storage.tables import sync_state


@dataclass(frozen=True)
class SyncState:
    pbx_url: str
    sn: str | None
    since_ts: int  # wall-clock seconds where the first sync started
    mark_ts: int | None  # newest timestart stored from completed windows
    last_sync_ms: int
    added_total: int
    feed_seq: int | None = None  # the far end's change-feed sequence read to (cdrgate only)


def get(conn: Connection, pbx_url: str) -> SyncState | None:
    row = conn.execute(select(sync_state).where(sync_state.c.pbx_url == pbx_url)).first()
    return None if row is None else SyncState(**row._asdict())


def save(conn: Connection, state: SyncState) -> None:
    values = {
        "pbx_url": state.pbx_url,
        "sn": state.sn,
        "since_ts": state.since_ts,
        "mark_ts": state.mark_ts,
        "last_sync_ms": state.last_sync_ms,
        "added_total": state.added_total,
        "feed_seq": state.feed_seq,
    }
    stmt = insert(conn, sync_state).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[sync_state.c.pbx_url],
            set_={key: value for key, value in values.items() if key != "pbx_url"},
        )
    )


def all_states(conn: Connection) -> list[SyncState]:
    rows = conn.execute(select(sync_state).order_by(sync_state.c.pbx_url))
    return [SyncState(**row._asdict()) for row in rows]
