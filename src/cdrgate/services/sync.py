"""Mirror a PBX's CDRs into a cdrgate database, incrementally and idempotently.

How far a sync got is remembered per PBX (its base URL, checked against its serial number) as
the newest ``timestart`` stored from *completed* windows. The next run starts an overlap
before that mark, because the device writes a CDR when the call ends but files it under the
call's start: a long call that was still running last time appears "in the past" now.
Rows are keyed by (sn, callid), so re-reading the overlap, or a window that broke half-way,
never stores a CDR twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from cdrgate.cdr import CdrRecord, record_from_fields
from cdrgate.client import CdrClient
from cdrgate.client._windows import TimeArg, split, to_seconds
from cdrgate.errors import CdrgateError, UsageError
from cdrgate.ingest.store import store_records
from cdrgate.storage import cdrs, sync_state
from cdrgate.storage.db import Database
from cdrgate.storage.sync_state import SyncState
from cdrgate.timefmt import format_pbx_time, from_datetime, parse_pbx_time

DEFAULT_OVERLAP = timedelta(hours=2)
# The PBX's clock is in its own (unknown) time zone: reach a day past our clock so "now"
# on the device is always covered.
END_MARGIN = timedelta(days=1)
BATCH = 5000

SyncProgress = Callable[[int, int, int], None]  # (windows done, windows total, rows seen)


class SyncConflict(CdrgateError):
    """The device at a URL is not the one earlier syncs mirrored."""


@dataclass(frozen=True)
class SyncResult:
    pbx_url: str
    sn: str | None
    start: str
    end: str
    windows: int
    rows: int
    added: int


def pbx_key(base_url: str) -> str:
    """The URL a PBX is remembered by: scheme and host lower-cased, no trailing slash."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def sync_pbx(
    client: CdrClient,
    db: Database,
    *,
    since: TimeArg | None = None,
    until: TimeArg | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    now: Callable[[], datetime] = datetime.now,
    progress: SyncProgress | None = None,
) -> SyncResult:
    """Copy every CDR in [start, end] that the database lacks; returns what was done.

    ``start`` is ``since`` when given, else an ``overlap`` before the remembered mark; the
    first sync of a PBX needs ``since``. ``end`` is ``until``, else a day past ``now()``.
    """
    key = pbx_key(client.base_url)
    with db.read() as conn:
        state = sync_state.get(conn, key)
    start = _start(key, state, since, overlap)
    end = to_seconds(until) if until is not None else from_datetime(now() + END_MARGIN)
    if start > end:
        raise UsageError("the sync would start after it ends: check --since/--until")
    state = state or SyncState(key, None, start, None, 0, 0)
    state = _replace(state, since_ts=min(state.since_ts, start))

    spans = split(start, end, client.window)
    rows = added = 0
    for done, (low, high) in enumerate(spans, start=1):
        batch: list[CdrRecord] = []
        newest = state.mark_ts
        window_added = 0
        for cdr in client.iter_window("all", format_pbx_time(low), format_pbx_time(high)):
            record = record_from_fields(cdr.csv_fields())
            if state.sn is None:
                state = _replace(state, sn=record.sn)
            elif record.sn != state.sn:
                raise SyncConflict(
                    f"{key} now reports serial {record.sn}, but this database mirrors serial "
                    f"{state.sn} from that URL; sync a replaced device into a new database"
                )
            ts = parse_pbx_time(record.timestart)
            newest = ts if newest is None else max(newest, ts)
            batch.append(record)
            rows += 1
            if len(batch) >= BATCH:
                window_added += store_records(db, batch)
                batch.clear()
        # The mark moves only with a completed window, in the same transaction as its last
        # rows: an interruption anywhere leaves a mark that is safe to resume from.
        with db.write() as conn:
            window_added += cdrs.insert_records(db, conn, batch)
            state = _replace(
                state,
                mark_ts=newest,
                last_sync_ms=int(now().timestamp() * 1000),
                added_total=state.added_total + window_added,
            )
            sync_state.save(conn, state)
        added += window_added
        if progress:
            progress(done, len(spans), rows)
    return SyncResult(
        key, state.sn, format_pbx_time(start), format_pbx_time(end), len(spans), rows, added
    )


def _start(key: str, state: SyncState | None, since: TimeArg | None, overlap: timedelta) -> int:
    if since is not None:
        return to_seconds(since)
    if state is None:
        raise UsageError(f"first sync of {key} into this database: give --since (where to start)")
    if state.mark_ts is None:
        return state.since_ts
    return max(0, state.mark_ts - int(overlap.total_seconds()))


def _replace(state: SyncState, **changes: object) -> SyncState:
    return dataclasses.replace(state, **changes)  # type: ignore[arg-type]
