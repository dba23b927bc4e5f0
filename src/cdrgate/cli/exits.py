"""The CLI's exit codes and the SIGTERM exception: what ``cdrgate.cli.main`` needs before any
command module (and the storage stack those import) is loaded."""

from __future__ import annotations

import os
import sys

# Exit codes (the README's table): 1 = the work failed (bad data, refused), 2 = usage,
# 3 = storage unavailable, 4 = `serve` cannot listen (the port is taken).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3
EXIT_PORT = 4
# Stopped from outside, as shells report a signal: 128 + its number.
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM
EXIT_PIPE = 141  # the output's reader went away (SIGPIPE), e.g. `| head`


class Terminated(BaseException):
    """SIGTERM arrived (raised by the handler ``cdrgate.cli.main`` installs): the command
    unwinds as for Ctrl-C, through every ``finally``, and is not caught as an error."""


def silence_stdout() -> None:
    """Point stdout at /dev/null once its reader went away (`| head`): what is still buffered
    for it would fail again in the interpreter's last flush, and exit 120."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
