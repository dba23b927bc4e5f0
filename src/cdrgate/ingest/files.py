"""Import a whole Asterisk / FreeSWITCH / Yeastar CSV file line by line.

Malformed lines are reported (file and line number) and skipped; the good lines of the file
are stored in one transaction. With ``strict`` the first malformed line aborts the file and
nothing from it is stored, which is the rule of the Yeastar importer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from cdrgate.cdr import CdrRecord
from cdrgate.errors import ImportFailed
from cdrgate.ingest.lines import Rejected, RowMapper, parse_line
from cdrgate.services.importing import ImportResult
from cdrgate.storage import cdrs
from cdrgate.storage.db import Database

Report = Callable[[Rejected], None]


@dataclass(frozen=True)
class LineImportResult(ImportResult):
    """``rows`` counts the lines that mapped to a CDR; ``rejected`` the malformed ones."""

    rejected: int = 0


def import_lines(
    db: Database,
    source: str,
    stream: BinaryIO,
    mapper: RowMapper,
    report: Report,
    *,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LineImportResult:
    rows = inserted = rejected = 0
    batch: list[CdrRecord] = []
    with db.write() as conn:
        for number, raw in enumerate(stream, start=1):
            try:
                record = parse_line(raw.removesuffix(b"\n"), mapper)
            except ValueError as exc:
                if strict:
                    raise ImportFailed(source, number, str(exc)) from None
                rejected += 1
                report(Rejected(source, number, str(exc)))
                continue
            if record is None:
                continue
            batch.append(record)
            rows += 1
            if len(batch) >= cdrs.INSERT_BATCH:
                inserted += cdrs.insert_records(db, conn, batch)
                if progress:
                    progress(len(batch))
                batch.clear()
        inserted += cdrs.insert_records(db, conn, batch)
    if progress:
        progress(len(batch))
    return LineImportResult(source, rows, inserted, rejected=rejected)
