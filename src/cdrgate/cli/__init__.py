"""The ``cdrgate`` command: each subcommand is a thin adapter over a service."""

from __future__ import annotations

import typer

from cdrgate.cli import data, database, serve, users

app = typer.Typer(
    name="cdrgate",
    help="Yeastar S-Series compatible CDR download server, importer and client.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.command("import")(data.import_files)
app.command("seed")(data.seed)
app.add_typer(users.app, name="api-user")
app.add_typer(database.app, name="db")


def main() -> None:
    app()
