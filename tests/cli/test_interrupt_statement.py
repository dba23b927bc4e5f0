"""Ctrl-C and SIGTERM stop a command while SQLite runs one long statement, not after it.

The child runs what a command runs: the CLI's arming (``sqlite_interrupts.arm``) and SIGTERM
handler as ``cdrgate.cli.main`` installs them, a store opened as commands open it, and its
statement inside ``cli_errors``. The statement alone would take minutes; before the progress
check the signal waited for its end."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.interruptible import popen_interruptible

CHILD = """
import signal, sys
import typer
from cdrgate import sqlite_interrupts
from cdrgate.cli import _terminated
from cdrgate.cli.common import cli_errors
from cdrgate.storage.db import Database

sqlite_interrupts.arm()
signal.signal(signal.SIGTERM, _terminated)

@cli_errors
def long_statement():
    db = Database("sqlite:///" + sys.argv[1])
    with db.read() as conn:
        print("running", flush=True)
        conn.exec_driver_sql(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 4e9)"
            " SELECT max(n) FROM c"
        ).scalar_one()
    print("finished", flush=True)

try:
    long_statement()
except typer.Exit as exc:
    sys.exit(exc.exit_code)
"""
# Generous: the stop takes milliseconds; the statement alone, minutes.
STOPPED_WITHIN_S = 30


@pytest.mark.parametrize(
    ("signum", "code", "how"), [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_signal_stops_the_running_statement(tmp_path, signum, code, how):
    command = [sys.executable, "-c", CHILD, str(tmp_path / "store.db")]
    with popen_interruptible(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "running\n"
            # The statement starts right after the line; a signal sent before it would
            # stop the command in Python, as it always did.
            time.sleep(0.5)
            process.send_signal(signum)
            out, err = process.communicate(timeout=STOPPED_WITHIN_S)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == code, err
    assert err.strip() == f"stopped: {how}; work not yet committed was rolled back"
    assert "finished" not in out
