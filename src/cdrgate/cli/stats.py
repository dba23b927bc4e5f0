"""cdrgate stats: what the store holds, as text or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdrgate.cli.common import DEFAULT_DB, DatabaseOption, cli_errors, open_existing, out
from cdrgate.cli.jsonout import JsonOption, emit

if TYPE_CHECKING:
    from cdrgate.services.stats import StoreStats


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name or '(empty)'} {count}" for name, count in counts.items()) or "-"


def _text(stats: StoreStats) -> list[str]:
    top = ", ".join(f"{ext} ({calls})" for ext, calls in stats.top_extensions)
    return [
        f"rows        {stats.rows}",
        f"first       {stats.first or '-'}",
        f"last        {stats.last or '-'}",
        f"types       {_counts(stats.types)}",
        f"statuses    {_counts(stats.statuses)}",
        f"extensions  {stats.extensions}" + (f"; most calls: {top}" if top else ""),
    ]


@cli_errors
def stats_command(json_output: JsonOption = False, database: DatabaseOption = DEFAULT_DB) -> None:
    """Show what the store holds: rows, time span, types, statuses, extensions."""
    from cdrgate.services.stats import store_stats

    stats = store_stats(open_existing(database, write=False))
    if json_output:
        emit(stats.to_json())
        return
    for line in _text(stats):
        out.print(line, highlight=False)
