"""One-time CDR download links: issuing randoms and redeeming them into a streamed CSV."""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cdrgate.cdr import CSV_HEADER
from cdrgate.clock import Clock
from cdrgate.csvsafe import safe_batches
from cdrgate.errors import ApiError, Errno
from cdrgate.iprules import normalise_ip
from cdrgate.passwords import secret_hash
from cdrgate.services.auth import AuthService, Session
from cdrgate.settings import Settings
from cdrgate.storage import cdrs, randoms
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time

ALL = "all"
MAX_EXTENSIONS = 1000
EXPORT_BATCH = 2000


@dataclass(frozen=True)
class CdrFilter:
    """A validated extid/number + time range, normalised so equal filters compare equal."""

    selector: str  # "all" or the extensions joined by ","
    start_ts: int
    end_ts: int

    @property
    def extensions(self) -> tuple[str, ...] | None:
        return None if self.selector == ALL else tuple(self.selector.split(","))

    def query(self) -> CdrQuery:
        return CdrQuery(self.start_ts, self.end_ts, self.extensions)


def parse_filter(selector: str | None, starttime: str | None, endtime: str | None) -> CdrFilter:
    if not selector or not selector.strip() or not starttime or not endtime:
        raise ApiError(Errno.PARAMETER_EMPTY)
    try:
        start, end = parse_pbx_time(starttime), parse_pbx_time(endtime)
    except ValueError:
        raise ApiError(Errno.CDR_TIME_FORMAT) from None
    return CdrFilter(normalise_selector(selector), start, end)


def normalise_selector(raw: str) -> str:
    if raw.strip().lower() == ALL:
        return ALL
    exts = [part.strip() for part in raw.split(",") if part.strip()]
    if not exts:
        raise ApiError(Errno.PARAMETER_EMPTY)
    if len(exts) > MAX_EXTENSIONS:
        raise ApiError(Errno.PARAMETER_EMPTY, f"more than {MAX_EXTENSIONS} extensions")
    return ",".join(dict.fromkeys(exts))


def parse_allowed_ip(raw: str | None) -> str | None:
    """One IPv4/IPv6 address, or None when absent or blank; anything else is 20015."""
    if raw is None or not raw.strip():
        return None
    try:
        return normalise_ip(raw)
    except ValueError:
        raise ApiError(Errno.ALLOWEDIP_ERROR) from None


class Export:
    """A redeemed download: the CSV as byte chunks, streamed straight from the database."""

    def __init__(
        self, first: list[str], rest: Iterator[list[str]], close: Callable[[], None]
    ) -> None:
        self._first = first
        self._rest = rest
        self._close = close
        self.rows = 0
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        try:
            chunk = (CSV_HEADER + "".join(self._first)).encode()
            self.rows += len(self._first)
            self.bytes += len(chunk)
            yield chunk
            for batch in self._rest:
                chunk = "".join(batch).encode()
                self.rows += len(batch)
                self.bytes += len(chunk)
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        self._close()


class DownloadService:
    def __init__(self, db: Database, settings: Settings, clock: Clock, auth: AuthService) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.auth = auth

    def issue_random(
        self, session: Session, flt: CdrFilter, client_ip: str, allowed_ip: str | None
    ) -> str:
        random = secrets.token_hex(16)
        now = self.auth.now_ms()
        with self.db.write() as conn:
            randoms.create(
                conn,
                random_hash=secret_hash(random),
                token_hash=session.token_hash,
                selector=flt.selector,
                start_ts=flt.start_ts,
                end_ts=flt.end_ts,
                client_ip=client_ip,
                allowed_ip=allowed_ip,
                expires_ms=now + self.settings.random_ttl_seconds * 1000,
            )
        return random

    def redeem(self, session: Session, flt: CdrFilter, random: str | None, client_ip: str) -> None:
        """Spend the random for this exact request, or raise the errno that explains why not."""
        if random is None or not random.strip():
            raise ApiError(Errno.PARAMETER_EMPTY)
        random_hash = secret_hash(random.strip().lower())
        now = self.auth.now_ms()
        with self.db.write() as conn:
            row = randoms.find(conn, random_hash)
            if (
                row is None
                or not hmac.compare_digest(row.token_hash, session.token_hash)
                or (row.selector, row.start_ts, row.end_ts)
                != (flt.selector, flt.start_ts, flt.end_ts)
                or row.used_ms is not None
                or row.expires_ms <= now
            ):
                raise ApiError(Errno.CDR_RANDOM_INVALID)
            if client_ip not in (row.client_ip, row.allowed_ip):
                raise ApiError(Errno.ALLOWEDIP_ERROR)
            if not randoms.redeem(conn, random_hash, now):
                raise ApiError(Errno.CDR_RANDOM_INVALID)

    def open_export(self, flt: CdrFilter) -> Export:
        """Start the CSV; 20021 (or a header-only file, per settings) when nothing matches.

        The read transaction stays open while the response streams and is closed by the
        Export, unless the first batch already holds the whole result.
        """
        with contextlib.ExitStack() as stack:
            conn = stack.enter_context(self.db.read())
            batches = cdrs.iter_lines(conn, flt.query(), EXPORT_BATCH)
            stack.callback(batches.close)
            if self.settings.csv_safe:
                batches = safe_batches(batches)
            first = next(batches, [])
            if not first:
                if self.settings.empty_download == "errno":
                    raise ApiError(Errno.CDR_NOT_FOUND)
                return Export([], iter(()), lambda: None)
            if len(first) < EXPORT_BATCH:
                # A short first batch is the whole result: give the connection back now, not
                # when the response has streamed. Many small downloads holding connections
                # emptied the PostgreSQL pool while threads waiting for it starved the streams.
                return Export(first, iter(()), lambda: None)
            return Export(first, batches, _once(stack.pop_all().close))

    def purge_spent(self) -> int:
        with self.db.write() as conn:
            return randoms.purge(conn, self.auth.now_ms())


def _once(func: Callable[[], None]) -> Callable[[], None]:
    done = False

    def wrapper() -> None:
        nonlocal done
        if not done:
            done = True
            func()

    return wrapper
