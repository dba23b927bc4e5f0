"""Which extensions an API account may read: parse, render, match, and the SQL predicate.

A scope is a comma list of extensions and ranges (``1000-1099,2001``). An extension is 1 to
20 digits. A range ``A-B`` needs both ends of the same length with ``A <= B``, and matches the
numbers *of that length* from A to B: ``1000-1099`` matches 1050, not 105 or 10500. That rule
lets SQL compare strings (``length(x) = 4 AND x BETWEEN '1000' AND '1099'``), which both
engines answer from the (callfrom, ts) / (callto, ts) indexes, and it says plainly that a
leading zero is part of an extension (``0100-0199`` is not ``100-199``).

A CDR is in scope when its caller or its callee is. ``None`` stands for "no scope": the
account reads everything (``ALL``, the spelling the CLI takes to clear a scope).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_

ALL = "all"
MAX_DIGITS = 20
MAX_PARTS = 1000
_EXTENSION = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")


class ScopeError(ValueError):
    """A scope spec that cannot be used; the message names the bad part."""


@dataclass(frozen=True)
class Scope:
    """Single extensions and inclusive ranges (``(low, high)``, both ends of one length)."""

    singles: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def contains(self, number: str) -> bool:
        if number in self.singles:
            return True
        return any(len(number) == len(lo) and lo <= number <= hi for lo, hi in self.ranges)

    def render(self) -> str:
        """The canonical spec: ranges and singles in order, as ``parse`` reads it back."""
        parts = [(lo, f"{lo}-{hi}") for lo, hi in self.ranges]
        parts += [(single, single) for single in self.singles]
        parts.sort(key=lambda part: (len(part[0]), part[0]))
        return ",".join(text for _, text in parts)

    def matches(self, column: Any) -> ColumnElement[bool]:
        """``column`` (a caller or callee column) is one of the scope's extensions."""
        terms: list[ColumnElement[bool]] = []
        if self.singles:
            terms.append(column.in_(sorted(self.singles)))
        for lo, hi in self.ranges:
            terms.append(and_(func.length(column) == len(lo), column.between(lo, hi)))
        return or_(*terms) if terms else false()

    def predicate(self, callfrom: Any, callto: Any) -> ColumnElement[bool]:
        """A CDR is in scope when its caller or its callee is."""
        return or_(self.matches(callfrom), self.matches(callto))


def parse(spec: str) -> Scope | None:
    """A scope from its spec; ``all`` gives None (no scope). Raises ScopeError."""
    if spec.strip().lower() == ALL:
        return None
    return _parse(spec.strip())


@lru_cache(maxsize=1024)
def _parse(spec: str) -> Scope:
    # Cached: every authenticated request of a scoped account parses its stored spec.
    parts = [part.strip() for part in spec.split(",")]
    if not spec or not any(parts):
        raise ScopeError("no extension given (use 'all' for every extension)")
    if len(parts) > MAX_PARTS:
        raise ScopeError(f"more than {MAX_PARTS} extensions or ranges")
    singles: set[str] = set()
    ranges: set[tuple[str, str]] = set()
    for part in parts:
        if not part:
            raise ScopeError(f"an empty item in {spec!r}")
        lo, dash, hi = (p.strip() for p in part.partition("-"))
        for end in (lo, hi) if dash else (lo,):
            if not _EXTENSION.fullmatch(end):
                raise ScopeError(f"{part!r}: an extension is 1 to {MAX_DIGITS} digits")
        if not dash or lo == hi:
            singles.add(lo)
            continue
        if len(lo) != len(hi):
            raise ScopeError(f"{part!r}: both ends of a range need the same number of digits")
        if lo > hi:
            raise ScopeError(f"{part!r}: the range is reversed (write {hi}-{lo})")
        ranges.add((lo, hi))
    covered = {s for s in singles if any(len(s) == len(a) and a <= s <= b for a, b in ranges)}
    return Scope(frozenset(singles - covered), tuple(sorted(ranges, key=lambda r: (len(r[0]), r))))


def render(scope: Scope | None) -> str:
    return ALL if scope is None else scope.render()


def stored_form(scope: Scope | None) -> str | None:
    """What the ``api_account.extensions`` column holds for ``scope`` (NULL: none)."""
    return None if scope is None else scope.render()


def stored(spec: str | None) -> Scope | None:
    """The scope of an account as stored (NULL: none). Stored specs were parsed on the way in."""
    return None if spec is None else parse(spec)
