"""`cdrgate import` of odd input: paths that are not regular files (a clear error, never a
traceback or a hang: opening a FIFO no one writes to blocks, and SIGTERM only sets a flag
then), and a header with the columns in another order."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdrgate.cdr import CSV_COLUMNS
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


def test_a_yeastar_header_in_another_column_order_is_named_not_blamed_for_its_time(db, tmp_path):
    columns = list(CSV_COLUMNS)
    values = dict(zip(columns, "r.1,2026-05-28 10:00:00,1001,2002,10,5,,,ANSWERED,Internal,,,,s"
                      .split(","), strict=True))  # fmt: skip
    order = [columns[1], columns[0], *columns[2:]]
    path = tmp_path / "cdr.csv"
    path.write_text(",".join(order) + "\n" + ",".join(values[name] for name in order) + "\n")
    done = _import(db.url, str(path))
    assert done.returncode == 1, done.stderr
    assert f"{path}:1: a header naming the columns in another order" in done.stderr
    assert "callid,timestart,callfrom," in done.stderr
    assert "not a yyyy-mm-dd" not in done.stderr


@pytest.mark.parametrize("fmt", ["yeastar", "asterisk", "freeswitch"])
def test_a_gzip_file_named_csv_is_refused_whole_with_the_way_to_read_it(db, tmp_path, fmt):
    """A logrotate'd Master.csv.1 compressed in place: one error for the file, not a report
    per compressed "line" each blamed on UTF-8."""
    rows = "".join(f"row {n},with,some,text\n" for n in range(2000)).encode()
    path = tmp_path / "Master.csv"
    path.write_bytes(gzip.compress(rows))
    done = _import(db.url, "--format", fmt, str(path))
    assert done.returncode == 1, done.stderr
    assert done.stderr.count(str(path)) == 1, done.stderr
    assert f"{path}:1: gzip-compressed, not CSV text" in done.stderr
    assert "zcat FILE | cdrgate import -" in done.stderr
