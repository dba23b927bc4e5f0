"""The calls page's state: the URL's filters and paging, turned into query service requests.

The filters keep the names of ``GET /v1/cdrs`` (``from``, ``until``, ``number``, ...), so a
console link and an API call say the same thing. Paging is the API's keyset cursor; the API
only pages forward, so "Previous" asks for the page *before* the first row shown by reading
in the opposite direction from it (``before=``) and turning the rows round.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, get_args
from urllib.parse import urlencode

from cdrgate.services.query import (
    DIRECTIONS,
    FILTERS,
    CdrPage,
    Params,
    QueryRequest,
    encode_cursor,
)
from cdrgate.storage.query import Order, Position, Sort
from cdrgate.timefmt import parse_pbx_time

PAGE_ROWS = 50
# /v1/cdrs parameters the page sets itself (50 rows, a count when cheap, the CSV link's
# format): from a pasted API link they are dropped, not passed on to clash with the page's.
_PAGE_OWN = frozenset({"limit", "count", "format"})
SORTABLE: tuple[Order, ...] = get_args(Order)
# A datetime-local input sends minutes only (2026-05-01T09:30); the API wants seconds.
_MINUTES = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _cleaned(name: str, value: str) -> str:
    value = value.strip()
    if name in ("from", "until") and _MINUTES.fullmatch(value):
        value += ":00"
    return value


def _direction(value: str | None) -> str:
    """The API's reading of ``direction``, refused as the API refuses it: any word but "asc"
    was read as "desc", so a mistyped link sorted newest first without a word."""
    pairs = () if value is None else (("direction", value),)
    return Params(pairs, frozenset({"direction"})).choice("direction", DIRECTIONS, "desc")


@dataclass(frozen=True)
class Listing:
    """What the URL asks for: filters, sort, and where the page starts."""

    filters: tuple[tuple[str, str], ...]
    order: str = "timestart"
    descending: bool = True
    cursor: str | None = None  # the page after this position
    before: str | None = None  # the page before this position (a reversed-sort cursor)
    extra: tuple[tuple[str, str], ...] = field(default=())  # anything else, for the API to judge

    @classmethod
    def from_query(cls, pairs: Sequence[tuple[str, str]]) -> Listing:
        filters, extra = [], []
        values: dict[str, str] = {}
        for name, value in pairs:
            if not value.strip():
                continue  # an empty form field means "any"
            if name in FILTERS:
                filters.append((name, _cleaned(name, value)))
            elif name in ("order", "direction", "cursor", "before"):
                values[name] = value.strip()
            elif name in _PAGE_OWN:
                continue
            else:
                extra.append((name, value))
        return cls(
            filters=tuple(filters),
            order=values.get("order", "timestart"),
            descending=_direction(values.get("direction")) == "desc",
            cursor=values.get("cursor"),
            before=values.get("before"),
            extra=tuple(extra),
        )

    @property
    def direction(self) -> str:
        return "desc" if self.descending else "asc"

    def value(self, name: str) -> str:
        """A filter's value as the form shows it ("" when not set)."""
        return ",".join(v for n, v in self.filters if n == name)

    def count_is_cheap(self) -> bool:
        """A count scans every match: only asked for when an index narrows it well."""
        names = {name for name, _ in self.filters}
        return "number" in names or {"from", "until"} <= names

    def request(self, token: str | None, limit: int = PAGE_ROWS) -> QueryRequest:
        """The query service request for this page (``limit + 0``; the service adds one)."""
        direction = self.direction
        cursor = self.cursor
        if self.before is not None:
            direction, cursor = ("asc" if self.descending else "desc"), self.before
        params = [*self.filters, *self.extra, ("order", self.order), ("direction", direction)]
        params.append(("limit", str(limit)))
        if cursor is not None:
            params.append(("cursor", cursor))
        if self.count_is_cheap():
            params.append(("count", "true"))
        return QueryRequest(token=token, params=tuple(params))

    def csv_request(self, token: str | None) -> QueryRequest:
        """The whole filtered, sorted result as CSV (no cursor: the export is every page)."""
        params = (*self.filters, *self.extra, ("order", self.order), ("direction", self.direction))
        return QueryRequest(token=token, params=(*params, ("format", "csv")))

    def link(self, **changes: str | None) -> str:
        """This view's query string with some parameters changed (None removes one)."""
        state: dict[str, str | None] = {"order": self.order, "direction": self.direction}
        state["cursor"], state["before"] = self.cursor, self.before
        state.update(changes)
        if state["order"] == "timestart" and state["direction"] == "desc":
            state["order"] = state["direction"] = None  # the default: shorter links
        pairs = [*self.filters, *self.extra]
        pairs += [(k, v) for k, v in state.items() if v is not None]
        return "?" + urlencode(pairs) if pairs else "?"

    def sort_link(self, order: str) -> str:
        """Sort by a column; a second click on the sorted column turns the direction round."""
        descending = not self.descending if order == self.order else True
        return self.link(
            order=order, direction="desc" if descending else "asc", cursor=None, before=None
        )

    def aria_sort(self, order: str) -> str:
        if order != self.order:
            return "none"
        return "descending" if self.descending else "ascending"


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int | None
    previous: str | None  # query string of the previous page, None on the first
    next: str | None


def _position(row: Mapping[str, Any], order: str) -> Position:
    value = row["timestart"] if order == "timestart" else row[order]
    key = parse_pbx_time(value) if order == "timestart" else int(value)
    return Position(key, int(row["id"]))


def page_of(listing: Listing, answer: CdrPage) -> Page:
    """The rows in display order and the Previous/Next links around them."""
    order = cast(Order, listing.order)
    rows = answer.items
    if listing.before is not None:
        rows = list(reversed(rows))
        has_previous, has_next = answer.next_cursor is not None, True
    else:
        has_previous, has_next = listing.cursor is not None, answer.next_cursor is not None
    previous = following = None
    if rows and has_previous:
        reverse = Sort(order, not listing.descending)
        before = encode_cursor(reverse, _position(rows[0], order))
        previous = listing.link(cursor=None, before=before)
    if rows and has_next:
        after = encode_cursor(Sort(order, listing.descending), _position(rows[-1], order))
        following = listing.link(cursor=after, before=None)
    return Page(rows, answer.total, previous, following)
