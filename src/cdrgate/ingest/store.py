"""Storing records that are already in hand (pushed, synced, built by tests) in one go."""

from __future__ import annotations

from collections.abc import Iterable

from cdrgate.cdr import CdrRecord
from cdrgate.storage import cdrs
from cdrgate.storage.db import Database


def store_records(db: Database, records: Iterable[CdrRecord]) -> int:
    """Insert records (duplicates skipped) in one transaction; returns how many were new."""
    with db.write() as conn:
        return cdrs.insert_records(db, conn, records)
