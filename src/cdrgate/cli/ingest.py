"""cdrgate import (every format, and --follow), cdrgate ingest-key, cdrgate prune."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from cdrgate.cli.common import (
    DEFAULT_DB,
    DatabaseOption,
    cli_errors,
    created_line,
    err,
    note_created,
    open_database,
    open_existing,
    out,
    row_progress,
    say,
)
from cdrgate.cli.exits import EXIT_FAILED
from cdrgate.cli.jsonout import JsonOption, emit, import_record
from cdrgate.clock import system_clock
from cdrgate.errors import ImportFailed, UsageError
from cdrgate.ingest.formats import FORMATS, Format, RowMapper, row_mapper
from cdrgate.ingest.lines import Rejected, check_file
from cdrgate.ingest.profile import AccountcodeAs, SourceProfile
from cdrgate.ingest.result import ImportResult
from cdrgate.settings import Settings
from cdrgate.timefmt import format_pbx_time

if TYPE_CHECKING:
    from cdrgate.ingest.parallel import Helper
    from cdrgate.services.retention import PruneReport
    from cdrgate.storage.db import Database

# Each command here imports the modules of its work where it runs (the storage and import
# paths, the follower, the push keys, the retention and recordings services): `cdrgate
# import` of a file, which loads this module, would import them all before its first row
# otherwise, and a large first file into an empty SQLite store needs no SQLAlchemy at all
# (ingest/first_load.py; bench/RESULTS.md, thirteenth and eighteenth rounds).

# Options `cdrgate import` adds for Asterisk and FreeSWITCH files (see cli/data.py).
FollowOption = Annotated[
    bool, typer.Option("--follow", help="Keep reading FILE as it grows, like tail -F.")
]
SnOption = Annotated[
    str | None,
    typer.Option("--sn", help="Serial (sn) for the CDRs; default: the format name."),
]
ExtensionsOption = Annotated[
    str, typer.Option("--extensions", help="Regex matching our extension numbers.")
]
TrunksOption = Annotated[
    str | None,
    typer.Option(
        "--trunks",
        help="Asterisk channel peers that are trunks, comma-separated (e.g. 'telco,gw1').",
    ),
]
TrunkNameOption = Annotated[
    str, typer.Option("--trunk-name", help="Trunk name when the file names none (FreeSWITCH).")
]
AccountcodeOption = Annotated[
    AccountcodeAs,
    typer.Option("--accountcode-as", help="Asterisk: the Yeastar field accountcode goes to."),
]
StrictOption = Annotated[
    bool, typer.Option("--strict", help="A malformed line aborts the file (nothing stored).")
]


def import_files(
    files: list[Path],
    fmt: Format,
    database: str,
    *,
    follow: bool,
    profile: SourceProfile,
    strict: bool,
    json_output: bool = False,
) -> None:
    """The work of `cdrgate import`: each file in turn, or --follow one."""
    if follow:
        if len(files) != 1 or str(files[0]) == "-":
            raise UsageError("--follow takes exactly one FILE (not stdin)")
        _follow(files[0], row_mapper(fmt, profile), database, FORMATS[fmt].multiline)
        return
    store = _Store(database, files if fmt is Format.yeastar else [])
    try:
        failed, rejected = _import_each(store, files, fmt, profile, strict, json_output)
    finally:
        store.close()
    if failed or rejected:
        raise typer.Exit(EXIT_FAILED)


class _Store:
    """The store of an import, opened (through SQLAlchemy) when a file first needs it: at
    once, as it always was, unless the first file may be loaded without it
    (``first_load.store_file``: a large Yeastar file, a SQLite store that exists or is made
    there from the snapshot of the newest schema)."""

    def __init__(self, url: str, yeastar_files: list[Path]) -> None:
        from cdrgate.ingest import first_load

        self.url = url
        self._yeastar_files = yeastar_files
        self._db: Database | None = None
        self.helper: Helper | None = None
        self.first_file = first_load.store_file(url, yeastar_files)
        if self.first_file is None:
            self.db()
        elif first_load.make_if_new(self.first_file):
            note_created(created_line(str(self.first_file)))

    def db(self) -> Database:
        if self._db is None:
            from cdrgate.ingest import parallel

            self._db = open_database(self.url)
            if self._yeastar_files:
                self.helper = parallel.early_helper(self._db, self._yeastar_files)
        return self._db

    def close(self) -> None:
        if self.helper is not None:
            self.helper.close()


def _import_each(
    store: _Store,
    files: list[Path],
    fmt: Format,
    profile: SourceProfile,
    strict: bool,
    json_output: bool,
) -> tuple[int, int]:
    """Import ``files`` in turn; returns how many failed and how many rows were rejected."""
    failed = rejected = 0
    for number, path in enumerate(files):
        try:
            with row_progress(f"importing {path}") as progress:
                if str(path) == "-":
                    result = _import_file(
                        store, "<stdin>", sys.stdin.buffer, fmt, profile, strict, progress
                    )
                else:
                    if not check_file(path):
                        raise ImportFailed(str(path), None, "no such file")
                    with path.open("rb") as stream:
                        first = store.first_file if number == 0 else None
                        loaded = _first_load(first, path, stream, profile, progress)
                        result = loaded if isinstance(loaded, ImportResult) else _import_file(
                            store, str(path), stream, fmt, profile, strict, progress,
                            python_path=loaded,
                        )  # fmt: skip
        except ImportFailed as exc:
            failed += 1
            say("error:", f"{exc} (nothing imported from this file)")
            continue
        rejected += result.rejected
        if json_output:
            emit(import_record(result))
            continue
        _summary(result)
    return failed, rejected


def _first_load(
    store_file: str | None,
    path: Path,
    stream: BinaryIO,
    profile: SourceProfile,
    progress: Callable[[int], None],
) -> ImportResult | bool:
    """The first file loaded without SQLAlchemy (``first_load``) when ``store_file`` is the
    store's; else whether ``import_file`` is to read it the Python way at once (the load there
    doubted: nothing stored)."""
    if store_file is None:
        return False
    from cdrgate.ingest import first_load

    loaded = first_load.load(store_file, str(path), stream, profile, progress)
    if isinstance(loaded, ImportResult):
        return loaded
    return loaded is first_load.Fallback.PYTHON


def _import_file(
    store: _Store,
    source: str,
    stream: BinaryIO,
    fmt: Format,
    profile: SourceProfile,
    strict: bool,
    progress: Callable[[int], None],
    *,
    python_path: bool = False,
) -> ImportResult:
    """``ingest.files.import_file`` into the store, opened now if no file needed it yet."""
    from cdrgate.ingest.files import import_file

    return import_file(
        store.db(), source, stream, fmt, profile, _report, strict=strict, progress=progress,
        helper=store.helper, python_path=python_path,
    )  # fmt: skip


def _summary(result: ImportResult) -> None:
    skipped = f", {result.rejected} malformed lines skipped" if result.rejected else ""
    out.print(
        f"{result.source}: {result.rows} rows, {result.inserted} new, "
        f"{result.duplicates} already present{skipped}",
        highlight=False,
    )
    if result.kinds:
        kinds = sorted(result.kinds.items(), key=lambda item: (-item[1], item[0]))
        counts = ", ".join(f"{kind} {status} {count}" for (kind, status), count in kinds)
        out.print(f"  by type and status: {counts}", highlight=False)


def _report(rejected: Rejected) -> None:
    say("skipped:", str(rejected), "yellow")


def _follow(path: Path, mapper: RowMapper, database: str, multiline: bool) -> None:
    from cdrgate.ingest.follow import Follower

    db = open_database(database)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def stored(rows: int, inserted: int) -> None:
        out.print(f"{path}: {rows} rows, {inserted} new", highlight=False)

    follower = Follower(db, path, mapper, _report, on_store=stored, multiline=multiline)
    err.print(f"following {path} (Ctrl-C to stop)", highlight=False)
    follower.run(stop)
    err.print(
        f"stopped: {follower.rows} rows, {follower.inserted} new, "
        f"{follower.rejected} malformed lines skipped",
        highlight=False,
    )


# -- cdrgate ingest-key ------------------------------------------------------------------

keys_app = typer.Typer(
    help="Manage the keys that authorise NewCdr pushes (POST /api/v2.0.0/cdr/push).",
    no_args_is_help=True,
)


@keys_app.command("add")
@cli_errors
def add_key(
    name: Annotated[str, typer.Argument(help="Name of the pushing source.")],
    sn: Annotated[
        str, typer.Option("--sn", help="Serial for pushed CDRs that carry none; default: NAME.")
    ] = "",
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Create an ingest key and print it once."""
    from cdrgate.ingest import push

    db = open_existing(database, write=True)
    key = push.create_key(db, name, sn or name, int(system_clock() * 1000))
    out.print(key, highlight=False)
    if sys.stdout.isatty():
        err.print("shown once: it is stored only as a hash", style="dim")


@keys_app.command("list")
@cli_errors
def list_keys(json_output: JsonOption = False, database: DatabaseOption = DEFAULT_DB) -> None:
    """List ingest keys (names, serials, last use; never the keys)."""
    from cdrgate.ingest import push

    for key in push.list_keys(open_existing(database, write=False)):
        if json_output:
            emit(_key_record(key.name, key.sn, key.last_used_ms))
            continue
        used = _local(key.last_used_ms) if key.last_used_ms else "never used"
        out.print(f"{key.name}  sn={key.sn}  {used}", highlight=False)


@keys_app.command("delete")
@cli_errors
def delete_key(
    name: Annotated[str, typer.Argument(help="Name of the pushing source.")],
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Delete an ingest key; pushes with it are refused at once."""
    from cdrgate.ingest import push

    push.delete_key(open_existing(database, write=True), name)
    err.print(f"ingest key {name!r} deleted")


def _key_record(name: str, sn: str, used_ms: int | None) -> dict[str, Any]:
    from cdrgate.services.retention import wall_clock_now

    last = format_pbx_time(wall_clock_now(lambda: used_ms / 1000)) if used_ms else None
    return {"name": name, "sn": sn, "last_used": last}


def _local(epoch_ms: int) -> str:
    from cdrgate.services.retention import wall_clock_now

    return "last used " + format_pbx_time(wall_clock_now(lambda: epoch_ms / 1000))


# -- cdrgate prune -----------------------------------------------------------------------


@cli_errors
def prune_command(
    max_records: Annotated[
        int | None,
        typer.Option(
            "--max-records",
            min=0,
            help="Keep the newest N CDRs.",
            show_default="the retention setting",
        ),
    ] = None,
    max_age_days: Annotated[
        int | None,
        typer.Option(
            "--max-age-days",
            min=0,
            help="Remove CDRs older than D days.",
            show_default="the retention setting",
        ),
    ] = None,
    recordings_max_age_days: Annotated[
        int | None,
        typer.Option(
            "--recordings-max-age-days",
            min=0,
            help="Remove recording files whose newest CDR is older than D days.",
        ),
    ] = None,
    recordings: Annotated[
        str | None,
        typer.Option(
            "--recordings", metavar="DIR", help="Recordings folder (else $CDRGATE_RECORDINGS)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")
    ] = False,
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Remove old CDRs by count and/or age (0 = no limit), and the recordings they name."""
    from cdrgate.services.recording_files import prune_with_recordings
    from cdrgate.services.retention import RetentionPolicy, wall_clock_now

    settings = Settings.from_env(
        retention_max_records=max_records, retention_max_age_days=max_age_days,
        recordings=recordings, recordings_max_age_days=recordings_max_age_days,
    )  # fmt: skip
    policy = RetentionPolicy.from_settings(settings)
    if not policy.active and not settings.recordings_max_age_days:
        raise UsageError(
            "no limit given: use --max-records, --max-age-days and/or --recordings-max-age-days "
            "(or CDRGATE_RETENTION_MAX_RECORDS / CDRGATE_RETENTION_MAX_AGE_DAYS)"
        )
    if settings.recordings_max_age_days and not settings.recordings:
        raise UsageError("--recordings-max-age-days needs the folder: --recordings DIR")
    db = open_existing(database, write=True)
    report, files = prune_with_recordings(
        db, policy, wall_clock_now(system_clock), root=settings.recordings or None,
        recordings_max_age_days=settings.recordings_max_age_days, dry_run=dry_run,
    )  # fmt: skip
    if report is not None:
        out.print(_describe(report), highlight=False)
    verb = "would remove" if dry_run else "removed"
    for name in files.files:
        out.print(f"{verb} recording {name}", highlight=False)
    if settings.recordings:
        out.print(f"{verb} {len(files.files)} recording files", highlight=False)
    if kept := files.kept_line():
        say("error:", kept)
        raise typer.Exit(EXIT_FAILED)


def _describe(report: PruneReport) -> str:
    verb = "would remove" if report.dry_run else "removed"
    if not report.removed:
        return f"{verb} 0 CDRs"
    return f"{verb} {report.removed} CDRs (timestart {report.oldest} .. {report.newest})"
