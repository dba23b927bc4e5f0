"""The ``cdrgate`` command: each subcommand is a thin adapter over a service.

The Typer app (``app``) and its commands are in ``commands``, imported when ``main`` runs or
``app`` is first read: a process importing this package for ``main`` alone loads neither
Typer nor SQLAlchemy. One does so on every ``cdrgate import`` of a large file: its spawned
child re-runs the ``cdrgate`` script's imports, on the import's critical path.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from types import FrameType
from typing import Any, NoReturn


def main() -> None:
    from cdrgate import sqlite_interrupts
    from cdrgate.sqlite_memory import system_statistics_off

    # Before anything opens SQLite (cdrgate.sqlite_memory): apsw's are turned off where it is
    # imported, which most commands never do.
    system_statistics_off()
    # A Ctrl-C or SIGTERM stops a running SQLite statement too (``sqlite_interrupts``).
    sqlite_interrupts.arm()
    from cdrgate.cli import commands
    from cdrgate.cli.exits import EXIT_TERMINATED, Terminated

    commands.PROCESS = True

    # SIGTERM (systemd, a CI timeout, `kill`) ends a command as Ctrl-C does, through its
    # cleanup: transactions rolled back, scratch files and helper processes removed. The
    # default handler would kill the process where it stands. `serve` and `import --follow`
    # put their own handlers in place of this one.
    signal.signal(signal.SIGTERM, _terminated)
    stdout_was = _stdout_stat()
    try:
        commands.app()
    except Terminated:  # before or after a command's own edge (cli_errors) handled it
        sys.exit(EXIT_TERMINATED)
    except SystemExit as exc:
        if exc.code == 1 and _reader_left(stdout_was):
            _closed_pipe_exit()
        _flush_stdout()
        raise
    finally:
        # The command is done (its stores disposed at its edge, ``cli_errors``): the
        # interpreter's last cyclic collection at exit would walk every object the imports
        # made (~660k: SQLAlchemy, psycopg, Typer) only to free memory the process gives
        # back anyway, 0.08-0.3 s after the command's last statement (bench/RESULTS.md,
        # twenty-second round). Frozen, they are left out of it; atexit handlers still run,
        # and what they make is still collected.
        gc.freeze()


def _stdout_stat() -> os.stat_result | None:
    """The file behind stdout's descriptor; None when it has none."""
    try:
        return os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):  # no descriptor (io.UnsupportedOperation), or closed
        return None


def _reader_left(stdout_was: os.stat_result | None) -> bool:
    """Whether an exit 1 is a library's answer to a closed stdout, not a failed command: what
    is printed outside a command's edge (``cli_errors``), help and ``--version``, goes through
    typer's rich console, whose ``on_broken_pipe`` points stdout at /dev/null and exits 1, or
    typer's ``echo``, whose EPIPE handler wraps stdout and exits 1. Either says "the work
    failed" to a script (`set -o pipefail`) for `cdrgate --help | head`."""
    # The wrapper is known by its name: typer has its own copy of click (typer._click), and
    # click 8.2+ renamed its class _PacifyFlushWrapper.
    if type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
        return True
    # Compared with what stdout was at the start: a command run with `> /dev/null` that
    # fails still exits 1.
    now = _stdout_stat()
    if now is None or (stdout_was is not None and os.path.samestat(now, stdout_was)):
        return False
    return os.path.samestat(now, os.stat(os.devnull))


def _closed_pipe_exit() -> NoReturn:
    from cdrgate.cli.exits import EXIT_PIPE, silence_stdout

    silence_stdout()
    sys.exit(EXIT_PIPE)


def _flush_stdout() -> None:
    """Send what stdout still buffers now, not in the interpreter's last flush: a reader gone
    away by then (`| head`) would make that flush fail and the exit code 120. It ends here as
    ``cli_errors`` ends a closed pipe: 141, quietly."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _closed_pipe_exit()


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    from cdrgate.cli.exits import Terminated

    raise Terminated


def __getattr__(name: str) -> Any:
    if name == "app":
        from cdrgate.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
