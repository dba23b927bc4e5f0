"""`cdrgate import` of paths that are not regular files: a clear error, never a traceback or
a hang (opening a FIFO no one writes to blocks, and SIGTERM only sets a flag then)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import DEADLINE_S


def _import(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cdrgate", "import", *args, "--database", db_url]
    return subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S)


def _odd(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "Master.csv"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("directory", "is a directory"), ("fifo", "is not a regular file")],
)
@pytest.mark.parametrize("follow", [False, True], ids=["once", "follow"])
def test_a_directory_or_fifo_is_named_for_what_it_is_and_nothing_hangs(
    db, tmp_path, kind, reason, follow
):
    path = _odd(tmp_path, kind)
    done = _import(db.url, "--format", "asterisk", *(["--follow"] if follow else []), str(path))
    assert done.returncode == 1, done.stderr
    assert f"error: {path}: {reason}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "no such file" not in done.stderr
