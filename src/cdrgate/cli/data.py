"""cdrgate import and cdrgate seed: getting CDRs into the store."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cdrgate.cli import ingest
from cdrgate.cli.common import (
    DEFAULT_DB,
    EXIT_FAILED,
    DatabaseOption,
    cli_errors,
    open_database,
    out,
    row_progress,
    say,
)
from cdrgate.errors import ImportFailed
from cdrgate.ingest.lines import Format
from cdrgate.ingest.profile import DEFAULT_EXTENSIONS
from cdrgate.seed import SeedPlan
from cdrgate.services.importing import import_yeastar_csv, seed_database
from cdrgate.timefmt import parse_pbx_time


class ImportFormat(StrEnum):
    yeastar = "yeastar"
    asterisk = "asterisk"  # cdr_csv Master.csv
    freeswitch = "freeswitch"  # mod_cdr_csv, default template


@cli_errors
def import_files(
    files: Annotated[list[Path], typer.Argument(help="CSV files to import; '-' reads stdin.")],
    format: Annotated[
        ImportFormat, typer.Option("--format", help="Layout of the files.")
    ] = ImportFormat.yeastar,
    database: DatabaseOption = DEFAULT_DB,
    follow: ingest.FollowOption = False,
    sn: ingest.SnOption = None,
    extensions: ingest.ExtensionsOption = DEFAULT_EXTENSIONS,
    trunks: ingest.TrunksOption = None,
    trunk_name: ingest.TrunkNameOption = "",
    strict: ingest.StrictOption = False,
) -> None:
    """Import Yeastar, Asterisk or FreeSWITCH CDR files; rows already stored are skipped."""
    if follow or format is not ImportFormat.yeastar:
        ingest.import_line_files(
            files, Format(format.value), database, follow=follow, sn=sn,
            extensions=extensions, trunks=trunks, trunk_name=trunk_name, strict=strict,
        )  # fmt: skip
        return
    db = open_database(database)
    failed = 0
    for path in files:
        try:
            with row_progress(f"importing {path}") as progress:
                if str(path) == "-":
                    result = import_yeastar_csv(db, "<stdin>", sys.stdin.buffer, progress)
                else:
                    if not path.is_file():
                        raise ImportFailed(str(path), 0, "no such file")
                    result = import_yeastar_csv(db, path, progress=progress)
        except ImportFailed as exc:
            failed += 1
            say("error:", f"{exc} (nothing imported from this file)")
            continue
        out.print(
            f"{result.source}: {result.rows} rows, {result.inserted} new, "
            f"{result.duplicates} already present",
            highlight=False,
        )
    if failed:
        raise typer.Exit(EXIT_FAILED)


@cli_errors
def seed(
    count: Annotated[int, typer.Option("--count", min=0, help="How many CDRs to generate.")],
    seed_value: Annotated[
        int, typer.Option("--seed", help="Random seed (same seed, same rows).")
    ] = 1,
    start: Annotated[str, typer.Option(help="First day, yyyy-mm-dd.")] = "2026-01-01",
    days: Annotated[int, typer.Option(min=1, help="How many days the calls spread over.")] = 365,
    extensions: Annotated[int, typer.Option(min=1, help="Number of extensions (from 1000).")] = 50,
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Generate realistic sample CDRs, deterministically."""
    start_text = f"{start} 00:00:00" if len(start) == 10 else start
    try:
        parse_pbx_time(start_text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--start") from None
    plan = SeedPlan(
        count=count, seed=seed_value, start=start_text, days=days, extensions=extensions
    )
    db = open_database(database)
    with row_progress("seeding", total=count) as progress:
        inserted = seed_database(db, plan, progress)
    out.print(
        f"seeded {inserted} new CDRs ({count - inserted} already present), serial {plan.serial}"
    )
