"""Scratch folders: work files a command makes and removes (a seed's chunks, a parallel
import's part), in the system's temporary directory.

A command removes its folder when it ends, by error, Ctrl-C or SIGTERM too. A process killed
outright (SIGKILL, the OOM killer, a power cut) cannot: its chunk files, tens to hundreds of MB,
would stay until the machine's /tmp is cleaned. So each folder is named after the process
that made it, and making one first removes the folders of this user's processes that are gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cdrgate.pids import alive

_PREFIX = "cdrgate-scratch-"
_OWNER = re.compile(re.escape(_PREFIX) + r"[a-z]+-(\d+)-")


@contextmanager
def scratch_folder(kind: str) -> Iterator[Path]:
    """A new folder for this process's ``kind`` of work files, removed when the block ends."""
    sweep_abandoned()
    folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{kind}-{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_abandoned(directory: str | None = None) -> list[Path]:
    """Remove the scratch folders whose process no longer runs; returns them."""
    base = Path(directory or tempfile.gettempdir())
    removed = []
    for folder in base.glob(f"{_PREFIX}*"):
        owner = _OWNER.match(folder.name)
        if owner is None or not _ours(folder) or alive(int(owner[1])):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _ours(folder: Path) -> bool:
    try:
        return folder.stat().st_uid == os.getuid()
    except OSError:
        return False
