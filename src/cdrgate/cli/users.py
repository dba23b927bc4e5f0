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

# Each command imports the account services where it runs (they bring SQLAlchemy): every
# command's help loads this module (bench/RESULTS.md, eighteenth round).

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
    extensions: Annotated[
        str | None,
        typer.Option(
            "--extensions",
            help="Extensions the account may read: a comma list of extensions and ranges of "
            "equal-length numbers (1000-1099,2001); 'all' removes the limit. Without a "
            "password option, changes only the scope of an existing account.",
        ),
    ] = None,
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Create an API account, or change its password or the extensions it may read."""
    from cdrgate import scope
    from cdrgate.services.auth import set_api_user, set_api_user_scope

    if password_stdin and generate:
        raise UsageError("give one of --password-stdin or --generate, not both")
    if not (password_stdin or generate or extensions is not None):
        raise UsageError("give --password-stdin, --generate or --extensions")
    if not name.strip():
        raise UsageError("the username must not be empty")
    try:
        limit = None if extensions is None else scope.parse(extensions)
    except scope.ScopeError as exc:
        raise UsageError(f"--extensions: {exc}") from None
    now_ms = int(system_clock() * 1000)
    if not (password_stdin or generate):
        if not set_api_user_scope(open_existing(database, write=True), name, limit, now_ms):
            raise UsageError(f"no API user {name!r} (a new one needs a password option)")
        err.print(f"API user {name!r} reads {scope.render(limit)} extensions", highlight=False)
        return
    password = passwords.new_password() if generate else read_secret_stdin()
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password must have at least {MIN_PASSWORD} characters")
    db = open_existing(database, write=True)
    if extensions is None:
        set_api_user(db, name, password, now_ms)
    else:
        set_api_user(db, name, password, now_ms, limit)
    if generate:
        out.print(password, highlight=False)
        if sys.stdout.isatty():
            err.print("shown once: it is stored only as a salted scrypt hash", style="dim")
    else:
        err.print(f"API user {name!r} saved")


@app.command("list")
@cli_errors
def list_users(json_output: JsonOption = False, database: DatabaseOption = DEFAULT_DB) -> None:
    """List API accounts and the extensions each may read."""
    from cdrgate import scope
    from cdrgate.services import accounts

    for name, extensions in accounts.scopes(open_existing(database, write=False)):
        if json_output:
            emit({"name": name, "extensions": extensions or scope.ALL})
        else:
            out.print(f"{name}\t{extensions or scope.ALL}", highlight=False)


@app.command("delete")
@cli_errors
def delete_user(
    name: Annotated[str, typer.Argument(help="API username.")],
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Delete an API account."""
    from cdrgate.services import accounts

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
    from cdrgate.services import accounts

    count = accounts.unlock(open_existing(database, write=True), ip)
    err.print(f"cleared {count} lockout record(s)")
