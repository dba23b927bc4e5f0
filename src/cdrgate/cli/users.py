"""cdrgate api-user: the accounts applications log in with."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cdrgate import passwords
from cdrgate.cli.common import (
    DEFAULT_DB,
    DatabaseOption,
    cli_errors,
    err,
    open_existing,
    out,
    read_secret_stdin,
)
from cdrgate.cli.jsonout import JsonOption, emit
from cdrgate.clock import system_clock
from cdrgate.errors import UsageError
from cdrgate.services import accounts
from cdrgate.services.auth import set_api_user

app = typer.Typer(
    help="Manage API accounts (the PBX's API username and password).", no_args_is_help=True
)
MIN_PASSWORD = 8


@app.command("set")
@cli_errors
def set_user(
    name: Annotated[str, typer.Argument(help="API username.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a random password and print it once.")
    ] = False,
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Create an API account or change its password."""
    if password_stdin == generate:
        raise UsageError("give exactly one of --password-stdin or --generate")
    if not name.strip():
        raise UsageError("the username must not be empty")
    password = passwords.new_password() if generate else read_secret_stdin()
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password must have at least {MIN_PASSWORD} characters")
    db = open_existing(database, write=True)
    set_api_user(db, name, password, int(system_clock() * 1000))
    if generate:
        out.print(password, highlight=False)
        if sys.stdout.isatty():
            err.print("shown once: it is stored only as a salted scrypt hash", style="dim")
    else:
        err.print(f"API user {name!r} saved")


@app.command("list")
@cli_errors
def list_users(json_output: JsonOption = False, database: DatabaseOption = DEFAULT_DB) -> None:
    """List API accounts."""
    for name in accounts.names(open_existing(database, write=False)):
        if json_output:
            emit({"name": name})
        else:
            out.print(name, highlight=False)


@app.command("delete")
@cli_errors
def delete_user(
    name: Annotated[str, typer.Argument(help="API username.")],
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Delete an API account."""
    if not accounts.delete(open_existing(database, write=True), name):
        raise UsageError(f"no API user {name!r}")
    err.print(f"API user {name!r} deleted")


@app.command("unlock")
@cli_errors
def unlock(
    ip: Annotated[str | None, typer.Argument(help="Client IP to unlock; all when omitted.")] = None,
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Lift a login lockout (as the device's "blocked API IP" list does)."""
    count = accounts.unlock(open_existing(database, write=True), ip)
    err.print(f"cleared {count} lockout record(s)")
