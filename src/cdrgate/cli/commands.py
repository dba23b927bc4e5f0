"""The ``cdrgate`` Typer app: the root group and its command registry.

Commands are registered by name (``_COMMANDS``) and their modules imported when one is run
or listed: a command then pays for its own imports only (``cdrgate import`` does not load
the HTTP client, the server or the audit log's modules), while ``--help`` imports them all.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer._click import Command, Context  # Typer's own copy of click, whose commands it builds
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

from cdrgate import __version__
from cdrgate.cli import help_format, usage_errors

help_format.install()

# True when this is the `cdrgate` process (set by ``cdrgate.cli.main``): see _collector_paused.
PROCESS = False

# name -> (module in cdrgate.cli, attribute: a command's function or a group's Typer), in the
# order --help lists them (Typer lists the commands, then the groups).
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve"),
    "import": ("data", "import_files"),
    "seed": ("data", "seed"),
    "audit": ("audit", "audit_log"),
    "stats": ("stats", "stats_command"),
    "download": ("client_cmds", "download"),
    "sync": ("client_cmds", "sync"),
    "download-recording": ("recordings", "download_recording"),
    "prune": ("ingest", "prune_command"),
    "backup": ("ops", "backup"),
    "restore": ("ops", "restore"),
    "recordings": ("recordings", "app"),
    "api-user": ("users", "app"),
    "db": ("database", "app"),
    "ingest-key": ("ingest", "keys_app"),
    "config": ("ops", "config_app"),
}


class _LazyCommands(MutableMapping[str, Command]):
    """The root group's commands, each built from its module on first use. Typer (and its
    click) read a group's commands through this mapping only (running one, listing them, suggesting
    a name for a typo), so they see every command as if all had been registered up front."""

    def __init__(self) -> None:
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            if name not in _COMMANDS:
                raise KeyError(name)
            self._built[name] = _build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from _COMMANDS
        yield from (name for name in self._built if name not in _COMMANDS)

    def __len__(self) -> int:
        return len(_COMMANDS) + sum(name not in _COMMANDS for name in self._built)


def _build(name: str) -> Command:
    """The click command ``name``, made as Typer makes a registered command or sub-app."""
    module, attribute = _COMMANDS[name]
    with _collector_paused():
        target: Any = getattr(importlib.import_module(f"cdrgate.cli.{module}"), attribute)
    if isinstance(target, typer.Typer):
        return get_group_from_info(
            TyperInfo(target, name=name),
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
            suggest_commands=app.suggest_commands,
        )
    return get_command_from_info(
        CommandInfo(name=name, callback=target),
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a command's modules are imported, and
    what they made then set aside for good (``gc.freeze``), in the ``cdrgate`` process only
    (``PROCESS``). Imports make many long-lived objects (SQLAlchemy's and our classes, functions,
    tables) and little garbage; the collector would walk them again and again as they pile up,
    and again in every full pass after: ~0.03 s of CPU before a command starts, on `cdrgate
    import`'s critical path (bench/RESULTS.md, the writer's head, thirteenth round). Not in a
    process that calls ``app`` itself (tests' CliRunner): freezing would keep its own garbage
    uncollected, finalizers unrun."""
    if not PROCESS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class _LazyGroup(TyperGroup):
    """The root group: commands built on first use, and every usage error (its own or a
    command's below it) one line on stderr (``usage_errors``), not Typer's panel."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands()

    def make_context(
        self, info_name: str | None, args: list[str], parent: Context | None = None, **extra: Any
    ) -> Context:
        with usage_errors.on_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Context) -> Any:
        with usage_errors.on_one_line():
            return super().invoke(ctx)


app = typer.Typer(
    name="cdrgate",
    cls=_LazyGroup,
    help="Yeastar S-Series compatible CDR download server, importer and client.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cdrgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Yeastar S-Series compatible CDR download server, importer and client."""
