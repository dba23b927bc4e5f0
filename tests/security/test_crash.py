"""Crash safety: `cdrgate import` killed with SIGKILL at random moments keeps every file it
reported as imported, never leaves part of a file, keeps SQLite intact, and a rerun finishes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.seed import SeedPlan, generate
from cdrgate.storage import schema
from cdrgate.storage.db import Database
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


@pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"), reason="needs Linux /proc")
def test_an_import_killed_at_random_points_loses_nothing_committed(tmp_path, files):
    first, n_first, big, n_big = files
    path = tmp_path / "crash.db"
    url = f"sqlite:///{path}"
    env = {**os.environ, "CDRGATE_DATABASE": url}
    schema.upgrade(Database(url))
    reported = subprocess.run([*CLI, "import", str(first)], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert reported.returncode == 0 and f"{n_first} new" in reported.stdout

    chooser = random.Random(KILL_SEED)
    size = big.stat().st_size
    for _ in range(KILLS):
        process = subprocess.Popen(
            [*CLI, "import", str(big)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Random points by progress, not by time, so the test means the same on any machine:
        # kill once the importer has read a random share of the file (up to all of it, when
        # it is inserting the last batch or committing).
        share = chooser.uniform(0.0, 1.0)
        assert _wait_for_read_offset(process, big, int(share * size)), "import ended too soon"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        rows, check = _rows_and_integrity(path)
        assert check == "ok"
        # The reported file is intact; the killed one is all there or not at all.
        assert rows in (n_first, n_first + n_big)

    rerun = subprocess.run([*CLI, "import", str(big)], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert _rows_and_integrity(path) == (n_first + n_big, "ok")
    assert not list(tmp_path.glob("*.db-journal"))  # WAL mode: no rollback journal left behind


def _wait_for_read_offset(process: subprocess.Popen[bytes], path, offset: int) -> bool:
    """Poll the importer's file position (Linux /proc); False if it exited first."""
    target = str(path)
    for _ in range(60_000):  # about a minute at most
        if process.poll() is not None:
            return False
        position = _read_position(process.pid, target)
        if position is not None and position >= offset:
            return True
        time.sleep(0.001)
    return False


def _read_position(pid: int, target: str) -> int | None:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    return int(info.readline().split()[1])  # "pos:\t<offset>"
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None
