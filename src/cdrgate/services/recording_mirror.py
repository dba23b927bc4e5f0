"""`cdrgate sync --recordings DIR`: fetch the recordings the synced CDRs name into DIR.

The folder is kept flat (DIR/NAME), which `serve --recordings DIR` serves as it is. A file
under its final name is complete: the SDK writes through a temporary file and renames it
only after checking its size against Content-Length. So a rerun, after a crash or not, skips
every file already there and fetches the rest; temporary files a crash left are removed.
Recordings the PBX no longer has (20014) are reported, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cdrgate.client._errors import PbxError
from cdrgate.errors import Errno
from cdrgate.recfolder import safe_name
from cdrgate.storage import recordings, sync_state
from cdrgate.storage.db import Database

if TYPE_CHECKING:  # the client (httpx) loads when a mirror runs, not with the CLI
    from cdrgate.client import CdrClient


@dataclass
class MirrorResult:
    fetched: int = 0
    skipped: int = 0  # already in the folder
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # 20014 from the PBX
    refused: list[str] = field(default_factory=list)  # names that are not plain file names


class RecordingMirror:
    """Fetches, into ``root``, each recording named by CDRs stored after the last call."""

    def __init__(self, client: CdrClient, db: Database, root: str | Path, pbx_key: str) -> None:
        self.client = client
        self.db = db
        self.root = Path(root)
        self.pbx_key = pbx_key
        self.result = MirrorResult()
        self._after = 0  # catch up on everything the database holds first (crash resume)

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(".*.part"):
            leftover.unlink(missing_ok=True)

    def fetch_new(self) -> MirrorResult:
        with self.db.read() as conn:
            newest = recordings.newest_id(conn)
            state = sync_state.get(conn, self.pbx_key)
            names = recordings.names_after(conn, self._after, state.sn if state else None)
        for name in names:
            self._fetch(name)
        self._after = newest
        return self.result

    def _fetch(self, name: str) -> None:
        if not safe_name(name):
            self.result.refused.append(name)
            return
        target = self.root / name
        if target.is_file() and target.stat().st_size > 0:
            self.result.skipped += 1
            return
        try:
            done = self.client.download_recording(name, target)
        except PbxError as exc:
            if exc.errno != Errno.RECORDING_NOT_FOUND:
                raise
            self.result.missing.append(name)
            return
        self.result.fetched += 1
        self.result.bytes += done.bytes


def after_each_window(
    mirror: RecordingMirror, inner: Callable[[int, int, int], None] | None
) -> Callable[[int, int, int], None]:
    """A sync progress callback that also fetches the window's recordings."""

    def progress(done: int, total: int, rows: int) -> None:
        mirror.fetch_new()
        if inner is not None:
            inner(done, total, rows)

    return progress
