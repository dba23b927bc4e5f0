"""cdrgate download and cdrgate sync: the SDK at the command line."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cdrgate.cli.common import cli_errors, err, out, read_secret_stdin, say
from cdrgate.cli.jsonout import JsonOption, emit
from cdrgate.client._limits import DEFAULT_DEADLINE, DEFAULT_TIMEOUT
from cdrgate.client._windows import DEFAULT_OVERLAP
from cdrgate.errors import UsageError
from cdrgate.timefmt import parse_pbx_time

if TYPE_CHECKING:
    from cdrgate.client import CdrClient, DownloadStats
    from cdrgate.services.recording_mirror import MirrorResult

# `sync` imports the storage and sync services where it runs: `download` and every command's
# help load this module, and need neither (SQLAlchemy: bench/RESULTS.md, eighteenth round).

PASSWORD_ENV = "CDRGATE_PBX_PASSWORD"  # noqa: S105 - a variable name, not a secret


class ApiVersionChoice(StrEnum):
    v1 = "v1.1.0"
    v2 = "v2.0.0"


class OutputFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


PbxOption = Annotated[
    str,
    typer.Option(
        "--pbx",
        help="PBX base URL, e.g. https://192.168.5.150:8088; cdrgate nodes: URL1,URL2 (failover).",
    ),
]
UsernameOption = Annotated[str, typer.Option("--username", help="API username.")]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help=f"Read the API password from stdin (else ${PASSWORD_ENV})."
    ),
]
ApiVersionOption = Annotated[
    ApiVersionChoice | None,
    typer.Option(
        "--api-version",
        help="API version of the PBX (else the one in --pbx's path).",
        show_default=ApiVersionChoice.v1.value,
    ),
]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", help="Do not verify the PBX's TLS certificate.")
]
CaFileOption = Annotated[
    Path | None,
    typer.Option("--ca-file", help="Trust this CA/certificate file (the PBX's self-signed one)."),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds the PBX may stay silent.")
]
DeadlineOption = Annotated[
    float,
    typer.Option(
        "--deadline", min=1, help="Seconds one answer may take in all, however steadily it comes."
    ),
]
WindowOption = Annotated[
    int, typer.Option("--window-hours", min=1, help="Hours per download request.")
]


def _password(from_stdin: bool) -> str:
    password = read_secret_stdin() if from_stdin else os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise UsageError(f"give the API password on stdin (--password-stdin) or in ${PASSWORD_ENV}")
    return password


def _time(option: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parse_pbx_time(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    return text.strip()


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _client(
    pbx: str,
    username: str,
    password_stdin: bool,
    api_version: ApiVersionChoice | None,
    insecure: bool,
    ca_file: Path | None,
    timeout: float,
    deadline: float,
    window_hours: int,
) -> CdrClient:
    if insecure and ca_file is not None:
        raise UsageError("give --insecure or --ca-file, not both")
    if ca_file is not None and not ca_file.is_file():
        # A path that names no file is a bad argument (exit 2), as --output's folder is; a
        # file that is no usable PEM is still the SDK's ClientError (exit 1).
        raise UsageError(f"--ca-file {ca_file}: no such file")
    # Here, not at the top: every other command would pay for importing httpx.
    from cdrgate.client import CdrClient, split_api_url, split_urls

    try:
        # A pasted API URL (http://pbx:8088/api/v2.0.0/) also says which version to speak.
        url_version = split_api_url(split_urls(pbx)[0])[1]
        return CdrClient(
            pbx,
            username,
            _password(password_stdin),
            api_version=api_version.value if api_version else url_version or "v1.1.0",
            verify=False if insecure else (ca_file if ca_file is not None else True),
            timeout=timeout,
            deadline=deadline,
            window=timedelta(hours=window_hours),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int, int, int], None]]:
    """Windows, rows and bytes on a terminal; nothing when stderr is piped."""
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("windows {task.completed}/{task.total}"),
        TextColumn("{task.fields[rows]} rows"),
        TextColumn("{task.fields[size]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=None, rows=0, size="")

        def update(done: int, total: int, rows: int, size: int) -> None:
            label = f"{size / 1e6:.1f} MB" if size else ""
            progress.update(task, completed=done, total=total, rows=rows, size=label)

        yield update


@contextmanager
def _output(target: str) -> Iterator[BinaryIO]:
    """stdout for "-", else the file, written as FILE.part and renamed when complete."""
    if target == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    if path.is_dir():  # the rename at the end would put "<target>.part" inside it
        raise UsageError(f"--output {target} is a folder: give a file name")
    if path.exists() and not path.is_file():
        # /dev/null, a FIFO, a terminal: written in place. The rename would replace the
        # device itself with a regular file (as root, /dev/null for the whole machine).
        try:
            device = path.open("wb")
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
        with device:
            yield device
        return
    partial = path.with_name(path.name + ".part")
    try:
        stream = partial.open("wb")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with stream:
            yield stream
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    shutil.move(partial, path)


@cli_errors
def download(
    pbx: PbxOption,
    username: UsernameOption,
    start: Annotated[str, typer.Option("--start", help="First call start, yyyy-mm-dd hh:mm:ss.")],
    end: Annotated[str, typer.Option("--end", help="Last call start, yyyy-mm-dd hh:mm:ss.")],
    output: Annotated[str, typer.Option("--output", "-o", help="File to write; '-' = stdout.")],
    password_stdin: PasswordStdinOption = False,
    extid: Annotated[
        str, typer.Option("--extid", help="'all', an extension, or a comma list.")
    ] = "all",
    format: Annotated[
        OutputFormat, typer.Option("--format", help="csv (as the PBX sends) or jsonl (typed).")
    ] = OutputFormat.csv,
    api_version: ApiVersionOption = None,
    insecure: InsecureOption = False,
    ca_file: CaFileOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    deadline: DeadlineOption = DEFAULT_DEADLINE,
    window_hours: WindowOption = 24,
) -> None:
    """Download CDRs from a PBX (or cdrgate) to a CSV or JSON-lines file."""
    start_text, end_text = _time("--start", start), _time("--end", end)
    assert start_text is not None and end_text is not None
    if parse_pbx_time(start_text) > parse_pbx_time(end_text):
        raise UsageError("--start is after --end")
    client = _client(
        pbx, username, password_stdin, api_version, insecure, ca_file, timeout, deadline,
        window_hours,
    )  # fmt: skip
    with client, _progress("downloading") as update, _output(output) as stream:

        def report(stats: DownloadStats) -> None:
            update(stats.windows_done, stats.windows_total, stats.rows, stats.bytes)

        if format is OutputFormat.csv:
            result = client.download(extid, start_text, end_text, stream, progress=report)
            rows, size = result.rows, result.bytes
        else:
            rows = size = 0
            for cdr in client.iter_cdrs(extid, start_text, end_text):
                line = (json.dumps(cdr.to_json(), ensure_ascii=False) + "\n").encode()
                stream.write(line)
                rows, size = rows + 1, size + len(line)
    where = "stdout" if output == "-" else output
    err.print(f"{_plural(rows, 'CDR')}, {_plural(size, 'byte')} -> {where}", highlight=False)


@cli_errors
def sync(
    pbx: PbxOption,
    username: UsernameOption,
    into: Annotated[
        str, typer.Option("--into", help="cdrgate database URL to copy into (created if new).")
    ],
    password_stdin: PasswordStdinOption = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start here (required the first time); else resume."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Stop here.", show_default="a day past now"),
    ] = None,
    overlap_minutes: Annotated[
        int, typer.Option("--overlap-minutes", min=0, help="Re-read this much before the mark.")
    ] = int(DEFAULT_OVERLAP.total_seconds() // 60),
    api_version: ApiVersionOption = None,
    insecure: InsecureOption = False,
    ca_file: CaFileOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    deadline: DeadlineOption = DEFAULT_DEADLINE,
    window_hours: WindowOption = 24,
    recordings: Annotated[
        Path | None,
        typer.Option(
            "--recordings", metavar="DIR", help="Also fetch the CDRs' recordings into DIR (flat)."
        ),
    ] = None,
    feed: Annotated[
        bool,
        typer.Option(
            "--feed/--no-feed",
            help="From a cdrgate, follow its change feed after the first sync (catches CDRs "
            "stored late); --no-feed copies by time windows only.",
        ),
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Copy a PBX's CDRs into a cdrgate database, incrementally (safe to rerun)."""
    from cdrgate.services import stores
    from cdrgate.services.recording_mirror import RecordingMirror, after_each_window
    from cdrgate.services.sync import pbx_key, sync_pbx

    since_text, until_text = _time("--since", since), _time("--until", until)
    client = _client(
        pbx, username, password_stdin, api_version, insecure, ca_file, timeout, deadline,
        window_hours,
    )  # fmt: skip
    db = stores.open_or_create(into).db  # --into says it is created if new
    mirror = (
        RecordingMirror(client, db, recordings, pbx_key(client.base_url)) if recordings else None
    )
    try:
        with client, _progress("syncing") as update:

            def progress(done: int, total: int, rows: int) -> None:
                update(done, total, rows, 0)

            if mirror is not None:
                mirror.prepare()
            result = sync_pbx(
                client,
                db,
                since=since_text,
                until=until_text,
                overlap=timedelta(minutes=overlap_minutes),
                progress=after_each_window(mirror, progress) if mirror else progress,
                use_feed=feed,
            )
    finally:
        db.dispose()
    if json_output:
        emit(dataclasses.asdict(result))
        return
    how = (
        f"change feed to seq {result.feed_seq}"
        if result.mode == "feed"
        else f"{result.start} .. {result.end}, {_plural(result.windows, 'window')}"
    )
    out.print(
        f"{result.pbx_url} (serial {result.sn or 'unknown'}): {how}, "
        f"{_plural(result.rows, 'CDR')} read, {result.added} new",
        highlight=False,
    )
    if mirror is not None:
        _report_mirror(mirror.result, recordings)


def _report_mirror(result: MirrorResult, folder: Path | None) -> None:
    for name in result.missing:
        say("missing:", f"{name} (the PBX has no such recording: 20014)", "yellow")
    for name in result.refused:
        say("skipped:", f"{name!r} is not a plain file name", "yellow")
    out.print(
        f"recordings -> {folder}: {result.fetched} fetched ({result.bytes} bytes), "
        f"{result.skipped} already there, {len(result.missing)} missing on the PBX",
        highlight=False,
    )
