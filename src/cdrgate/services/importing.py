"""Getting CDRs in: Yeastar CSV files (all or nothing per file) and generated sample data."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cdrgate.cdr import CdrRecord, iter_csv_rows, record_from_fields
from cdrgate.errors import ImportFailed
from cdrgate.seed import SeedPlan, generate
from cdrgate.storage import cdrs
from cdrgate.storage.db import Database

Progress = Callable[[int], None]  # called with the number of rows just handled
SEED_BATCH = 20000


@dataclass(frozen=True)
class ImportResult:
    source: str
    rows: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.rows - self.inserted


def import_yeastar_csv(
    db: Database,
    source: str | Path,
    stream: BinaryIO | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one Yeastar CDR CSV in a single transaction.

    Rows already stored (same ``sn`` and ``callid``) are skipped. Any bad row aborts the file
    with :class:`ImportFailed` naming the line, and nothing from that file is kept.
    """
    name = str(source)
    opened = stream if stream is not None else open(source, "rb")
    text = io.TextIOWrapper(opened, encoding="utf-8-sig", newline="")
    sql = cdrs.insert_sql(db)
    rows = inserted = 0
    line = 0
    batch: list[tuple[object, ...]] = []
    try:
        with db.write() as conn:
            try:
                for line, fields in iter_csv_rows(text):  # noqa: B007 - read in handlers
                    batch.append(cdrs.row_values(record_from_fields(fields)))
                    rows += 1
                    if len(batch) >= cdrs.INSERT_BATCH:
                        inserted += cdrs.insert_rows(conn, sql, batch)
                        batch.clear()
                        if progress:
                            progress(cdrs.INSERT_BATCH)
                inserted += cdrs.insert_rows(conn, sql, batch)
            except UnicodeDecodeError as exc:
                raise ImportFailed(name, line + 1, f"not UTF-8 text ({exc.reason})") from None
            except csv.Error as exc:
                raise ImportFailed(name, line + 1, f"malformed CSV: {exc}") from None
            except ValueError as exc:
                raise ImportFailed(name, line, str(exc)) from None
    finally:
        text.detach()
        if stream is None:
            opened.close()
    if progress:
        progress(len(batch))
    return ImportResult(name, rows, inserted)


def store_records(db: Database, records: Iterable[CdrRecord]) -> int:
    """Insert records (duplicates skipped) in one transaction; returns how many were new."""
    with db.write() as conn:
        return cdrs.insert_records(db, conn, records)


def seed_database(db: Database, plan: SeedPlan, progress: Progress | None = None) -> int:
    """Insert ``plan.count`` generated CDRs; returns how many were new."""
    sql = cdrs.insert_sql(db)
    inserted = 0
    batch: list[tuple[object, ...]] = []

    def flush() -> None:
        nonlocal inserted
        with db.write() as conn:
            inserted += cdrs.insert_rows(conn, sql, batch)
        if progress:
            progress(len(batch))
        batch.clear()

    for record, line in generate(plan):
        batch.append(cdrs.row_values(record, line))
        if len(batch) >= SEED_BATCH:
            flush()
    flush()
    return inserted
