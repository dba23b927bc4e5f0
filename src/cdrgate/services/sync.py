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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from cdrgate.cdr import CdrRecord, record_from_fields
from cdrgate.client._windows import DEFAULT_OVERLAP as DEFAULT_OVERLAP
from cdrgate.client._windows import TimeArg, split, to_seconds
from cdrgate.errors import CdrgateError, UsageError
from cdrgate.ingest.store import store_records
from cdrgate.storage import cdrs, sync_state
from cdrgate.storage.db import Database
from cdrgate.storage.sync_state import SyncState
from cdrgate.timefmt import format_pbx_time, from_datetime, parse_pbx_time

if TYPE_CHECKING:  # the client (httpx) loads when a sync runs, not with the CLI
    from cdrgate.client import Cdr, CdrClient

# The PBX's clock is in its own (unknown) time zone: reach a day past our clock so "now"
# on the device is always covered.
END_MARGIN = timedelta(days=1)
BATCH = 5000
FEED_PAGE = 10_000  # CDRs per change-feed request (the API's maximum)

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
    mode: str = "windows"  # "windows" (time ranges) or "feed" (a cdrgate's change feed)
    feed_seq: int | None = None  # where the far end's change feed was read to, if it has one


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
    use_feed: bool = True,
) -> SyncResult:
    """Copy every CDR in [start, end] that the database lacks; returns what was done.

    ``start`` is ``since`` when given, else an ``overlap`` before the remembered mark; the
    first sync of a PBX needs ``since``. ``end`` is ``until``, else a day past ``now()``.

    When the far end is a cdrgate (it has a change feed) and no ``until`` bounds the copy,
    a sync that already knows where the feed was read to reads the feed on from there
    instead: every CDR stored since, whatever its start time, so a CDR stored late is not
    missed by the overlap. The first sync (and one given ``since``) copies by windows and
    remembers where the feed stood before it began.
    """
    key = pbx_key(client.base_url)
    with db.read() as conn:
        state = sync_state.get(conn, key)
    feed = client.changes(limit=1) if use_feed else None  # None: a PBX, without a feed
    follow = feed is not None and since is None and until is None
    if follow and state is not None and state.feed_seq is not None:
        return _follow_feed(client, db, state, now, progress)
    start = _start(key, state, since, overlap)
    end = to_seconds(until) if until is not None else from_datetime(now() + END_MARGIN)
    if start > end:
        raise UsageError("the sync would start after it ends: check --since/--until")
    state = state or SyncState(key, None, start, None, 0, 0)
    state = _replace(state, since_ts=min(state.since_ts, start))
    # Where the feed stood before the first window: everything stored up to it lies in the
    # windows (or before ``since``). Not for a copy bounded by ``until``: CDRs after it stored
    # before that position would be skipped by the next sync's feed.
    feed_mark = feed.last_seq if feed is not None and until is None else None

    spans = split(start, end, client.window)
    rows = added = 0
    for done, (low, high) in enumerate(spans, start=1):
        batch: list[CdrRecord] = []
        newest = state.mark_ts
        window_added = 0
        for cdr in client.iter_window("all", format_pbx_time(low), format_pbx_time(high)):
            record = _checked(state, key, cdr, many_serials=feed is not None)
            state = _replace(state, sn=state.sn or record.sn)
            ts = parse_pbx_time(record.timestart)
            newest = ts if newest is None else max(newest, ts)
            batch.append(record)
            rows += 1
            if len(batch) >= BATCH:
                window_added += store_records(db, batch)
                batch.clear()
        # The mark moves only with a completed window, in the same transaction as its last
        # rows: an interruption anywhere leaves a mark that is safe to resume from; the feed
        # position, only with the last window.
        last = done == len(spans)
        with db.write() as conn:
            window_added += cdrs.insert_records(db, conn, batch)
            state = _replace(
                state,
                mark_ts=newest,
                last_sync_ms=int(now().timestamp() * 1000),
                added_total=state.added_total + window_added,
                feed_seq=max(feed_mark, state.feed_seq or 0)
                if last and feed_mark is not None
                else state.feed_seq,
            )
            sync_state.save(conn, state)
        added += window_added
        if progress:
            progress(done, len(spans), rows)
    return SyncResult(
        key, state.sn, format_pbx_time(start), format_pbx_time(end), len(spans), rows, added,
        "windows", state.feed_seq,
    )  # fmt: skip


def _follow_feed(
    client: CdrClient,
    db: Database,
    state: SyncState,
    now: Callable[[], datetime],
    progress: SyncProgress | None,
) -> SyncResult:
    """Read the far end's change feed from where the last sync left it, a page per write
    transaction (rows and the new position together, so a break resumes exactly)."""
    assert state.feed_seq is not None
    first = after = state.feed_seq
    rows = added = 0
    while True:
        page = client.changes(after, FEED_PAGE)
        if page is None:
            raise SyncConflict(
                f"{state.pbx_url} no longer answers the change feed it answered before; "
                "sync it with --since to copy by time windows"
            )
        batch: list[CdrRecord] = []
        newest = state.mark_ts
        for _seq, cdr in page.cdrs:
            record = _checked(state, state.pbx_url, cdr, many_serials=True)
            state = _replace(state, sn=state.sn or record.sn)
            rows += 1
            ts = parse_pbx_time(record.timestart)
            # The mirror starts at ``since_ts``: older CDRs stored late stay out, as the
            # windows would have left them out.
            if ts >= state.since_ts:
                newest = ts if newest is None else max(newest, ts)
                batch.append(record)
        with db.write() as conn:
            page_added = cdrs.insert_records(db, conn, batch)
            state = _replace(
                state,
                mark_ts=newest,
                feed_seq=page.next_after,
                last_sync_ms=int(now().timestamp() * 1000),
                added_total=state.added_total + page_added,
            )
            sync_state.save(conn, state)
        added += page_added
        after = page.next_after
        if progress:
            progress(after - first, max(page.last_seq, after) - first, rows)
        if not page.cdrs:
            break
    start = format_pbx_time(state.since_ts)
    end = format_pbx_time(state.mark_ts) if state.mark_ts is not None else start
    return SyncResult(state.pbx_url, state.sn, start, end, 0, rows, added, "feed", after)


def _checked(state: SyncState, key: str, cdr: Cdr, *, many_serials: bool) -> CdrRecord:
    """The record of ``cdr``; a PBX whose serial changed is refused (a replaced device). A
    cdrgate (``many_serials``) may hold the CDRs of several PBXs: there the URL is the identity."""
    record = record_from_fields(cdr.csv_fields())
    if not many_serials and state.sn is not None and record.sn != state.sn:
        raise SyncConflict(
            f"{key} now reports serial {record.sn}, but this database mirrors serial "
            f"{state.sn} from that URL; sync a replaced device into a new database"
        )
    return record


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
