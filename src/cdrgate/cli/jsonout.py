"""``--json``: one JSON object per line on stdout, as ``cdrgate audit --json`` writes, so a
script reads any command's output with ``json.loads`` per line (or ``jq``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cdrgate.ingest.result import ImportResult

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object per line instead of text.")
]


def emit(record: dict[str, Any]) -> None:
    typer.echo(json.dumps(record, ensure_ascii=False))


def import_record(result: ImportResult) -> dict[str, Any]:
    """The summary of one imported file, the same keys for every format."""
    return {
        "source": result.source, "rows": result.rows, "inserted": result.inserted,
        "duplicates": result.duplicates, "rejected": result.rejected,
        "kinds": [
            {"type": kind, "status": status, "rows": rows}
            for (kind, status), rows in sorted(result.kinds.items())
        ],
    }  # fmt: skip
