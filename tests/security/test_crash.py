"""Crash safety: `cdrgate import` killed with SIGKILL at random points of its input keeps every
file it reported as imported, never leaves part of a file, keeps SQLite intact, and a rerun
finishes. (A kill during the commit itself is not aimed at: no outside signal can place it.)
A `cdrgate seed` killed while it loads an empty store leaves it empty."""

from __future__ import annotations

import array
import fcntl
import os
import random
import signal
import sqlite3
import subprocess
import termios
import time
from pathlib import Path

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.seed import SeedPlan, generate
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.interruptible import popen_interruptible
from tests.servers import CLI

KILL_SEED = 6
KILLS = 3
ROWS_FIRST, ROWS_BIG = 500, 20_000


def _write_csv(path, plan: SeedPlan) -> int:
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(CSV_HEADER)
        count = 0
        for _record, line in generate(plan):
            out.write(line)
            count += 1
    return count


def _rows_and_integrity(path) -> tuple[int, str]:
    conn = sqlite3.connect(path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM cdr").fetchone()[0]
    finally:
        conn.close()
    return rows, check


@pytest.fixture
def files(tmp_path):
    first, big = tmp_path / "first.csv", tmp_path / "big.csv"
    n_first = _write_csv(first, SeedPlan(count=ROWS_FIRST, seed=1, start="2026-04-01 00:00:00"))
    n_big = _write_csv(big, SeedPlan(count=ROWS_BIG, seed=2, start="2026-05-01 00:00:00"))
    return first, n_first, big, n_big


def test_an_import_killed_at_random_points_loses_nothing_committed(tmp_path, files):
    first, n_first, big, n_big = files
    path = tmp_path / "crash.db"
    url = f"sqlite:///{path}"
    env = {**os.environ, "CDRGATE_DATABASE": url}
    db = Database(url)
    schema.upgrade(db)
    db.dispose()
    reported = subprocess.run([*CLI, "import", str(first)], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert reported.returncode == 0 and f"{n_first} new" in reported.stdout

    chooser = random.Random(KILL_SEED)
    data = big.read_bytes()
    for _ in range(KILLS):
        # Random points by progress, not by time, so the test means the same on any machine:
        # the importer reads the file from a pipe we hold open, so it cannot outrun the kill
        # and commit; it is killed once it has read a random share of the file (up to all of
        # it, when it waits only for the end of input).
        _kill_after_reading(env, data[: int(chooser.uniform(0.0, 1.0) * len(data))])
        rows, check = _rows_and_integrity(path)
        assert check == "ok"
        # The reported file is intact; nothing of the killed one is there.
        assert rows == n_first

    rerun = subprocess.run([*CLI, "import", str(big)], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert _rows_and_integrity(path) == (n_first + n_big, "ok")
    assert not list(tmp_path.glob("*.db-journal"))  # WAL mode: no rollback journal left behind


def _kill_after_reading(env: dict[str, str], data: bytes) -> None:
    """``cdrgate import -`` fed ``data`` and SIGKILLed once it has read all of it."""
    process = subprocess.Popen([*CLI, "import", "-"], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert process.stdin is not None
    try:
        process.stdin.write(data)  # blocks while the pipe is full: the importer sets the pace
        process.stdin.flush()
        for _ in range(60_000):  # bounded (about a minute), not a timing assertion
            assert process.poll() is None, "the importer exited with its input still open"
            if _unread(process.stdin.fileno()) == 0:
                break
            time.sleep(0.001)
        else:
            pytest.fail("the importer stopped reading its input")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdin.close()


def _unread(fd: int) -> int:
    """Bytes written to the pipe and not yet read by the other end (FIONREAD)."""
    buffer = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buffer)
    return buffer[0]


def _seed_writing_in_place(path: Path, scratch: Path) -> subprocess.Popen[bytes]:
    """A 1M-row seed into the new empty store ``path``, once it writes into the file (its
    scratch folder under ``scratch``, the child's TMPDIR)."""
    url = f"sqlite:///{path}"
    db = Database(url)
    schema.upgrade(db)
    db.dispose()
    empty_size = path.stat().st_size
    scratch.mkdir()
    process = popen_interruptible([*CLI, "seed", "--count", "1000000", "--database", url],
                                  env={**os.environ, "TMPDIR": str(scratch)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    for _ in range(120_000):  # bounded (a couple of minutes), not a timing assertion
        if process.poll() is not None:
            break
        # Pages past the empty store's end: the load is being written in place.
        if path.stat().st_size > empty_size + (16 << 20):
            return process
        time.sleep(0.001)
    process.kill()
    process.communicate(timeout=30)
    pytest.fail("the seed never wrote into the store")


def test_a_seed_killed_while_it_writes_an_empty_store_leaves_it_empty(tmp_path):
    # Seeding an empty store alone writes its pages straight into the file, beside a rollback
    # journal (storage/seeded_pipeline.py): killed half-way, the next opener rolls it back.
    path = tmp_path / "seeded.db"
    url = f"sqlite:///{path}"
    scratch = tmp_path / "tmp"
    process = _seed_writing_in_place(path, scratch)
    try:
        assert Path(f"{path}-journal").exists()
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert _rows_and_integrity(path) == (0, "ok")
    # Its chunk files could not be removed by the killed process...
    assert [p.name for p in scratch.iterdir()] != []
    db = Database(url)
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM cdr_summary").scalar() == 0
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()
    again = subprocess.run([*CLI, "seed", "--count", "300", "--database", url],
                           env={**os.environ, "TMPDIR": str(scratch)},
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert _rows_and_integrity(path) == (300, "ok")
    # ...the next seed removed them (their process is gone), and its own.
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(("stop", "said"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_a_seed_stopped_from_outside_rolls_back_says_so_and_removes_its_files(tmp_path, stop, said):
    path = tmp_path / "seeded.db"
    scratch = tmp_path / "tmp"
    process = _seed_writing_in_place(path, scratch)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + stop
    assert f"stopped: {said}; work not yet committed was rolled back" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert _rows_and_integrity(path) == (0, "ok")
    assert not Path(f"{path}-journal").exists()  # rolled back by the seed itself
    assert list(scratch.iterdir()) == []
