"""Shared CLI pieces: the --database option, consoles, and the error edge."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from cdrgate import sqlite_interrupts
from cdrgate.cli.exits import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_STORAGE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    silence_stdout,
)
from cdrgate.errors import (
    CdrgateError,
    ImportFailed,
    SchemaError,
    StorageUnavailable,
    UsageError,
)
from cdrgate.settings import DEFAULT_DATABASE

if TYPE_CHECKING:
    from cdrgate.storage.db import Database

# Messages carry user data (file names, CSV cells, URLs): no markup, emoji codes or
# highlighting may be read into them ("[/x]" would raise, ":ab:" would become an emoji), and
# soft_wrap never breaks the lines that scripts read.
_PLAIN = {"soft_wrap": True, "markup": False, "emoji": False, "highlight": False}


class _Console(Console):
    """rich's Console, except that a reader gone away is left to ``cli_errors``."""

    def on_broken_pipe(self) -> None:
        # rich's own handler exits 1, which tells a script the work failed; `cdrgate ... |
        # head` should end as ``cli_errors`` ends a closed pipe: 141, quietly.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


out = _Console(**_PLAIN)  # type: ignore[arg-type]
err = _Console(stderr=True, **_PLAIN)  # type: ignore[arg-type]


def say(label: str, message: str, style: str = "red") -> None:
    """One stderr line: a coloured label (on a terminal) and the message, printed verbatim."""
    err.print(Text.assemble((label, style), " ", message))


DatabaseOption = Annotated[
    str,
    typer.Option(
        "--database",
        envvar="CDRGATE_DATABASE",
        help="Database URL: sqlite:///FILE or postgresql://USER@HOST/DB.",
        show_default=True,
    ),
]
DEFAULT_DB = DEFAULT_DATABASE

P = ParamSpec("P")
R = TypeVar("R")


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn cdrgate's own errors into one line on stderr and an exit code: no tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            try:
                done = func(*args, **kwargs)
            except Exception:
                _raise_held_signal()
                raise
            _raise_held_signal()  # a stopped statement whose error something caught
            return done
        except StorageUnavailable as exc:
            say("error:", f"database unavailable: {exc}")
            raise typer.Exit(EXIT_STORAGE) from None
        except UsageError as exc:
            say("error:", str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except (ImportFailed, SchemaError, CdrgateError) as exc:
            say("error:", str(exc))
            raise typer.Exit(EXIT_FAILED) from None
        except BrokenPipeError:
            # The reader of the output went away (`| head`): stop as a shell reports the
            # SIGPIPE that other tools die of, quietly.
            silence_stdout()
            raise typer.Exit(EXIT_PIPE) from None
        except (KeyboardInterrupt, Terminated) as exc:
            # Every write of the command that had not committed was rolled back as this
            # exception unwound it; what earlier transactions committed stays.
            how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
            say("stopped:", f"{how}; work not yet committed was rolled back", "yellow")
            code = EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_TERMINATED
            raise typer.Exit(code) from None
        finally:
            _dispose_opened()

    return wrapper


def _raise_held_signal() -> None:
    """A Ctrl-C or SIGTERM that stopped a SQLite statement (``sqlite_interrupts``) is what
    ends the command, not the error the stop made the statement raise."""
    if (signal_exc := sqlite_interrupts.held()) is not None:
        raise signal_exc.with_traceback(None) from None


# The stores a command opened, closed when it ends (pooled connections must not be left to
# the garbage collector: on PostgreSQL each is a server session).
_opened: list[Database] = []


def _remember(db: Database) -> Database:
    _opened.append(db)
    return db


def _dispose_opened() -> None:
    while _opened:
        _opened.pop().dispose()


def open_database(url: str, note: Callable[[str], None] | None = None) -> Database:
    """The store for a command that fills it (import, seed, sync, serve): created if new, and
    said so (by ``note``, given the line, when the command has its own way to say it)."""
    # Imported here, as in open_existing: the storage stack (SQLAlchemy) is for the commands
    # that open a store, not for every module that needs the error edge or the consoles.
    from cdrgate.services import stores

    opened = stores.open_or_create(url)
    if opened.created is not None:
        (note or note_created)(created_line(opened.created, sqlite=opened.db.is_sqlite))
    return _remember(opened.db)


def created_line(where: str, *, sqlite: bool = True) -> str:
    """What a command says of a store it made at ``where``. A PostgreSQL database existed
    already: cdrgate made its tables there."""
    if sqlite:
        return f"created a new database at {where}"
    return f"created cdrgate's tables in the empty database {where}"


def note_created(line: str) -> None:
    """Say that a command made a new store (``created_line``)."""
    say("note:", line, "yellow")


def open_existing(url: str, *, write: bool) -> Database:
    """The store for a command that reads it or administers it: it must exist already."""
    from cdrgate.services import stores

    return _remember(stores.open_existing(url, write=write))


def read_secret_stdin() -> str:
    """One line from stdin, without its line ending."""
    value = sys.stdin.readline().rstrip("\r\n")
    return value


@contextmanager
def row_progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on a terminal; silent when stderr is piped."""
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
