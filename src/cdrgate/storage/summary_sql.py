"""cdr_summary's statements and tallies as plain SQL text and Python, importing nothing: a
parallel import's child (``ingest/part.py``) and its writer in apsw (``ingest/apsw_writer.py``)
run them outside SQLAlchemy, whose import would delay their first row. ``storage/summary.py``
runs the same statements through SQLAlchemy and re-exports what is here.
"""

from __future__ import annotations

COUNTS = (
    "SELECT ts / 3600 * 3600 AS hour, status, type, {sign} count(*) AS calls, "
    "{sign} sum(talkduraction) AS talk, {sign} sum(callduraction) AS duration "
    "FROM {source} WHERE {where} GROUP BY ts / 3600 * 3600, status, type"
)
# Counts of hours cdr_summary holds no row of; fails (a unique violation) on one it holds.
INSERT = "INSERT INTO cdr_summary (hour, status, type, calls, talk, duration) {select}"
ADD = INSERT + (
    " ON CONFLICT (hour, status, type) DO UPDATE SET "
    "calls = cdr_summary.calls + excluded.calls, talk = cdr_summary.talk + excluded.talk, "
    "duration = cdr_summary.duration + excluded.duration"
)
UPSERT = ADD.format(select=COUNTS)
ADD_TALLY = ADD.format(select="VALUES (?, ?, ?, ?, ?, ?)")

# Rows counted as they were read: per (hour of timestart as "yyyy-mm-dd hh", status, type),
# [calls, talk seconds, call seconds].
Tally = dict[tuple[str, str, str], list[int]]


def count_into_sql(source: str, target: str) -> str:
    """``count_into``'s statement, for a connection of another process (a parallel import's
    child runs it on its part: ingest/part.py)."""
    counts = COUNTS.format(sign="", source=source, where="true")
    return f"CREATE TABLE {target} AS {counts}"


def tally_into_sql(table: str) -> str:
    """An INSERT of a tally's rows, ``(hour as "yyyy-mm-dd hh", status, type, calls, talk,
    duration)``, into ``table`` (made by ``count_into``), for a connection of another process
    (a parallel import's child: ingest/part.py). The hour is turned into seconds as the fast
    path turns a time into ``ts`` (``unixepoch``); a tally's hours are from 1970 on
    (``tally_is_exact``), so they are the hours ``add_counted`` groups by."""
    return (
        f"INSERT INTO {table} (hour, status, type, calls, talk, duration) "
        "VALUES (unixepoch(?1 || ':00:00'), ?2, ?3, ?4, ?5, ?6)"
    )


def tally_rows(tally: Tally) -> list[tuple[str, str, str, int, int, int]]:
    """``tally`` as the rows ``tally_into_sql`` inserts."""
    return [
        (hour, status, type_, calls, talk, duration)
        for (hour, status, type_), (calls, talk, duration) in tally.items()
    ]


def add_counted_sql(table: str) -> str:
    """``add_counted``'s statement, for a connection outside SQLAlchemy (a parallel import's
    writer in apsw: ingest/apsw_writer.py)."""
    # "WHERE true": SQLite would read ON CONFLICT as a join's ON without it.
    select = f"SELECT hour, status, type, calls, talk, duration FROM {table} WHERE true"
    return ADD.format(select=select)


def add_every_row_sql() -> str:
    """The statement counting every row of ``cdr`` into cdr_summary: for a load into an empty
    store, whose rows are then all its own (ingest/apsw_writer.py)."""
    return UPSERT.format(sign="", source="cdr", where="true")


def tally_is_exact(tally: Tally) -> bool:
    """Whether ``tally``'s hours are the ones SQL groups by. ``ts / 3600 * 3600`` truncates
    toward zero, so before 1970 (a negative ts) one clock hour's rows fall in two of its
    hours; those rows are left to ``add_stored``. Years are four digits (the time is checked
    before a tally is made), so text order is time order."""
    return all(hour >= "1970" for hour, _, _ in tally)


def merge_tally(into: Tally, tally: Tally) -> None:
    for key, (calls, talk, duration) in tally.items():
        counts = into.get(key)
        if counts is None:
            into[key] = [calls, talk, duration]
        else:
            counts[0] += calls
            counts[1] += talk
            counts[2] += duration
