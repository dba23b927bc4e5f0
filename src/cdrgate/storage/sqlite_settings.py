"""SQLite's settings and bulk-load statements, as plain text: every connection to a SQLite
store uses them, the pool's (``storage/db.py``, ``storage/cdrs.py``) and a parallel import's
writer in apsw (``ingest/apsw_writer.py``). A module of its own, importing nothing, so that
writer reaches its first row without SQLAlchemy's import (bench/RESULTS.md, eighteenth round).
"""

from __future__ import annotations

import os

SQLITE_BUSY_TIMEOUT_S = 30
# A store connection's page cache (an export's has its own, db.EXPORT_CACHE_KIB).
CACHE_KIB = 65536
# After a restart, the first commit truncates a WAL file larger than this back to it (SQLite's
# journal_size_limit): a burst's WAL does not keep its disk space for ever.
WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024


def connection_settings(
    busy_s: float, cache_kib: int = CACHE_KIB, mmap_mib: int = 0
) -> tuple[str, ...]:
    """The settings (PRAGMA ...) of every connection to a SQLite store, after its journal
    mode: a pooled one's, and a parallel import's writer's in apsw (ingest/apsw_writer.py).
    ``mmap_mib``: the memory map's size (0 = none; a server's is the setting
    ``sqlite_mmap_mib``, settings.py)."""
    return (
        "synchronous=NORMAL",
        f"busy_timeout={int(busy_s * 1000)}",
        "foreign_keys=ON",
        "temp_store=MEMORY",
        f"cache_size=-{cache_kib}",
        f"journal_size_limit={WAL_SIZE_LIMIT_BYTES}",
        f"mmap_size={mmap_mib * 1024 * 1024}",
    )


# The secondary indexes of ``cdr`` as the migrations made them, which a bulk load into an
# empty store drops and builds again after its rows (cdrs.bulk_load, apsw_writer.load). The
# uniqueness key's index has no SQL (SQLite makes it for the constraint) and stays.
SECONDARY_INDEXES = (
    "SELECT name, sql FROM sqlite_master "
    "WHERE type = 'index' AND tbl_name = 'cdr' AND sql IS NOT NULL ORDER BY name"
)

# SQLite's sorter (CREATE INDEX) hands sorted runs to its worker threads only once the sort
# spills out of the page cache into temporary files, and not at all when those "files" are
# in memory (the store's temp_store=MEMORY). With a small cache, two threads and temporary
# files on disk, the four builds of a 1M-row load take ~1.5-2.5 s instead of ~3-3.5 s (a
# larger cache is slower again; bench/RESULTS.md, eighth round). The spilled runs are a few
# tens of MB in SQLite's temporary directory, removed when the build ends.
_SORT_THREADS = min(2, os.cpu_count() or 1)
_SORT_CACHE_KIB = 2000
# Those settings (PRAGMA ...), in this order: threads, page cache, temporary storage.
SORTER_SETTINGS = (
    f"threads = {_SORT_THREADS}",
    f"cache_size = -{_SORT_CACHE_KIB}",
    "temp_store = FILE",
)
