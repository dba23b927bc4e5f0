"""cdrgate recordings scan and cdrgate download-recording."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Annotated

import typer

from cdrgate.cli.client_cmds import (
    ApiVersionChoice,
    ApiVersionOption,
    CaFileOption,
    DeadlineOption,
    InsecureOption,
    PasswordStdinOption,
    PbxOption,
    TimeoutOption,
    UsernameOption,
    _client,
)
from cdrgate.cli.common import DEFAULT_DB, DatabaseOption, cli_errors, err, open_existing, out
from cdrgate.client._limits import DEFAULT_DEADLINE, DEFAULT_TIMEOUT
from cdrgate.errors import UsageError

app = typer.Typer(help="Look after the call recordings folder.", no_args_is_help=True)


@app.command("scan")
@cli_errors
def scan_command(
    folder: Annotated[Path, typer.Argument(help="The recordings folder (sub-folders too).")],
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """List files no CDR names and CDRs whose file is missing."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    from cdrgate.services.recording_files import scan

    db = open_existing(database, write=False)  # a report: never creates or migrates a store
    report = scan(db, folder)
    for name in report.unreferenced:
        out.print(f"unreferenced {name}", highlight=False)
    for name in report.missing:
        out.print(f"missing {name}", highlight=False)
    err.print(
        f"{report.files} files, {report.referenced} names in CDRs: "
        f"{len(report.unreferenced)} files no CDR names, {len(report.missing)} CDR names "
        "without a file",
        highlight=False,
    )


@cli_errors
def download_recording(
    pbx: PbxOption,
    username: UsernameOption,
    name: Annotated[str, typer.Argument(help="Recording file name, as a CDR carries it.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="File or folder to write (default: NAME in the current folder)."
        ),
    ] = None,
    password_stdin: PasswordStdinOption = False,
    api_version: ApiVersionOption = ApiVersionChoice.v1,
    insecure: InsecureOption = False,
    ca_file: CaFileOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    deadline: DeadlineOption = DEFAULT_DEADLINE,
) -> None:
    """Download one call recording from a PBX (or cdrgate)."""
    if output is not None and not output.is_dir() and not output.parent.is_dir():
        # As download's --output: a typo in the folder is said, not made (the SDK would make
        # it), and before the PBX is asked for anything.
        raise UsageError(f"cannot write {output}: {os.strerror(errno.ENOENT)}")
    client = _client(
        pbx, username, password_stdin, api_version, insecure, ca_file, timeout, deadline, 24
    )
    with client:
        try:
            result = client.download_recording(name, output if output is not None else Path("."))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    err.print(f"{result.bytes} bytes -> {result.path}", highlight=False)
