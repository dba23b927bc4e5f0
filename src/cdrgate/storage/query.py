"""SQL of the JSON query API: filtered, keyset-paged CDR reads, the change feed, statistics.

Paging is keyset, never OFFSET: a page starts strictly after the last row's (sort key, id),
so every page is an index range scan however deep it is, and rows inserted meanwhile neither
shift nor repeat rows already paged. The keyset predicate is spelt ``k <= v AND (k < v OR
id < i)`` rather than as a row-value comparison, so both engines bound the index scan on ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)

from cdrgate.scope import Scope
from cdrgate.storage.tables import NAMES_A_FILE, cdr, cdr_summary

Order = Literal["timestart", "callduraction", "talkduraction"]
Group = Literal["hour", "day", "weekday", "extension", "status", "type", "trunk"]

SORT_COLUMNS: dict[str, Any] = {
    "timestart": cdr.c.ts,
    "callduraction": cdr.c.callduraction,
    "talkduraction": cdr.c.talkduraction,
}
# An item's columns: the id, then the 14 CSV fields with ts standing in for timestart.
ITEM_COLUMNS = (
    cdr.c.id, cdr.c.callid, cdr.c.ts, cdr.c.callfrom, cdr.c.callto, cdr.c.callduraction,
    cdr.c.talkduraction, cdr.c.srctrunkname, cdr.c.dsttrunkname, cdr.c.status, cdr.c.type,
    cdr.c.pincode, cdr.c.recording, cdr.c.didnumber, cdr.c.sn,
)  # fmt: skip


@dataclass(frozen=True)
class Filters:
    """Validated filters; None (or empty) means "not filtered on this"."""

    from_ts: int | None = None
    until_ts: int | None = None  # exclusive
    numbers: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    trunk: str | None = None
    did: str | None = None
    sn: str | None = None
    has_recording: bool | None = None
    min_talk: int | None = None
    max_talk: int | None = None
    q: str | None = None
    # The reading account's extensions (None: all). Not a filter the client chooses: it is
    # the session's, and every path that takes Filters must honour it (or fall back to one
    # that does).
    scope: Scope | None = None


@dataclass(frozen=True)
class Sort:
    order: Order = "timestart"
    descending: bool = True


@dataclass(frozen=True)
class Position:
    """The last row of a page: its sort key and id."""

    value: int
    id: int


def conditions(f: Filters, numbers: bool = True) -> list[ColumnElement[bool]]:
    """The filters as WHERE terms; ``numbers=False`` leaves out ``number`` (the caller
    handles it)."""
    where: list[ColumnElement[bool]] = []
    if f.scope is not None:
        where.append(in_scope(f.scope))
    if f.from_ts is not None:
        where.append(cdr.c.ts >= f.from_ts)
    if f.until_ts is not None:
        where.append(cdr.c.ts < f.until_ts)
    if f.numbers and numbers:
        where.append(_any_side(f.numbers))
    if f.statuses:
        where.append(cdr.c.status.in_(list(f.statuses)))
    if f.types:
        where.append(cdr.c.type.in_(list(f.types)))
    if f.trunk is not None:
        where.append(or_(cdr.c.srctrunkname == f.trunk, cdr.c.dsttrunkname == f.trunk))
    if f.did is not None:
        where.append(cdr.c.didnumber == f.did)
    if f.sn is not None:
        where.append(cdr.c.sn == f.sn)
    if f.has_recording is not None:
        where.append(NAMES_A_FILE if f.has_recording else cdr.c.recording == "")
    if f.min_talk is not None:
        where.append(cdr.c.talkduraction >= f.min_talk)
    if f.max_talk is not None:
        where.append(cdr.c.talkduraction <= f.max_talk)
    if f.q is not None:
        # icontains: lower() on both sides, so SQLite and PostgreSQL agree on case.
        columns = (cdr.c.callfrom, cdr.c.callto, cdr.c.didnumber, cdr.c.srctrunkname,
                   cdr.c.dsttrunkname)  # fmt: skip
        where.append(or_(*(c.icontains(f.q, autoescape=True) for c in columns)))
    return where


def in_scope(scope: Scope) -> ColumnElement[bool]:
    """A CDR is in an account's scope when its caller or its callee is."""
    return scope.predicate(cdr.c.callfrom, cdr.c.callto)


def _any_side(numbers: tuple[str, ...]) -> ColumnElement[bool]:
    return or_(cdr.c.callfrom.in_(list(numbers)), cdr.c.callto.in_(list(numbers)))


def _after(sort: Sort, at: Position) -> ColumnElement[bool]:
    key = SORT_COLUMNS[sort.order]
    if sort.descending:
        return and_(key <= at.value, or_(key < at.value, cdr.c.id < at.id))
    return and_(key >= at.value, or_(key > at.value, cdr.c.id > at.id))


def _paged(
    columns: Sequence[Any], f: Filters, sort: Sort, after: Position | None, limit: int
) -> Select[Any]:
    key = SORT_COLUMNS[sort.order]
    columns = [*columns, key.label("sort_key"), cdr.c.id.label("row_id")]
    where = conditions(f, numbers=False)
    if after is not None:
        where.append(_after(sort, after))
    if f.numbers and len(f.numbers) <= MERGE_MAX_NUMBERS and sort.order == "timestart":
        return _merged(columns, f.numbers, where, sort, limit)
    if f.numbers:
        where.append(_any_side(f.numbers))
    return select(*columns).where(*where).order_by(*_ordering(sort)).limit(limit)


def _ordering(sort: Sort, source: Any = None) -> tuple[Any, ...]:
    key = SORT_COLUMNS[sort.order] if source is None else source.sort_key
    row_id = cdr.c.id if source is None else source.row_id
    return (key.desc(), row_id.desc()) if sort.descending else (key.asc(), row_id.asc())


# Up to this many numbers, a number query is one ordered index scan per (side, number),
# merged: each scan stops after ``limit`` rows. Beyond, one OR over both indexes and a sort
# of every match (a first page for one busy number over a month: ~8,000 rows sorted for 100).
MERGE_MAX_NUMBERS = 8


def _merged(
    columns: list[Any], numbers: tuple[str, ...], where: list[ColumnElement[bool]], sort: Sort,
    limit: int,
) -> Select[Any]:  # fmt: skip
    # The callee arms leave out calls whose caller is also asked for, so the arms are
    # disjoint and UNION ALL never repeats a call.
    sides = [cdr.c.callfrom == n for n in numbers]
    sides += [and_(cdr.c.callto == n, cdr.c.callfrom.not_in(list(numbers))) for n in numbers]
    arms = []
    for side in sides:
        arm = select(*columns).where(*where, side).order_by(*_ordering(sort)).limit(limit)
        # SQLite refuses ORDER BY/LIMIT in a compound member unless it is a subquery.
        arms.append(select(arm.subquery()))
    merged = union_all(*arms).subquery()
    return select(merged).order_by(*_ordering(sort, merged.c)).limit(limit)


def list_select(f: Filters, sort: Sort, after: Position | None, limit: int) -> Select[Any]:
    """Items (``ITEM_COLUMNS``, then the sort key and the id) of one page."""
    return _paged(ITEM_COLUMNS, f, sort, after, limit)


def _driver_rows(conn: Connection, stmt: Select[Any]) -> list[Sequence[Any]]:
    # The driver's own tuples: these columns need no result processing (integers and text on
    # both engines), so a page is not copied row by row into Rows and then tuples.
    result = conn.execute(stmt)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


def read_items(
    conn: Connection, f: Filters, sort: Sort, after: Position | None, limit: int
) -> list[Sequence[Any]]:
    return _driver_rows(conn, list_select(f, sort, after, limit))


def read_lines(
    conn: Connection, f: Filters, sort: Sort, after: Position | None, limit: int
) -> list[tuple[str, int, int]]:
    """(stored CSV line, sort key, id) of one page: CSV exports copy the pre-rendered line."""
    stmt = _paged([cdr.c.line], f, sort, after, limit)
    return [(row[0], int(row[1]), int(row[2])) for row in conn.execute(stmt)]


def total(conn: Connection, f: Filters) -> int:
    stmt = select(func.count()).select_from(cdr).where(*conditions(f))
    return int(conn.execute(stmt).scalar_one())


def read_changes(
    conn: Connection, after: int, limit: int, scope: Scope | None = None
) -> tuple[list[Sequence[Any]], int]:
    """Rows stored after sequence ``after`` (only ``scope``'s), in storage (id) order, and the
    newest sequence stored. The newest is read first and bounds the rows: a page shorter than
    ``limit`` has then looked at every row up to it, in scope or not."""
    newest = int(conn.execute(select(func.coalesce(func.max(cdr.c.id), 0))).scalar_one())
    where = [cdr.c.id > after, cdr.c.id <= newest]
    if scope is not None:
        where.append(in_scope(scope))
    stmt = select(*ITEM_COLUMNS).where(*where).order_by(cdr.c.id).limit(limit)
    return _driver_rows(conn, stmt), newest


DAY_S = 86_400
HOUR_S = 3_600
# 1970-01-01 was a Thursday: (days + 3) % 7 counts weekdays from Monday = 0.
_EPOCH_WEEKDAY = 3


def _key_parts(f: Filters, group: Group) -> list[Select[Any]]:
    """One SELECT (key, status, talk, duration) per way a row counts towards a group."""
    where = conditions(f)
    measures = (cdr.c.status, cdr.c.talkduraction, cdr.c.callduraction)

    def part(key: Any, *extra: ColumnElement[bool]) -> Select[Any]:
        return select(key.label("key"), *measures).where(*where, *extra)

    if group == "hour":
        return [part(cdr.c.ts // HOUR_S * HOUR_S)]
    if group == "day":
        return [part(cdr.c.ts // DAY_S * DAY_S)]
    if group == "weekday":
        return [part((cdr.c.ts // DAY_S + _EPOCH_WEEKDAY) % 7)]
    if group in ("status", "type"):
        return [part(cdr.c[group])]
    if group == "trunk":
        # Each trunk the call used, once: a call in on one trunk and out on another counts
        # for both; calls on no trunk (internal) count for none.
        return [
            part(cdr.c.srctrunkname, cdr.c.srctrunkname != ""),
            part(cdr.c.dsttrunkname, cdr.c.dsttrunkname != "",
                 cdr.c.dsttrunkname != cdr.c.srctrunkname),
        ]  # fmt: skip
    # extension: the PBX side of the call by its type; an internal call counts for both.
    # A scoped account sees only its own extensions' groups, not the far end's of its calls.
    scope = f.scope

    def own(column: Any) -> list[ColumnElement[bool]]:
        return [] if scope is None else [scope.matches(column)]

    return [
        part(cdr.c.callfrom, cdr.c.type.in_(["Outbound", "Internal"]), *own(cdr.c.callfrom)),
        part(cdr.c.callto, cdr.c.type.in_(["Inbound", "Internal"]),
             or_(cdr.c.type != "Internal", cdr.c.callto != cdr.c.callfrom), *own(cdr.c.callto)),
    ]  # fmt: skip


def stats_select(f: Filters, group: Group) -> Select[Any]:
    parts = _key_parts(f, group)
    source = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
    answered = func.sum(case((source.c.status == "ANSWERED", 1), else_=0))
    return (
        select(
            source.c.key,
            func.count().label("calls"),
            func.coalesce(answered, literal(0)),
            func.coalesce(func.sum(source.c.talkduraction), literal(0)),
            func.coalesce(func.sum(source.c.callduraction), literal(0)),
        )
        .group_by(source.c.key)
        .order_by(source.c.key)
    )


def _whole_hour_after_epoch(ts: int | None) -> bool:
    # cdr_summary's hour is ts / 3600 * 3600 truncated towards zero, so for ts < 0 an hour
    # bound and a ts bound differ: only positive, whole-hour bounds select the same rows.
    return ts is None or (ts > 0 and ts % HOUR_S == 0)


# Which Filters fields cdr_summary can answer, and for which values. A field not named here
# (or added later) that is set sends the query to the raw rows: never a wrong answer.
_SUMMARY_FILTERS: dict[str, Callable[[Any], bool]] = {
    "from_ts": _whole_hour_after_epoch,
    "until_ts": _whole_hour_after_epoch,
    "statuses": lambda _: True,
    "types": lambda _: True,
}
_SUMMARY_GROUPS = frozenset({"hour", "day", "weekday", "status", "type"})


def summary_answers(f: Filters, group: Group) -> bool:
    """Whether cdr_summary holds the answer to these statistics (else read the rows)."""
    if group not in _SUMMARY_GROUPS:
        return False
    for field in fields(f):
        value = getattr(f, field.name)
        if value == field.default:
            continue
        check = _SUMMARY_FILTERS.get(field.name)
        if check is None or not check(value):
            return False
    return True


def summary_stats_select(f: Filters, group: Group) -> Select[Any]:
    """``stats_select``'s answer from cdr_summary; only when ``summary_answers``."""
    s = cdr_summary
    keys: dict[str, Any] = {
        "hour": s.c.hour,
        "day": s.c.hour // DAY_S * DAY_S,
        "weekday": (s.c.hour // DAY_S + _EPOCH_WEEKDAY) % 7,
        "status": s.c.status,
        "type": s.c.type,
    }
    where: list[ColumnElement[bool]] = []
    if f.from_ts is not None:
        where.append(s.c.hour >= f.from_ts)
    if f.until_ts is not None:
        where.append(s.c.hour < f.until_ts)
    if f.statuses:
        where.append(s.c.status.in_(list(f.statuses)))
    if f.types:
        where.append(s.c.type.in_(list(f.types)))
    key = keys[group].label("key")
    calls = func.sum(s.c.calls)
    answered = func.sum(case((s.c.status == "ANSWERED", s.c.calls), else_=0))
    return (
        select(key, calls, answered, func.sum(s.c.talk), func.sum(s.c.duration))
        .where(*where)
        .group_by(key)
        .having(calls > 0)  # hours whose calls were all deleted keep a zero row
        .order_by(key)
    )


def read_stats(conn: Connection, f: Filters, group: Group) -> list[tuple[Any, int, int, int, int]]:
    use_summary = summary_answers(f, group)
    stmt = summary_stats_select(f, group) if use_summary else stats_select(f, group)
    return [
        (row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4])) for row in conn.execute(stmt)
    ]
