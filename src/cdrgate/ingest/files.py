"""Import a whole CDR file, whatever its format, in one transaction.

Asterisk and FreeSWITCH lines that cannot be mapped are reported (file and line number) and
skipped; the good lines are stored. With ``strict``, and always for Yeastar files (a device
export is all or nothing), the first bad row aborts the file and nothing from it is stored.

A Yeastar file on SQLite goes first through the fast path (``yeastar_sql``: rows parsed and
checked in SQL); any row it refuses rolls that attempt back, and the file is then read here,
row by row, for the exact report. A Yeastar file on PostgreSQL does the same through
``yeastar_pg`` (the server's COPY parses it, SQL checks each row).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import BinaryIO

from sqlalchemy import Connection

from cdrgate.cdr import CsvRowError
from cdrgate.errors import ImportFailed
from cdrgate.ingest import apsw_writer, parallel, yeastar_sql
from cdrgate.ingest.formats import FORMATS, Format, Parsed, RowMapper, format_hint, row_mapper
from cdrgate.ingest.lines import GZIP, Rejected, multiline_rows, split_line
from cdrgate.ingest.profile import SourceProfile
from cdrgate.ingest.result import ImportResult as ImportResult  # its home is result.py
from cdrgate.ingest.result import Progress, attempt
from cdrgate.storage import cdrs, journal, visible
from cdrgate.storage.cdrs import Inserter, bulk_load
from cdrgate.storage.db import Database

Report = Callable[[Rejected], None]


def import_file(
    db: Database,
    source: str,
    stream: BinaryIO,
    fmt: Format,
    profile: SourceProfile,
    report: Report,
    *,
    strict: bool = False,
    progress: Progress | None = None,
    helper: parallel.Helper | None = None,
    python_path: bool = False,
) -> ImportResult:
    """``helper``: a child process already started for a parallel load (ingest/parallel.py),
    used if this file gets one (else one is started when needed); the caller closes it.
    ``python_path``: the file is read the Python way at once (a fast path has refused it
    already: ingest/first_load.py)."""
    fast_path = fmt is Format.yeastar and stream.seekable() and not python_path
    # PostgreSQL: the months written vacuumed after the commit (index-only day reads).
    with visible.vacuumed_after(db), _empty_store_journal(db):
        if fast_path and db.is_sqlite and yeastar_sql.AVAILABLE:
            fast = _import_in_sql(db, source, stream, profile, progress, helper)
            if fast is not None:
                return fast
        elif fast_path and not db.is_sqlite:
            fast = _import_in_postgres(db, source, stream, profile, progress)
            if fast is not None:
                return fast
        strict = strict or FORMATS[fmt].always_strict
        rejected = 0
        kinds: Counter[tuple[str, str]] = Counter()
        with db.write() as conn, bulk_load(conn):
            inserter = Inserter(db, conn, progress)
            for number, parsed in _rows(stream, fmt, profile):
                if isinstance(parsed, str):
                    if strict or (number == 1 and parsed == GZIP):
                        raise ImportFailed(source, number, parsed)
                    rejected += 1
                    report(Rejected(source, number, parsed))
                    continue
                record, ts = parsed
                inserter.add(record, ts)
                kinds[record.type, record.status] += 1
            inserter.flush()
        return ImportResult(source, inserter.rows, inserter.inserted, rejected, dict(kinds))


def _empty_store_journal(db: Database) -> contextlib.AbstractContextManager[object]:
    """A first file into an empty SQLite store is written through a rollback journal
    (``journal.rollback_journal``): its pages are written once, not into the WAL and then
    again by the checkpoint. Anything else, or a store someone else has open, stays in WAL."""
    if db.is_sqlite and cdrs.store_is_empty(db):
        return journal.rollback_journal(db)
    return contextlib.nullcontext()


def _import_in_sql(
    db: Database,
    source: str,
    stream: BinaryIO,
    profile: SourceProfile,
    progress: Progress | None,
    helper: parallel.Helper | None,
) -> ImportResult | None:
    """A Yeastar file through the fast path (yeastar_sql), on two cores when it is a large
    file going into an empty store (ingest/parallel.py), its writer in apsw's SQLite when it
    can be (ingest/apsw_writer.py); None as ``result.attempt``."""
    size = parallel.worth_it(stream)
    path = db.sqlite_file
    if size is not None and path and apsw_writer.can_load(db) and cdrs.store_is_empty(db):
        db.dispose()  # the pool's idle connections closed: apsw alone has the store open
        return attempt(
            source,
            stream,
            progress,
            lambda counted: apsw_writer.load(path, stream, size, profile, helper, counted),
        )

    def load(conn: Connection, inserter: Inserter) -> yeastar_sql.Kinds:
        with bulk_load(conn) as empty:
            if empty and size is not None:
                kinds = parallel.load(conn, inserter, stream, size, profile, helper)
            else:
                kinds = yeastar_sql.load(stream, inserter, row_mapper(Format.yeastar, profile))
            inserter.flush()  # before the index builds, as in one pass
        return kinds

    return attempt(source, stream, progress, _in_write_transaction(db, load))


def _import_in_postgres(
    db: Database, source: str, stream: BinaryIO, profile: SourceProfile, progress: Progress | None
) -> ImportResult | None:
    """A Yeastar file through PostgreSQL's fast path (yeastar_pg); None as ``result.attempt``."""
    if stream.tell() != 0:
        return None  # the fast path reads a file from its start (a BOM, a header)
    # Imported here: it brings psycopg, which an import into SQLite (its start-up on the
    # import's critical path) does not need.
    from cdrgate.ingest import yeastar_pg

    mapper = row_mapper(Format.yeastar, profile)
    return attempt(
        source,
        stream,
        progress,
        _in_write_transaction(
            db, lambda conn, inserter: yeastar_pg.load(conn, stream, inserter, mapper)
        ),
    )


def _in_write_transaction(
    db: Database, load: Callable[[Connection, Inserter], yeastar_sql.Kinds]
) -> Callable[[Progress], yeastar_sql.Loaded]:
    """``load`` with an ``Inserter`` in one write transaction of ``db``'s pool."""

    def run(progress: Progress) -> yeastar_sql.Loaded:
        with db.write() as conn:
            inserter = Inserter(db, conn, progress)
            kinds = load(conn, inserter)
            inserter.flush()
        return inserter.rows, inserter.inserted, kinds

    return run


def _rows(
    stream: BinaryIO, fmt: Format, profile: SourceProfile
) -> Iterator[tuple[int, Parsed | str]]:
    """``(line, parsed row or the reason it is refused)``; headers and blank lines skipped."""
    mapper = row_mapper(fmt, profile)
    if FORMATS[fmt].multiline:
        rows = multiline_rows(stream)
        while True:
            try:
                number, fields = next(rows)
            except StopIteration:
                return
            except CsvRowError as exc:
                yield exc.line, exc.reason
                return  # the reader has lost its place in the file
            yield from _mapped(number, fields, fmt, mapper)
        return
    for number, raw in enumerate(stream, start=1):
        try:
            line_fields = split_line(raw.removesuffix(b"\n"))
        except ValueError as exc:
            yield number, str(exc)
            continue
        if line_fields is not None:
            yield from _mapped(number, line_fields, fmt, mapper)


def _mapped(
    number: int, fields: list[str], fmt: Format, mapper: RowMapper
) -> Iterator[tuple[int, Parsed | str]]:
    try:
        parsed = mapper(fields)
    except ValueError as exc:
        yield number, str(exc) + format_hint(fmt, fields)
        return
    if parsed is not None:
        yield number, parsed
