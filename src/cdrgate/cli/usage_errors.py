"""Typer's and click's own errors (an unknown or malformed option, a value out of range, a
missing option or argument, an unknown command) as one line on stderr, as cdrgate's own
errors are (``cli_errors``): ``error: <what> (see cdrgate serve --help)``, exit 2.

Left to Typer, its ``main`` prints each as the usage line, a "Try ... for help" line and the
message in a Rich panel, wrapped at the terminal's width. It does so where nothing can reach
it (standalone mode), so the root group catches them first, where click raises them: while
it parses its own arguments (``make_context``) and while it runs what is below it
(``invoke``: resolving a command's name, parsing that command's arguments, a ``BadParameter``
a command raises). Only Typer's public names are used (``TyperException``, the base of
click's exceptions in the copy of click Typer ships, ``BadParameter``, ``Exit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

# What pydantic puts before a validator's message: Typer's refusal of a choice reads
# "Invalid value for '--outcome': Value error, 'nah' is not one of 'ok', ...".
_PYDANTIC_PREFIX = "Value error, "


@contextmanager
def on_one_line() -> Iterator[None]:
    """Say a Typer/click error raised inside as one line on stderr and exit with its code."""
    try:
        yield
    except typer.TyperException as exc:
        # A group run without a command has printed its help already (click raises this
        # to end with exit 2); Typer prints nothing more for it.
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise
        # Imported here: the consoles (rich) are for a run that has something to say.
        from cdrgate.cli.common import say

        say("error:", describe(exc))
        raise typer.Exit(exc.exit_code) from None


def describe(exc: typer.TyperException) -> str:
    """The error as one line, with where to find the command's help when it has one."""
    if isinstance(exc, typer.BadParameter) and exc.message.startswith(_PYDANTIC_PREFIX):
        exc.message = exc.message.removeprefix(_PYDANTIC_PREFIX)
    message = " ".join(part.strip() for part in exc.format_message().splitlines() if part.strip())
    ctx = getattr(exc, "ctx", None)  # a usage error's context: the command it concerns
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message = f"{message} (see {ctx.command_path} --help)"
    return message
