"""The recordings folder on disk: which names are safe, where a name's file is, and the
incremental refresh of the index that maps names to files (storage/recordings.py).

Nothing outside the folder is ever opened: names are plain file names (no separators, no
``..``, no NUL), the index only holds paths found by walking the folder without following
directory symlinks, and the resolved target of every path is checked to lie inside the
folder's resolved root before it is opened.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cdrgate.storage import recordings
from cdrgate.storage.db import Database

log = logging.getLogger("cdrgate.recordings")

CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# A folder modified this recently may still change within the same mtime tick: list it
# again on the next refresh instead of trusting its mtime.
SETTLE_NS = 2_000_000_000


def safe_name(name: str) -> bool:
    """A bare file name: never a path, never a way out of the folder."""
    return bool(
        name
        and name.strip() == name
        and not any(bad in name for bad in ("/", "\\", ".."))
        and not any(ord(char) < 32 or ord(char) == 127 for char in name)
        and name != "."
    )


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), DEFAULT_CONTENT_TYPE)


@dataclass(frozen=True)
class OpenFile:
    name: str
    path: Path  # the resolved file, inside the folder
    size: int
    stream: BinaryIO


class RecordingFolder:
    """One recordings folder and its index in ``db``."""

    def __init__(self, root: str | Path, db: Database) -> None:
        self.root = Path(root)
        self.db = db
        # One refresh at a time per process: a burst of misses walks the folders once.
        self._refreshing = threading.Lock()
        # Whether the folder was found gone, so that an unmounted share is one warning (and
        # its return one note), not a line per request.
        self._gone = False

    def open(self, name: str) -> OpenFile | None:
        """The named file, opened for reading; None if the name is unsafe or has no file."""
        if not safe_name(name):
            return None
        for attempt in range(2):
            with self.db.read() as conn:
                rel = recordings.indexed_path(conn, name)
            opened = self._open_inside(rel) if rel is not None else None
            if opened is not None:
                return OpenFile(name, *opened)
            if attempt == 0:
                self.refresh()
        return None

    def locate(self, name: str) -> Path | None:
        opened = self.open(name)
        if opened is None:
            return None
        opened.stream.close()
        return opened.path

    def _open_inside(self, rel: str) -> tuple[Path, int, BinaryIO] | None:
        root = self.root.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            return None
        # Non-blocking: opening a FIFO (or a device) for reading waits, for ever, for a
        # writer, and every request for that name would hold a worker thread until then.
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return None
            os.set_blocking(fd, True)
        except OSError:
            os.close(fd)
            return None
        return target, info.st_size, os.fdopen(fd, "rb")

    def refresh(self) -> None:
        """List again every sub-folder whose mtime moved; forget the ones that are gone."""
        with self._refreshing:
            if not self.root.is_dir():
                if not self._gone:
                    self._gone = True
                    log.warning(
                        "recordings folder %s is gone (unmounted or removed?): every recording "
                        "answers 20014 until it is back",
                        self.root,
                    )
                return
            if self._gone:
                self._gone = False
                log.info("recordings folder %s is back", self.root)
            with self.db.read() as conn:
                known = recordings.folder_mtimes(conn)
            children: dict[str, list[str]] = {}
            for folder in known:
                if folder:
                    children.setdefault(_parent(folder), []).append(folder)
            seen: set[str] = set()
            pending = [""]
            now_ns = time.time_ns()
            while pending:
                folder = pending.pop()
                seen.add(folder)
                path = self.root / folder if folder else self.root
                try:
                    mtime = path.stat(follow_symlinks=False).st_mtime_ns
                except OSError:
                    continue
                # Reversed onto the stack: folders are visited in name order, so when two
                # folders hold one name, the earliest (dated) folder is its home.
                if known.get(folder) == mtime:
                    pending.extend(sorted(children.get(folder, []), reverse=True))
                    continue
                files, subfolders = _list(path, folder)
                stored = mtime if now_ns - mtime > SETTLE_NS else -1
                with self.db.write() as conn:
                    recordings.replace_folder(conn, folder, stored, files)
                pending.extend(reversed(subfolders))
            gone = [folder for folder in known if folder not in seen]
            if gone:
                with self.db.write() as conn:
                    for folder in gone:
                        recordings.forget_folder(conn, folder)

    def files(self) -> dict[str, str]:
        """Every indexed name and its relative path, after a refresh."""
        self.refresh()
        with self.db.read() as conn:
            return {row.name: row.path for row in recordings.indexed(conn)}


def walk(root: str | Path) -> Iterator[tuple[str, str]]:
    """(name, relative path) of every file under ``root``, without following folder links."""
    pending = [""]
    base = Path(root)
    while pending:
        folder = pending.pop()
        files, subfolders = _list(base / folder if folder else base, folder)
        yield from files.items()
        pending.extend(reversed(subfolders))


def remove(root: str | Path, rel: str) -> bool:
    """Delete one file (a link itself, never its target) if it lies inside ``root``."""
    base = Path(root).resolve()
    path = base / rel
    if not path.parent.resolve().is_relative_to(base):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _parent(folder: str) -> str:
    return folder.rpartition("/")[0]


def _list(path: Path, folder: str) -> tuple[dict[str, str], list[str]]:
    """The file names (to relative paths) and sub-folders of one folder; no symlinked dirs."""
    files: dict[str, str] = {}
    subfolders: list[str] = []
    try:
        entries = list(os.scandir(path))
    except OSError:
        return files, subfolders
    for entry in sorted(entries, key=lambda e: e.name):
        rel = f"{folder}/{entry.name}" if folder else entry.name
        if entry.is_dir(follow_symlinks=False):
            subfolders.append(rel)
        elif safe_name(entry.name) and not entry.name.endswith(".part"):
            files[entry.name] = rel
    return files, subfolders
