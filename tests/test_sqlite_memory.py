"""SQLite's memory statistics off (cdrgate.sqlite_memory): done in a fresh process before its
first connection, left alone in a process that has connections open. Each case runs in a
new interpreter, as the setting is global to the library and this test process has
connections open."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

apsw = pytest.importorskip("apsw")

_USED = """
import ctypes, sqlite3, _sqlite3
library = ctypes.CDLL(_sqlite3.__file__)
library.sqlite3_memory_used.restype = ctypes.c_int64
import apsw
"""


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_USED) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_fresh_process_turns_both_libraries_statistics_off_and_still_works():
    out = _run(
        """
        from cdrgate.sqlite_memory import statistics_off
        statistics_off()
        conn = sqlite3.connect(":memory:")
        assert conn.execute("SELECT group_concat(value) FROM json_each('[1,2,3]')").fetchone() == ("1,2,3",)
        other = apsw.Connection(":memory:")
        assert list(other.execute("SELECT printf('%d-%s', 7, 'x')")) == [("7-x",)]
        print(library.sqlite3_memory_used(), apsw.memory_used())
        """
    )
    assert out == "0 0"  # counted, a connection holds tens of KB


def test_a_process_with_connections_open_keeps_its_statistics_and_connections():
    out = _run(
        """
        from cdrgate import sqlite_memory
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (x)")
        other = apsw.Connection(":memory:")
        print(sqlite_memory.system_statistics_off(), sqlite_memory.apsw_statistics_off(apsw))
        conn.execute("INSERT INTO t VALUES (1)")
        print(conn.execute("SELECT x FROM t").fetchall(), library.sqlite3_memory_used() > 0)
        """
    )
    assert out.splitlines() == ["False False", "[(1,)] True"]
