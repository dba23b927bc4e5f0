"""Ctrl-C and SIGTERM stop a command's running SQLite statement, not only what follows it.

A signal's Python handler runs in the main thread between two bytecodes. A statement runs
inside one call into SQLite, so a Ctrl-C during ``cdrgate stats`` on a large store, or any
other long statement, waited for the statement's end (seconds on a few million rows) before
the command stopped.

A command's SQLite connections therefore get a progress handler (``watch``): SQLite calls it
every ``EVERY_OPS`` virtual-machine steps of a statement, and a Python call is a point where
a pending signal handler runs. The handler's exception (``KeyboardInterrupt``, the CLI's
``Terminated``) then leaves the callback, which makes SQLite stop the statement
("interrupted"), but ``sqlite3`` does not pass it on: it reports a failing callback through
``sys.unraisablehook`` (with callback tracebacks on) and raises its own OperationalError.
The hook installed here keeps that exception (``held``), every later long statement is
stopped at once, and the command's edge (``cli_errors``) raises it in place of whatever
error the stop caused: the command ends as a Ctrl-C or SIGTERM ends it anywhere else (130 /
143, rolled back).

Only the CLI arms it (``arm``): ``serve`` handles its signals itself, and its statements run
mostly in worker threads, where no signal handler runs. Only a store's connections are
watched (``storage.db``'s engines): the bulk import's apsw writer, the seed's makers and
``backup``'s copy open their own, and a signal there still waits for the statement or step.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

# ~1-2 ms of a statement's work between two checks; a check is one Python call (~0.1 us).
EVERY_OPS = 100_000

_armed = False
_held: list[BaseException] = []
_hook_before: Any = None


def arm() -> None:
    """Watch the statements of every SQLite connection opened from now on (``watch``)."""
    global _armed, _hook_before
    if not _armed:
        _armed = True
        sqlite3.enable_callback_tracebacks(True)
        _hook_before = sys.unraisablehook
        sys.unraisablehook = _keep_signal(_hook_before)


def disarm() -> None:
    """Connections opened from now on are not watched, and ``sqlite3`` and the unraisable
    hook are as they were (``serve``, whose signal handlers are not the CLI's)."""
    global _armed
    if _armed:
        _armed = False
        sqlite3.enable_callback_tracebacks(False)
        sys.unraisablehook = _hook_before


def watch(connection: sqlite3.Connection) -> None:
    """Give ``connection`` the progress check, once armed (a store's engines call this)."""
    if _armed:
        connection.set_progress_handler(_stop_requested, EVERY_OPS)


def _stop_requested() -> bool:
    # Raising here is how a signal stops the statement: its handler runs as this is called.
    return bool(_held)


def _keep_signal(then: Any) -> Any:
    def hook(unraisable: Any) -> None:
        # Only a signal handler can raise inside the check, which has nothing to fail.
        if unraisable.object is _stop_requested and unraisable.exc_value is not None:
            _held.append(unraisable.exc_value)
        else:
            then(unraisable)

    return hook


def held() -> BaseException | None:
    """The exception a signal raised during a statement; None when there was none."""
    return _held[0] if _held else None
