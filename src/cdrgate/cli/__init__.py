"""The ``cdrgate`` command: each subcommand is a thin adapter over a service."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from cdrgate import __version__
from cdrgate.cli import (
    audit,
    client_cmds,
    data,
    database,
    help_format,
    ingest,
    ops,
    recordings,
    serve,
    stats,
    users,
)
from cdrgate.cli.common import EXIT_TERMINATED, Terminated

help_format.install()

app = typer.Typer(
    name="cdrgate",
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


app.command("serve")(serve.serve)
app.command("import")(data.import_files)
app.command("seed")(data.seed)
app.command("audit")(audit.audit_log)
app.command("stats")(stats.stats_command)
app.command("download")(client_cmds.download)
app.command("sync")(client_cmds.sync)
app.command("download-recording")(recordings.download_recording)
app.add_typer(recordings.app, name="recordings")
app.add_typer(users.app, name="api-user")
app.add_typer(database.app, name="db")
app.command("prune")(ingest.prune_command)
app.add_typer(ingest.keys_app, name="ingest-key")
app.command("backup")(ops.backup)
app.command("restore")(ops.restore)
app.add_typer(ops.config_app, name="config")


def main() -> None:
    # SIGTERM (systemd, a CI timeout, `kill`) ends a command as Ctrl-C does, through its
    # cleanup: transactions rolled back, scratch files and helper processes removed. The
    # default handler would kill the process where it stands. `serve` and `import --follow`
    # put their own handlers in place of this one.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except Terminated:  # before or after a command's own edge (cli_errors) handled it
        sys.exit(EXIT_TERMINATED)


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated
