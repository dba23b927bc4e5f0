"""What an import of a file reports, and a fast path's attempt at a file.

A module importing no storage (SQLAlchemy): an import into an empty SQLite store may load its
first file without it (``first_load.py``), and the CLI reports its result as any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from cdrgate.ingest import parallel, yeastar_sql

Progress = Callable[[int], None]  # called with the number of rows just stored


@dataclass(frozen=True)
class ImportResult:
    """``rows`` counts the rows that mapped to a CDR; ``rejected`` the malformed ones;
    ``kinds`` how many rows of each (type, status), so a wrong mapping shows at once."""

    source: str
    rows: int
    inserted: int
    rejected: int = 0
    kinds: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.rows - self.inserted


def attempt(
    source: str,
    stream: BinaryIO,
    progress: Progress | None,
    load: Callable[[Progress], yeastar_sql.Loaded],
) -> ImportResult | None:
    """``load`` the file (in one write transaction); None, with the stream where it was and
    nothing stored, when the Python path must read it (a bad row: its exact report)."""
    start = stream.tell()
    reported = 0

    def counted(rows: int) -> None:
        nonlocal reported
        reported += rows
        if progress is not None:
            progress(rows)

    try:
        rows, inserted, kinds = load(counted)
    except (yeastar_sql.Doubt, parallel.HelperFailed):
        stream.seek(start)
        if progress is not None and reported:
            progress(-reported)  # the Python path counts its rows again from the start
        return None
    return ImportResult(source, rows, inserted, 0, dict(kinds))
