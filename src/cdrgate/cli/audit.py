"""cdrgate audit: who downloaded which CDRs, when, from where, and how it ended."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from cdrgate.cli.common import DEFAULT_DB, DatabaseOption, cli_errors, open_existing
from cdrgate.errors import UsageError

COLUMNS = ("when", "account", "client_ip", "api", "filter", "rows", "bytes", "outcome")


class Outcome(StrEnum):
    ok = "ok"
    failed = "failed"
    aborted = "aborted"
    cut = "cut"


def _instant_ms(text: str | None, option: str) -> int | None:
    """``yyyy-mm-dd``, ``yyyy-mm-dd hh:mm:ss`` or ISO 8601; without a zone it is UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option}: not a date or time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(row: Any) -> dict[str, Any]:
    return {
        "when": _when(row.at_ms),
        "account": row.account,
        "client_ip": row.client_ip,
        "api": row.api_version,
        "selector": row.selector,
        "starttime": row.starttime,
        "endtime": row.endtime,
        "rows": row.rows,
        "bytes": row.bytes,
        "outcome": row.outcome,
        "errno": row.errno,
    }


def _line(record: dict[str, Any]) -> str:
    flt = f"{record['selector']} {record['starttime']}..{record['endtime']}"
    outcome = record["outcome"] + (f" {record['errno']}" if record["errno"] else "")
    cells = (
        record["when"], record["account"] or "-", record["client_ip"], record["api"], flt,
        str(record["rows"]), str(record["bytes"]), outcome,
    )  # fmt: skip
    # Tabs: one attempt per line, easy to cut/grep; control characters cannot forge lines.
    return "\t".join(
        cell.replace("\t", " ").replace("\n", " ").replace("\r", " ") for cell in cells
    )


@cli_errors
def audit_log(
    since: Annotated[str | None, typer.Option(help="Only attempts at/after this UTC time.")] = None,
    until: Annotated[
        str | None, typer.Option(help="Only attempts at/before this UTC time.")
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this API account.")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="Only this client IP.")] = None,
    outcome: Annotated[Outcome | None, typer.Option(help="Only this outcome.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    database: DatabaseOption = DEFAULT_DB,
) -> None:
    """Show download attempts (when, account, IP, filter, rows, bytes, outcome)."""
    from cdrgate.services.audit_log import AuditQuery, attempts

    query = AuditQuery(
        since_ms=_instant_ms(since, "--since"),
        until_ms=_instant_ms(until, "--until"),
        account=account,
        client_ip=ip,
        outcome=outcome.value if outcome else None,
        limit=limit,
    )
    rows = attempts(open_existing(database, write=False), query)
    records = [_record(row) for row in rows]
    if as_json:
        for record in records:
            typer.echo(json.dumps(record))
        return
    if records:
        typer.echo("\t".join(COLUMNS))
    for record in records:
        typer.echo(_line(record))
