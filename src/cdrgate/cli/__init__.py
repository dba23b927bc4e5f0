"""The ``cdrgate`` command: each subcommand is a thin adapter over a service.

The Typer app (``app``) and its commands are in ``commands``, imported when ``main`` runs or
``app`` is first read: a process importing this package for ``main`` alone loads neither
Typer nor SQLAlchemy. One does so on every ``cdrgate import`` of a large file: its spawned
child re-runs the ``cdrgate`` script's imports, on the import's critical path.
"""

from __future__ import annotations

import gc
import signal
import sys
from types import FrameType
from typing import Any


def main() -> None:
    from cdrgate.cli import commands
    from cdrgate.cli.exits import EXIT_TERMINATED, Terminated

    commands.PROCESS = True

    # SIGTERM (systemd, a CI timeout, `kill`) ends a command as Ctrl-C does, through its
    # cleanup: transactions rolled back, scratch files and helper processes removed. The
    # default handler would kill the process where it stands. `serve` and `import --follow`
    # put their own handlers in place of this one.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        commands.app()
    except Terminated:  # before or after a command's own edge (cli_errors) handled it
        sys.exit(EXIT_TERMINATED)
    except SystemExit:
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


def _flush_stdout() -> None:
    """Send what stdout still buffers now, not in the interpreter's last flush: a reader gone
    away by then (`| head`) would make that flush fail and the exit code 120. It ends here as
    ``cli_errors`` ends a closed pipe: 141, quietly."""
    from cdrgate.cli.exits import EXIT_PIPE, silence_stdout

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        sys.exit(EXIT_PIPE)


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    from cdrgate.cli.exits import Terminated

    raise Terminated


def __getattr__(name: str) -> Any:
    if name == "app":
        from cdrgate.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
