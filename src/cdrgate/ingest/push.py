"""Receiving pushed NewCdr events: the ingest keys that authorise a source, and the
all-or-nothing store of one request's events.

A push is authorised by an *ingest key*, not by an API login token: tokens idle out
(``token_idle_seconds``, 30 minutes by default) and need a login/heartbeat loop a dialplan
hook cannot run, and an API account may download every CDR while a pushing source should
only be able to add them. Each key names one source and carries the serial (``sn``) given to
its events that have none.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdrgate.cdr import CdrRecord
from cdrgate.clock import Clock
from cdrgate.errors import ApiError, Errno, UsageError
from cdrgate.ingest.newcdr import BadTime, event_name, is_newcdr, record_from_event
from cdrgate.passwords import secret_hash
from cdrgate.storage import cdrs, ingest_keys
from cdrgate.storage.db import Database


class BadEvent(ApiError):
    """Event number ``index`` (0-based, in request order) cannot be stored."""

    def __init__(self, errno: Errno, index: int, reason: str) -> None:
        super().__init__(errno, f"event {index}: {reason}")
        self.index = index
        self.reason = reason


@dataclass(frozen=True)
class PushResult:
    received: int  # NewCdr events in the request
    inserted: int  # of which new (the rest were already stored)
    ignored: int  # other events (ExtensionStatus, ...), acknowledged but not stored

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


def parse_events(body: bytes) -> list[Mapping[str, Any]]:
    """One event object, or a JSON array of them; anything else is 20000."""
    try:
        text = body.decode("utf-8-sig")
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(Errno.JSON_ONLY, "body is not JSON") from None
    # JSON can spell a string that is not Unicode (``"\\ud800"``), as for an API body
    # (``envelope.read_json_fields``): no store can encode it, so its commit failed, and the
    # 503 that answered it had the sender send it again, for ever. Only an escape makes one.
    if "\\u" in text and not _encodable(data):
        raise ApiError(Errno.JSON_ONLY, "body holds an unpaired surrogate escape")
    events = data if isinstance(data, list) else [data]
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise BadEvent(Errno.JSON_ONLY, index, "not a JSON object")
    return events


def _encodable(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def map_events(events: Sequence[Mapping[str, Any]], default_sn: str) -> tuple[list[CdrRecord], int]:
    """The NewCdr events as records, and how many other events were ignored."""
    records: list[CdrRecord] = []
    ignored = 0
    for index, event in enumerate(events):
        if not is_newcdr(event):
            if not any(key in event for key in ("event", "action")):
                raise BadEvent(Errno.PARAMETER_EMPTY, index, "no 'event' or 'action' key")
            if event_name(event) is None:
                # `"event": ""` or `["NewCdr"]` names no event: acknowledging it as another
                # kind would drop what may be a CDR without a word.
                raise BadEvent(Errno.PARAMETER_EMPTY, index, "'event' / 'action' names no event")
            ignored += 1
            continue
        try:
            records.append(record_from_event(event, default_sn))
        except BadTime as exc:
            raise BadEvent(Errno.CDR_TIME_FORMAT, index, str(exc)) from None
        except ValueError as exc:
            raise BadEvent(Errno.PARAMETER_EMPTY, index, str(exc)) from None
    return records, ignored


class PushReceiver:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def receive(self, key: str | None, events: Sequence[Mapping[str, Any]]) -> PushResult:
        """Store the request's events, all or none; returns once the commit is on disk."""
        if not key:
            raise ApiError(Errno.TOKEN_EMPTY, "no ingest key")
        with self.db.write(durable=True) as conn:
            source = ingest_keys.use(conn, secret_hash(key), int(self.clock() * 1000))
            if source is None:
                raise ApiError(Errno.TOKEN_UNKNOWN, "unknown ingest key")
            records, ignored = map_events(events, source.sn)
            inserted = cdrs.insert_records(self.db, conn, records)
        return PushResult(len(records), inserted, ignored)


def create_key(db: Database, name: str, sn: str, now_ms: int) -> str:
    """Add an ingest key for source ``name``; returns the key (shown once, stored hashed)."""
    if not name.strip():
        raise UsageError("the key name must not be empty")
    key = "cdrk_" + secrets.token_urlsafe(32)
    with db.write() as conn:
        if not ingest_keys.create(conn, name, secret_hash(key), sn, now_ms):
            raise UsageError(f"an ingest key named {name!r} exists; delete it first")
    return key


def list_keys(db: Database) -> list[ingest_keys.IngestKey]:
    with db.read() as conn:
        return list(ingest_keys.all_keys(conn))


def delete_key(db: Database, name: str) -> None:
    """UsageError when there is no such key."""
    with db.write() as conn:
        if not ingest_keys.remove(conn, name):
            raise UsageError(f"no ingest key {name!r}")
