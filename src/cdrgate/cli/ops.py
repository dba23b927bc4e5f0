"""cdrgate backup, restore and config: adapters over ``cdrgate.backup`` and ``cdrgate.config``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cdrgate import config as configs
from cdrgate.cli.common import DEFAULT_DB, DatabaseOption, cli_errors, out, say

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar=configs.CONFIG_ENV,
        metavar="FILE",
        help="TOML file with settings (flags and CDRGATE_* variables take precedence).",
    ),
]

config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)


@config_app.command("show")
@cli_errors
def config_show(config: ConfigOption = None) -> None:
    """Print each setting as TOML, with its source (secrets redacted)."""
    for row in configs.show(config, os.environ):
        out.print(f"{row.name} = {row.value}  # {row.source}")


@cli_errors
def backup(
    output: Annotated[Path, typer.Option("--output", "-o", help="New file to write.")],
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Copy a SQLite database, consistent while serve runs (PostgreSQL: use pg_dump)."""
    from cdrgate import backup as backups

    size = backups.backup(database, output)
    say("backed up:", f"{output} ({size} bytes)", "green")


@cli_errors
def restore(
    backup_file: Annotated[Path, typer.Argument(metavar="BACKUP", help="A file from backup.")],
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Replace a SQLite database with a backup; refused while the database is in use."""
    from cdrgate import backup as backups

    revision = backups.restore(backup_file, database)
    say(
        "restored:", f"{backup_file} (schema {revision}); run cdrgate db upgrade if needed", "green"
    )
