"""cdrgate import and cdrgate seed: getting CDRs into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdrgate.cli import ingest
from cdrgate.cli.common import (
    DEFAULT_DB,
    DatabaseOption,
    cli_errors,
    open_database,
    out,
    row_progress,
)
from cdrgate.cli.jsonout import JsonOption
from cdrgate.errors import UsageError
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import DEFAULT_EXTENSIONS, AccountcodeAs, SourceProfile
from cdrgate.timefmt import parse_pbx_time


@cli_errors
def import_files(
    files: Annotated[list[Path], typer.Argument(help="CSV files to import; '-' reads stdin.")],
    format: Annotated[Format, typer.Option("--format", help="Layout of the files.")] = (
        Format.yeastar
    ),
    database: DatabaseOption = DEFAULT_DB,
    follow: ingest.FollowOption = False,
    sn: ingest.SnOption = None,
    extensions: ingest.ExtensionsOption = DEFAULT_EXTENSIONS,
    trunks: ingest.TrunksOption = None,
    trunk_name: ingest.TrunkNameOption = "",
    accountcode_as: ingest.AccountcodeOption = AccountcodeAs.none,
    strict: ingest.StrictOption = False,
    json_output: JsonOption = False,
) -> None:
    """Import Yeastar, Asterisk or FreeSWITCH CDR files; rows already stored are skipped."""
    try:
        profile = SourceProfile.build(
            sn or format.value, extensions, trunks, trunk_name, accountcode_as
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ingest.import_files(
        files, format, database, follow=follow, profile=profile, strict=strict,
        json_output=json_output,
    )  # fmt: skip


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
    # Imported here: `cdrgate import`, which loads this module too, has no use for the seeder
    # before its first row (bench/RESULTS.md, the writer's head, thirteenth round).
    from cdrgate.ingest.seeding import seed_database
    from cdrgate.seed import SeedPlan

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
