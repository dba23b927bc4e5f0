"""``import --follow``: read a growing CDR file like ``tail -F`` and store each new line.

* Only whole lines are consumed; a line still being written waits for its line end.
* Each batch of rows is committed together with the checkpoint (device, inode, byte offset,
  line number) of the file it came from, so a restart neither loses nor repeats a line.
* Rotation (the path now names another file): the rest of the old file is read first,
  then the new file from its start. If the rotation happened while cdrgate was stopped, the
  old file is looked for next to the path by its inode and finished first.
* Truncation (the file got shorter than the checkpoint): reading starts again at 0.
* Malformed lines are reported with their line number and skipped (see ``ingest.lines``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cdrgate.clock import Clock, system_clock
from cdrgate.errors import StorageUnavailable
from cdrgate.ingest.files import Report
from cdrgate.ingest.formats import Parsed, RowMapper
from cdrgate.ingest.lines import Rejected, check_file, parse_line
from cdrgate.storage import checkpoints
from cdrgate.storage.cdrs import Inserter
from cdrgate.storage.checkpoints import Checkpoint
from cdrgate.storage.db import Database

log = logging.getLogger("cdrgate.follow")

POLL_INTERVAL_S = 0.2  # well inside the promise that a line is stored within a second
OUTAGE_RETRY_MAX_S = 5.0  # a database back is noticed within this
CHUNK_BYTES = 1 << 20
OnStore = Callable[[int, int], None]  # (rows stored in the batch, of which new)


@dataclass
class _OpenFile:
    path: Path
    handle: BinaryIO
    device: int
    inode: int
    offset: int
    line: int


class Follower:
    def __init__(
        self,
        db: Database,
        path: Path,
        mapper: RowMapper,
        report: Report,
        *,
        clock: Clock = system_clock,
        on_store: OnStore | None = None,
        multiline: bool = False,
    ) -> None:
        """``multiline``: a quoted field may hold a line break (Yeastar files), so a row
        runs on until its quotes are closed; else each physical line is a row."""
        self.db = db
        self.path = path
        self.source = str(path.absolute())
        self.mapper = mapper
        self.report = report
        self.clock = clock
        self.on_store = on_store
        self.multiline = multiline
        self.current: _OpenFile | None = None
        self.rows = self.inserted = self.rejected = 0
        self._resumed = False

    def run(self, stop: threading.Event, interval: float = POLL_INTERVAL_S) -> None:
        """Poll until ``stop`` is set. A database outage is said once when it begins and once
        when it ends, and retried less often the longer it lasts (up to every
        ``OUTAGE_RETRY_MAX_S``): a line every poll was five a second for the whole outage."""
        wait = interval
        down_since: float | None = None
        try:
            while not stop.is_set():
                try:
                    self.poll()
                except StorageUnavailable as exc:
                    if down_since is None:
                        down_since = time.monotonic()
                        log.warning("database unavailable, will retry: %s", exc)
                    wait = min(wait * 2, max(interval, OUTAGE_RETRY_MAX_S))
                else:
                    if down_since is not None:
                        took = time.monotonic() - down_since
                        log.warning("database available again after %.0f s; following", took)
                        down_since = None
                    wait = interval
                stop.wait(wait)
        finally:
            self.close()

    def poll(self) -> int:
        """Consume what is new; returns the number of lines read."""
        if not self._resumed:
            self._resume()
            self._resumed = True
        if self.current is None and not self._open_path():
            return 0
        assert self.current is not None
        count = self._read(final=False)
        stat = _stat(self.path)
        current = self.current
        if stat is None or (stat.st_dev, stat.st_ino) != (current.device, current.inode):
            count += self._read(final=True)  # rotated: finish the old file
            self.close()
            if stat is not None and self._open_path():
                count += self._read(final=False)
        elif stat.st_size < current.offset:
            log.warning("%s was truncated; reading it again from the start", self.path)
            self._store([], 0, 0)
            count += self._read(final=False)
        return count

    def close(self) -> None:
        if self.current is not None:
            self.current.handle.close()
            self.current = None

    # -- opening -------------------------------------------------------------------------

    def _resume(self) -> None:
        with self.db.read() as conn:
            saved = checkpoints.load(conn, self.source)
        if saved is None:
            return
        if self._open_path(saved):
            return
        # The checkpointed file was rotated away while we were stopped: finish it first.
        old = _find_by_identity(self.path.parent, saved.device, saved.inode)
        if old is None:
            log.warning(
                "%s: the file read up to line %d is gone; any lines after it are lost",
                self.path,
                saved.line,
            )
            return
        self.current = _open(old, saved)
        if self.current is not None:
            self._read(final=True)
            self.close()

    def _open_path(self, saved: Checkpoint | None = None) -> bool:
        """Open the followed path: at the checkpoint if it is the same file, else at 0.

        With ``saved`` given, only the checkpointed file is accepted (False otherwise).
        """
        if not check_file(self.path):  # ImportFailed for a directory or a FIFO: no hang
            return False
        try:
            handle = open(self.path, "rb")  # kept open while following
        except FileNotFoundError:
            return False
        stat = os.fstat(handle.fileno())
        same = saved is not None and (stat.st_dev, stat.st_ino) == (saved.device, saved.inode)
        if saved is not None and not same:
            handle.close()
            return False
        offset, line = (saved.offset, saved.line) if saved is not None else (0, 0)
        if stat.st_size < offset:
            log.warning("%s is shorter than its checkpoint; reading it from the start", self.path)
            offset = line = 0
        self.current = _OpenFile(self.path, handle, stat.st_dev, stat.st_ino, offset, line)
        if saved is None or offset == 0:
            self._store([], offset, line)
        return True

    # -- reading -------------------------------------------------------------------------

    def _read(self, *, final: bool) -> int:
        """Consume the complete lines after the offset (and a trailing partial one if final)."""
        current = self.current
        assert current is not None
        consumed = 0
        while True:
            current.handle.seek(current.offset)
            data = current.handle.read(CHUNK_BYTES)
            if not data:
                return consumed
            end = data.rfind(b"\n") + 1
            if end == 0:
                if len(data) == CHUNK_BYTES:  # a line longer than a chunk: no CDR is
                    if not self._skip_long_line(final=final):
                        return consumed  # its line end is still being written
                    consumed += 1
                    continue
                if not final:
                    return consumed  # a line still being written
                end = len(data)
            lines = data[:end].split(b"\n")
            if data[end - 1 : end] == b"\n":
                lines.pop()  # split() leaves an empty piece after the last line end
            rows = list(enumerate(lines, start=current.line + 1))
            if self.multiline:
                rows, taken = _join_quoted(lines, current.line)
                if taken < len(lines) and (final or (taken == 0 and len(data) == CHUNK_BYTES)):
                    # An open quote at the end of a finished file, or a row larger than a
                    # chunk: read as it is, so it is reported, not waited for in vain.
                    rows.append((current.line + taken + 1, b"\n".join(lines[taken:])))
                    taken = len(lines)
                if taken == 0:
                    return consumed  # a row whose quoted line break is still being written
                if taken < len(lines):
                    end = sum(len(line) + 1 for line in lines[:taken])
                    lines = lines[:taken]
            records = self._parse(rows)
            self._store(records, current.offset + end, current.line + len(lines))
            consumed += len(lines)

    def _skip_long_line(self, *, final: bool) -> bool:
        """Report and pass over the line at the offset, longer than a chunk, as one line (its
        chunks were each reported as a line, which also shifted every later line's number);
        False while its line end is still to be written. Memory stays one chunk."""
        current = self.current
        assert current is not None
        length = 0
        current.handle.seek(current.offset)
        while data := current.handle.read(CHUNK_BYTES):
            newline = data.find(b"\n")
            if newline >= 0:
                length += newline + 1
                break
            length += len(data)
        else:
            if not final:
                return False
        self.rejected += 1
        self.report(
            Rejected(str(self.current_path), current.line + 1, f"line longer than {CHUNK_BYTES} "
                     f"bytes ({length}): not a CDR")
        )  # fmt: skip
        self._store([], current.offset + length, current.line + 1)
        return True

    def _parse(self, rows: list[tuple[int, bytes]]) -> list[Parsed]:
        records: list[Parsed] = []
        for number, raw in rows:
            try:
                record = parse_line(raw, self.mapper)
            except ValueError as exc:
                # Reported before the commit: a crash may repeat a report, never lose one.
                self.rejected += 1
                self.report(Rejected(str(self.current_path), number, str(exc)))
                continue
            if record is not None:
                records.append(record)
        return records

    @property
    def current_path(self) -> Path:
        return self.current.path if self.current is not None else self.path

    def _store(self, records: list[Parsed], offset: int, line: int) -> None:
        current = self.current
        assert current is not None
        checkpoint = Checkpoint(current.device, current.inode, offset, line)
        # Durable: the offset below moves past these lines for the rest of this run, so a
        # commit the database loses afterwards (a crash of a PostgreSQL server set to
        # synchronous_commit = off) would lose them until the next start.
        with self.db.write(durable=True) as conn:
            inserter = Inserter(self.db, conn)
            for record, ts in records:
                inserter.add(record, ts)
            inserted = inserter.flush()
            checkpoints.save(conn, self.source, checkpoint, int(self.clock() * 1000))
        current.offset, current.line = offset, line
        self.rows += len(records)
        self.inserted += inserted
        if records and self.on_store is not None:
            self.on_store(len(records), inserted)


def _join_quoted(lines: list[bytes], before: int) -> tuple[list[tuple[int, bytes]], int]:
    """Physical lines (the first is line ``before + 1``) -> ``(line where a row starts, row)``,
    a line break inside quotes joining lines, and how many lines those whole rows span (a row
    whose quote is still open at the end is left out: its line break is still being written).
    An even count of quote characters closes every quoted field, doubled quotes included."""
    rows: list[tuple[int, bytes]] = []
    start = quotes = 0
    for index, line in enumerate(lines):
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            rows.append((before + start + 1, b"\n".join(lines[start : index + 1])))
            start, quotes = index + 1, 0
    return rows, start


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _open(path: Path, saved: Checkpoint) -> _OpenFile | None:
    try:
        handle = open(path, "rb")  # closed by Follower.close
    except FileNotFoundError:
        return None
    return _OpenFile(path, handle, saved.device, saved.inode, saved.offset, saved.line)


def _find_by_identity(directory: Path, device: int, inode: int) -> Path | None:
    """The file in ``directory`` with this device and inode (a rotated log keeps both)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return None
    for entry in entries:
        stat = _stat(entry)
        if stat is not None and (stat.st_dev, stat.st_ino) == (device, inode):
            return entry
    return None
