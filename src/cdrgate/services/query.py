"""The rules of the JSON query API: authenticate, validate every parameter, page, count.

Each request arrives as a :class:`QueryRequest` (the token and the query string exactly as
sent); the service authenticates it first, so a client without a valid token learns nothing
about which parameters are right, then turns the parameters into the storage layer's
``Filters``/``Sort``/``Position``. A parameter that cannot be used is a :class:`BadParameter`
naming it; unknown parameters are refused too, because a misspelt filter (``numbr=``) would
otherwise silently widen the answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Protocol, cast, get_args

from cdrgate.cdr import CSV_COLUMNS, CSV_HEADER
from cdrgate.csvsafe import safe_line
from cdrgate.errors import BadParameter
from cdrgate.services.auth import Session
from cdrgate.services.export import ExportSlots, Outcome
from cdrgate.settings import Settings
from cdrgate.storage import query as store
from cdrgate.storage.db import Database
from cdrgate.storage.query import DAY_S, Filters, Group, Order, Position, Sort
from cdrgate.timefmt import format_pbx_time, parse_pbx_time

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_LIST = 1000  # numbers, statuses or types in one filter
MAX_TEXT = 200  # characters of a text filter
MAX_INT = 2**63 - 1  # the largest BIGINT: bigger values cannot match and break PostgreSQL
MAX_SECONDS = 2**31 - 1
CSV_PAGE_ROWS = 4000  # rows per short read transaction of a CSV export

STATUSES = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "VOICEMAIL")
TYPES = ("Inbound", "Outbound", "Internal")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

FILTERS = frozenset(
    {"from", "until", "number", "status", "type", "trunk", "did", "sn", "has_recording",
     "min_talk", "max_talk", "q"}
)  # fmt: skip
LIST_PARAMS = FILTERS | {"order", "direction", "limit", "cursor", "count", "format"}
DIRECTIONS = ("desc", "asc")
CHANGES_PARAMS = frozenset({"after", "limit"})
STATS_PARAMS = FILTERS | {"group"}
# Comma lists: given twice (number=1&number=2) they add up, as in most query APIs.
_LISTS = frozenset({"number", "status", "type"})


@dataclass(frozen=True)
class QueryRequest:
    """One query API request as sent: the token (header or query) and the query pairs."""

    token: str | None
    params: tuple[tuple[str, str], ...]
    wants_csv: bool = False  # the Accept header asked for text/csv


@dataclass(frozen=True)
class CdrPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None


@dataclass(frozen=True)
class ChangesPage:
    items: list[dict[str, Any]]
    next_after: int
    last_seq: int  # the newest sequence stored when the page was read


@dataclass(frozen=True)
class StatGroup:
    key: str
    calls: int
    answered: int
    talk_seconds: int
    duration_seconds: int


class Params:
    """The query pairs, checked: known names only, each once (comma lists may repeat)."""

    def __init__(self, pairs: Sequence[tuple[str, str]], allowed: frozenset[str]) -> None:
        self._values: dict[str, str] = {}
        for name, value in pairs:
            if name == "token":
                continue  # authenticated before parsing
            if name not in allowed:
                raise BadParameter(name, "unknown parameter")
            if "\x00" in value:
                raise BadParameter(name, "contains a NUL character")
            if name in self._values:
                if name not in _LISTS:
                    raise BadParameter(name, "given more than once")
                value = f"{self._values[name]},{value}"
            self._values[name] = value

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise BadParameter(name, "is empty")
        if len(value) > MAX_TEXT:
            raise BadParameter(name, f"longer than {MAX_TEXT} characters")
        return value

    def items(self, name: str) -> tuple[str, ...]:
        value = self._values.get(name)
        if value is None:
            return ()
        parts = tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
        if not parts:
            raise BadParameter(name, "is empty")
        if len(parts) > MAX_LIST:
            raise BadParameter(name, f"more than {MAX_LIST} values")
        return parts

    def choices(self, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        """A comma list of ``allowed`` values, matched without regard to case."""
        by_upper = {choice.upper(): choice for choice in allowed}
        chosen = []
        for item in self.items(name):
            if item.upper() not in by_upper:
                raise BadParameter(name, f"{item!r} is not one of {', '.join(allowed)}")
            chosen.append(by_upper[item.upper()])
        return tuple(dict.fromkeys(chosen))

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name)
        if value is None:
            return default
        if value not in allowed:
            raise BadParameter(name, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or int(value) < low or int(value) > high:
            raise BadParameter(name, f"not a whole number from {low} to {high}")
        return int(value)

    def boolean(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise BadParameter(name, "not true or false")
        return value.lower() == "true"

    def time(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        # ISO 8601's T separator, or the PBX's space; no zone (PBX local time).
        if len(value) > 10 and value[10] in "Tt":
            value = value[:10] + " " + value[11:]
        try:
            return parse_pbx_time(value)
        except ValueError:
            raise BadParameter(name, "not a YYYY-MM-DD HH:MM:SS time") from None


def parse_filters(params: Params, session: Session) -> Filters:
    """The request's filters, limited to the session's scope (the account's extensions)."""
    return replace(_parse_filters(params), scope=session.scope)


def _parse_filters(params: Params) -> Filters:
    from_ts, until_ts = params.time("from"), params.time("until")
    if from_ts is not None and until_ts is not None and until_ts <= from_ts:
        raise BadParameter("until", "must be later than from")
    min_talk = params.integer("min_talk", 0, MAX_SECONDS)
    max_talk = params.integer("max_talk", 0, MAX_SECONDS)
    return Filters(
        from_ts=from_ts,
        until_ts=until_ts,
        numbers=params.items("number"),
        statuses=params.choices("status", STATUSES),
        types=params.choices("type", TYPES),
        trunk=params.text("trunk"),
        did=params.text("did"),
        sn=params.text("sn"),
        has_recording=params.boolean("has_recording"),
        min_talk=min_talk,
        max_talk=max_talk,
        q=params.text("q"),
    )


def encode_cursor(sort: Sort, at: Position) -> str:
    raw = json.dumps([sort.order, sort.descending, at.value, at.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str, sort: Sort) -> Position:
    """The position a cursor holds; it must come from a page of the same sort."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        order, descending, value, row_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadParameter("cursor", "not a cursor this API handed out") from None
    if not all(type(n) is int and -MAX_INT <= n <= MAX_INT for n in (value, row_id)):
        raise BadParameter("cursor", "not a cursor this API handed out")
    if (order, descending) != (sort.order, sort.descending):
        raise BadParameter("cursor", "was handed out for another order or direction")
    return Position(value, row_id)


_ITEM_KEYS = ("id", *CSV_COLUMNS)
assert _ITEM_KEYS[2] == "timestart"


def item(row: Sequence[Any]) -> dict[str, Any]:
    """A row of ``ITEM_COLUMNS`` as the API shows it: id, then the CSV fields by name."""
    # zip stops at the 15 keys (a page's rows carry the sort key and id after them).
    values = dict(zip(_ITEM_KEYS, row, strict=False))
    values["timestart"] = _pbx_time(row[2])  # ts -> timestart
    return values


@lru_cache(maxsize=4096)
def _pbx_date(day: int) -> str:
    return format_pbx_time(day * DAY_S)[:11]


@lru_cache(maxsize=DAY_S)
def _pbx_clock(second: int) -> str:
    return format_pbx_time(second)[11:]


def _pbx_time(ts: int) -> str:
    """``format_pbx_time``, from cached halves: a 10,000-row page falls on few days, and the
    per-row ``gmtime`` and formatting were a quarter of its time."""
    day, second = divmod(ts, DAY_S)
    return _pbx_date(day) + _pbx_clock(second)


class CsvStream:
    """The whole filtered, sorted result as the device's CSV, a page per ``next_chunk`` call.

    Each page is its own short read transaction on the export pool, within the query API's
    share of it (``Database.query_read``): nothing is held in the database between pages,
    however slowly the client reads (see services/export.py).
    """

    filename = "cdr.csv"

    def __init__(
        self,
        db: Database,
        filters: Filters,
        sort: Sort,
        after: Position | None,
        safe: bool,
        slot: ExportSlots.Slot | None = None,
    ) -> None:
        self.db = db
        self.filters = filters
        self.sort = sort
        self._after = after
        self._safe = safe
        self._slot = slot
        self._started = False
        self._done = False

    @property
    def ready(self) -> bool:
        """The next call needs no database work (it is the end)."""
        return self._done

    def none_sent(self) -> None:
        """Nothing is counted here (the access log has the bytes): nothing to undo."""

    def finish(self, outcome: Outcome) -> None:
        """Only the export slot is held between pages; the access log has the rest."""
        if self._slot is not None:
            self._slot.release()

    def next_chunk(self) -> bytes | None:
        """The next bytes of the CSV, or None at the end. Does database work: off the loop."""
        if self._done:
            return None
        rows = self.db.query_read(
            lambda conn: store.read_lines(conn, self.filters, self.sort, self._after, CSV_PAGE_ROWS)
        )
        if len(rows) < CSV_PAGE_ROWS:
            self._done = True
        else:
            self._after = Position(rows[-1][1], rows[-1][2])
        lines = [safe_line(line) if self._safe else line for line, _, _ in rows]
        header = "" if self._started else CSV_HEADER
        self._started = True
        if not lines and not header:
            return None
        return (header + "".join(lines)).encode()


class Authenticator(Protocol):
    """What the query service needs of the auth service (``AuthService`` is one): a token's
    session, or the refusal."""

    def authenticate(self, token: str | None) -> Session: ...


class QueryService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        auth: Authenticator,
        slots: ExportSlots,
    ) -> None:
        self.db = db
        self.settings = settings
        self.auth = auth
        self.slots = slots

    def _reader(self) -> Database:
        """Where this request reads: a replica that has replayed everything committed before
        it (within ``max_replica_lag_ms``), else the primary's export pool; never an error."""
        return self.db.for_export(self.db.current_position())

    def search(self, ask: QueryRequest) -> CdrPage | CsvStream:
        """``GET /v1/cdrs``: one page of items, or (CSV asked for) the whole result."""
        session = self.auth.authenticate(ask.token)
        params = Params(ask.params, LIST_PARAMS)
        filters = parse_filters(params, session)
        descending = params.choice("direction", DIRECTIONS, "desc") == "desc"
        order = cast(Order, params.choice("order", get_args(Order), "timestart"))
        sort = Sort(order, descending)
        limit = params.integer("limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
        cursor = params.text("cursor")
        after = decode_cursor(cursor, sort) if cursor is not None else None
        count = params.boolean("count") or False
        fmt = params.choice("format", ("json", "csv"), "csv" if ask.wants_csv else "json")
        if fmt == "csv":
            # A whole result, streamed for as long as the client takes: it counts towards the
            # same export limits as CDR downloads (busy: 503 here, 20010 on the device API).
            slot = self.slots.acquire(session.account)
            return CsvStream(self._reader(), filters, sort, after, self.settings.csv_safe, slot)
        rows, total = self._reader().query_read(
            lambda conn: (
                store.read_items(conn, filters, sort, after, limit + 1),
                store.total(conn, filters) if count else None,
            )
        )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(sort, Position(int(rows[-1][-2]), int(rows[-1][-1])))
        return CdrPage([item(row) for row in rows], next_cursor, total)

    def changes(self, ask: QueryRequest) -> ChangesPage:
        """``GET /v1/cdrs/changes``: CDRs stored after sequence ``after``, in storage order."""
        session = self.auth.authenticate(ask.token)
        params = Params(ask.params, CHANGES_PARAMS)
        after = params.integer("after", 0, MAX_INT) or 0
        limit = params.integer("limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
        rows, last = self._reader().query_read(
            lambda conn: store.read_changes(conn, after, limit, session.scope)
        )
        items = [{"seq": int(row[0]), **item(row)} for row in rows]
        # A short page has looked at every row up to ``last``: a scoped reader then skips
        # the rows it may not see instead of scanning them again next time.
        next_after = items[-1]["seq"] if len(items) == limit else max(after, last)
        return ChangesPage(items, next_after, last)

    def stats(self, ask: QueryRequest) -> list[StatGroup]:
        """``GET /v1/stats``: calls, answered calls and seconds per group."""
        session = self.auth.authenticate(ask.token)
        params = Params(ask.params, STATS_PARAMS)
        filters = parse_filters(params, session)
        if params.text("group") is None:
            raise BadParameter("group", f"required: one of {', '.join(get_args(Group))}")
        group = cast(Group, params.choice("group", get_args(Group), ""))
        rows = self._reader().query_read(lambda conn: store.read_stats(conn, filters, group))
        return [StatGroup(_group_key(group, key), *counts) for key, *counts in rows]


def _group_key(group: Group, key: Any) -> str:
    if group == "hour":
        return format_pbx_time(int(key))[:13] + ":00:00"
    if group == "day":
        return format_pbx_time(int(key))[:10]
    if group == "weekday":
        return WEEKDAYS[int(key)]
    return str(key)
