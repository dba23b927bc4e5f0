"""cdrgate db: schema status and upgrades."""

from __future__ import annotations

import typer

from cdrgate.cli.common import DEFAULT_DB, DatabaseOption, cli_errors, open_database, out

app = typer.Typer(help="Database schema management.", no_args_is_help=True)


@app.command()
@cli_errors
def upgrade(database: DatabaseOption = DEFAULT_DB) -> None:
    """Create or upgrade the schema to this version's newest revision."""
    from cdrgate.storage import schema

    open_database(database).dispose()
    revision = schema.head_revision()
    out.print(f"schema at revision {revision}")


@app.command()
@cli_errors
def status(database: DatabaseOption = DEFAULT_DB) -> None:
    """Show the schema revision of the database and of this code."""
    from cdrgate.services import stores
    from cdrgate.storage import schema

    current = stores.revision(database)
    head = schema.head_revision()
    out.print(f"database: {current or 'empty'}  code: {head}")
    if current != head:
        raise typer.Exit(1)
