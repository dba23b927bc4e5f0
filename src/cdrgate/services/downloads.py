"""One-time CDR download links: issuing randoms and redeeming them into a paged CSV export.

The service owns the whole sequence of both calls (authenticate, validate, issue or redeem,
open the export) and the download's audit record, so an API handler only parses the request,
calls one method and answers.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, NamedTuple

from sqlalchemy import Connection

from cdrgate.cdr import CSV_HEADER_BYTES
from cdrgate.clock import Clock
from cdrgate.errors import ApiError, Errno, StorageUnavailable
from cdrgate.iprules import normalise_ip
from cdrgate.scope import Scope
from cdrgate.services.audit import DownloadAttempt, DownloadAudit, SpendLost
from cdrgate.services.auth import TOUCH_EVERY_MS, AuthService, Session, token_hash_of
from cdrgate.services.export import (
    PAGE_ROWS,
    Cursor,
    Export,
    ExportSlots,
    Outcome,
    Page,
    first_page,
)
from cdrgate.services.signed_randoms import RandomSigner
from cdrgate.settings import Settings
from cdrgate.storage import (
    cdrs,
    day_months,
    randoms,
    server_keys,
    session_day,
    session_spend,
    tokens,
)
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.db import CommitFailed, Database, WriterBusy
from cdrgate.timefmt import format_pbx_time, parse_pbx_time

ALL = "all"
MAX_EXTENSIONS = 1000
# A download range up to this many seconds is read in its redeem's transaction when its whole
# result fits in one page (``DownloadService._whole_result``).
WHOLE_RESULT_SPAN = 24 * 3600
# The refusals a signed and a stored random share (the log's reason; the errno says less).
_USED = "random already used (one download each)"
_EXPIRED = "random expired"
_WRONG_ADDRESS = "client address is neither get_random's caller nor its allowedip"
# The ``server_key`` row whose key signs cdr/get_random's randoms.
RANDOM_KEY = "cdr-random"
# A random that fails its tag check and names no stored row may be signed under a key that
# replaced this process's (the row deleted by hand, a restore under live hosts, a worker
# started across such a change): the key is read again, at most this often per process, so
# a flood of forged randoms cannot make every refusal a key read.
KEY_REREAD_SECONDS = 10


@dataclass(frozen=True)
class CdrFilter:
    """A validated extid/number + time range, normalised so equal filters compare equal."""

    selector: str  # "all" or the extensions joined by ","
    start_ts: int
    end_ts: int

    @property
    def extensions(self) -> tuple[str, ...] | None:
        return None if self.selector == ALL else tuple(self.selector.split(","))

    def query(self, scope: Scope | None = None) -> CdrQuery:
        """What to read for an account of this ``scope``: ``all`` is the scope's extensions,
        and a list keeps only the extensions in scope (none left: no rows)."""
        exts = self.extensions
        if scope is not None and exts is not None:
            exts = tuple(ext for ext in exts if scope.contains(ext))
        return CdrQuery(self.start_ts, self.end_ts, exts, scope)

    def filename(self) -> str:
        return _filename(self.start_ts, self.end_ts)


# A poller asks for the same range again and again, and formatting two times costs a small
# flow more than its audit record: the last few names are kept.
@lru_cache(maxsize=256)
def _filename(start_ts: int, end_ts: int) -> str:
    start, end = (
        format_pbx_time(ts).replace(" ", "_").replace(":", "") for ts in (start_ts, end_ts)
    )
    return f"cdr-{start}-{end}.csv"


class RandomRequest(NamedTuple):
    """``cdr/get_random`` as the client sent it (fields unvalidated); one per request, so a
    NamedTuple: a frozen dataclass costs twice as much to build (``object.__setattr__``)."""

    token: str | None
    selector: str | None
    starttime: str | None
    endtime: str | None
    allowedip: str | None
    client_ip: str


class DownloadRequest(NamedTuple):
    """``cdr/download`` as the client sent it (fields unvalidated); one per request, so a
    NamedTuple: a frozen dataclass costs twice as much to build (``object.__setattr__``)."""

    token: str | None
    selector: str | None
    starttime: str | None
    endtime: str | None
    random: str | None
    client_ip: str
    api_version: str


# A flow parses its filter three times (get_random, then the download's loop check and the
# download itself), from the same three strings: the last few answers are kept. A refusal is
# an exception, which lru_cache never keeps, so it is raised every time.
@lru_cache(maxsize=256)
def parse_filter(selector: str | None, starttime: str | None, endtime: str | None) -> CdrFilter:
    if not selector or not selector.strip():
        raise ApiError(Errno.PARAMETER_EMPTY, "no extid/number")
    if not starttime or not endtime or not starttime.strip() or not endtime.strip():
        raise ApiError(Errno.PARAMETER_EMPTY, "no starttime or endtime")
    try:
        start, end = parse_pbx_time(starttime), parse_pbx_time(endtime)
    except ValueError:
        raise ApiError(Errno.CDR_TIME_FORMAT, "times must read YYYY-MM-DD HH:MM:SS") from None
    if "\x00" in selector:
        # A link's ``%00``: no random is for one (get_random refuses a NUL, 20000), and
        # PostgreSQL, asked for a stored random with it, failed as a database error (30003).
        raise ApiError(Errno.CDR_RANDOM_INVALID, "extid/number holds a NUL")
    return CdrFilter(normalise_selector(selector), start, end)


def normalise_selector(raw: str) -> str:
    if raw.strip().lower() == ALL:
        return ALL
    exts = [part.strip() for part in raw.split(",") if part.strip()]
    if not exts:
        raise ApiError(Errno.PARAMETER_EMPTY, "extid/number lists no extension")
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
        raise ApiError(Errno.ALLOWEDIP_ERROR, "allowedip is not an IP address") from None


def _spend_signed(
    conn: Connection,
    session: Session,
    flt: CdrFilter,
    random_key: tuple[int, str],
    client_ip: str,
    now: int,
) -> ApiError | None:
    """Spend a signed random (its tag holds for this token and filter): the rules a stored
    random's row holds, in the same order (used, expired, then the address)."""
    expires_ms, random_hash = random_key
    if expires_ms <= now or client_ip != session.login_ip:
        # Refused: a used random says so before the other rules, as a stored one's row does
        # (its spent row is kept until the purge), so it costs one read, on refusals only.
        if randoms.find(conn, expires_ms, random_hash) is not None:
            return ApiError(Errno.CDR_RANDOM_INVALID, _USED)
        if expires_ms <= now:
            return ApiError(Errno.CDR_RANDOM_INVALID, _EXPIRED)
        return ApiError(Errno.ALLOWEDIP_ERROR, _WRONG_ADDRESS)
    spent = _spent_row(random_key, session.token_hash, flt, session.login_ip, now)
    if randoms.spend_signed(conn, spent):
        return None
    return ApiError(Errno.CDR_RANDOM_INVALID, _USED)


def _spent_row(
    key: tuple[int, str], token_hash: str, flt: CdrFilter, login_ip: str, now: int
) -> randoms.RandomRow:
    """The spent row of a signed random (``key``: its expiry and hash) of ``token_hash`` for
    ``flt``, spent now from the token's login address (the only one a signed random allows)."""
    expires_ms, random_hash = key
    return randoms.RandomRow(
        expires_ms, random_hash, token_hash, flt.selector, flt.start_ts, flt.end_ts, login_ip,
        None, now,
    )  # fmt: skip


def _not_found() -> ApiError:
    return ApiError(Errno.CDR_NOT_FOUND, "no CDR in range (empty_download=errno)")


class _Audited(Exception):
    """A refusal already audited in the redeem's transaction (not to be audited again)."""

    def __init__(self, refusal: ApiError) -> None:
        self.refusal = refusal


# The bytes a download sends before its lines: ``_body_size``'s, and the one statement's that
# counts a small download's bytes on the server (``storage/session_spend.py``).
_HEADER_SIZE = len(CSV_HEADER_BYTES)


def _body_size(page: Page) -> int:
    """The bytes ``Export`` sends for a one-page result (header and lines, UTF-8)."""
    return _HEADER_SIZE + len(page.body)


def _random_text(random: str | None) -> str | None:
    """A random as the client sent it, normalised; None when it cannot be one of ours (then
    it was never issued: 20020 once the token is checked)."""
    if random is None or not random.strip():
        raise ApiError(Errno.PARAMETER_EMPTY, "no random")
    return randoms.normalised(random)


class DownloadService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Clock,
        auth: AuthService,
        audit: DownloadAudit,
        slots: ExportSlots,
    ) -> None:
        self.db = db
        self.settings = settings
        self.auth = auth
        self.audit = audit
        self.slots = slots
        self._random_signer: RandomSigner | None = None
        self._key_reread_ms: int | None = None  # the last re-read, on the service's clock
        self._key_reread_lock = threading.Lock()
        # The monthly partitions a small download's day on the loop is read from.
        self._day_months = day_months.DayMonths()

    def _signer(self) -> RandomSigner:
        """The signer under the database's key, read (or created) once per process.

        In a durable write of its own, outside any group commit: a key is kept only once it
        is committed, so no process ever signs with a key a failed commit took back. That
        write may wait for SQLite's lock, which the event loop must not: there it raises
        WriterBusy (called before the request's first statement), and ``run_on_loop``'s
        caller runs the request in a thread, once in a process's life."""
        if self._random_signer is None:
            if self.db.in_loop_call():
                raise WriterBusy
            with self.db.write(durable=True) as conn:
                key = server_keys.get_or_create(conn, RANDOM_KEY)
            self._random_signer = RandomSigner(key)
        return self._random_signer

    def _reread_key(self, conn: Connection, now: int) -> RandomSigner | None:
        """The signer under the key stored now, read in ``conn``'s transaction, when it
        differs from this process's; None when it does not, or when the last re-read is less
        than ``KEY_REREAD_SECONDS`` old. A missing row is left missing: the next process that
        needs a key creates it, and the others adopt it here on their first refusal."""
        with self._key_reread_lock:
            last = self._key_reread_ms
            # A clock set back (now < last) allows a read at once rather than none for long.
            if last is not None and last <= now < last + KEY_REREAD_SECONDS * 1000:
                return None
            self._key_reread_ms = now
        key = server_keys.read(conn, RANDOM_KEY)
        current = self._random_signer
        if key is None or (current is not None and hmac.compare_digest(key, current.key)):
            return None
        # Another process committed it (this transaction cannot see an uncommitted row), so
        # it stays the database's key whether this transaction commits or not.
        self._random_signer = RandomSigner(key)
        return self._random_signer

    def runs_on_loop(self, ask: DownloadRequest) -> bool:
        """Whether ``open_download`` of ``ask`` is cheap enough for the event loop
        (``Database.run_on_loop``): a short range, read whole in the redeem's transaction,
        where one small write transaction is the whole database work."""
        if not self.db.writes_on_loop:
            return False
        try:
            flt = parse_filter(ask.selector, ask.starttime, ask.endtime)
        except ApiError:
            return True  # refused before any read: cheap too
        return flt.end_ts - flt.start_ts < WHOLE_RESULT_SPAN

    def issue_random(self, ask: RandomRequest) -> str:
        """``cdr/get_random``: the random for this token, filter and client (or allowedip).

        Signed, and nothing written but the token's sliding mark when due, for a caller at
        the token's login address without ``allowedip`` (``services/signed_randoms.py``);
        stored in ``cdr_random`` otherwise."""
        token_hash = token_hash_of(ask.token)
        try:
            flt = parse_filter(ask.selector, ask.starttime, ask.endtime)
            allowed = parse_allowed_ip(ask.allowedip)
        except ApiError as exc:
            refused: ApiError | None = exc
        else:
            refused = None
        expires_ms = self.auth.now_ms() + self.settings.random_ttl_seconds * 1000
        if refused is None and allowed is None:
            signer = self._signer()  # first: it may hand the request over to a thread
            session = self.auth.authenticate_hash(token_hash)
            if session.login_ip == ask.client_ip:
                return signer.issue(
                    expires_ms, session.token_hash, flt.selector, flt.start_ts, flt.end_ts
                )
        random = randoms.new_random(expires_ms)
        # One write transaction for the whole request. A token errno comes first; a refused
        # filter still commits the token's sliding mark (it is raised after the commit).
        with self.db.write() as conn:
            session = self.auth.authenticate_in(conn, token_hash)
            if refused is None:
                randoms.create(
                    conn,
                    random_hash=random.random_hash,
                    token_hash=session.token_hash,
                    selector=flt.selector,
                    start_ts=flt.start_ts,
                    end_ts=flt.end_ts,
                    client_ip=ask.client_ip,
                    allowed_ip=allowed,
                    expires_ms=random.expires_ms,
                )
        if refused is not None:
            raise refused
        return random.text

    def open_download(self, ask: DownloadRequest) -> Export:
        """``cdr/download``: spend the random and start the export, or raise its errno.

        Every attempt is audited: a refused one here, a started one by ``Export.finish``
        (a small one in the redeem's transaction, corrected by ``finish`` if it ends badly).
        The caller must call ``finish`` on the returned export, however the response ends.
        """
        attempt = self.audit.begin(
            ask.client_ip, ask.api_version, ask.selector, ask.starttime, ask.endtime
        )
        try:
            token_hash = token_hash_of(ask.token)
            try:
                flt = parse_filter(ask.selector, ask.starttime, ask.endtime)
                random = _random_text(ask.random)
            except ApiError as exc:
                refused: ApiError | None = exc
            else:
                refused = None
            # Before the write transaction: the key's first read is a write of its own.
            signer = self._signer() if refused is None and random is not None else None
            if refused is None and random is not None and signer is not None:
                small = self._small_signed(ask, attempt, token_hash, flt, random, signer)
                if small is not None:
                    return small
            # Authenticate and redeem in one write transaction; refusals are raised after
            # the commit, so the token's sliding mark is kept as for any other request.
            whole: Page | None = None
            written: tuple[int, DownloadAttempt] | None = None  # the record's id, the record
            try:
                with self.db.write() as conn:
                    session = self.auth.authenticate_in(conn, token_hash)
                    attempt = attempt.by(session.account)
                    if refused is None:
                        refused = self._redeem(conn, session, flt, random, ask.client_ip, signer)
                    # Taken in the redeem's transaction: no CDR committed before it lies beyond.
                    position = self.db.wal_position(conn) if refused is None else None
                    # None: no replicas, every read is on this primary, so a small result can
                    # be read here and its audit record written in this same transaction.
                    if refused is None and position is None:
                        whole = self._whole_result(conn, flt.query(session.scope))
                    if (
                        whole is not None
                        and whole.empty
                        and self.settings.empty_download == "errno"
                    ):
                        refused, whole = _not_found(), None
                    if refused is not None:
                        # Its outcome is known: audited in this transaction, no second write.
                        written = self.audit.failed_in(conn, attempt, refused.errno)
                    if whole is not None:
                        written = self.audit.record_in(
                            conn, attempt.ended("ok", whole.rows, _body_size(whole))
                        )
            except StorageUnavailable as exc:
                # On PostgreSQL its COMMIT may have landed, the record with it, its answer lost
                # (SQLite's commit is this process's own: one that raised did not commit).
                if written is None or self.db.is_sqlite:
                    raise
                raise SpendLost(exc, written[1], record_id=written[0]) from exc
            if refused is not None:
                # Counted now that its transaction has committed (on the loop, once the group
                # commit it joined has): a failed commit audits and counts the attempt again.
                assert written is not None  # written with the refusal, above
                self.audit.count(written[1])
                raise _Audited(refused)
            if whole is not None:
                assert written is not None  # written with the whole result, above
                return self._whole_export(whole, flt, *written)
            # Read-your-writes: the export reads where every CDR committed before the random
            # was spent is visible (a replica that has replayed that far, else the primary).
            source = self.db.for_export(position)
            page = first_page(source, flt.query(session.scope), self.settings.csv_safe)
            if page.empty and self.settings.empty_download == "errno":
                raise _not_found()
            # Only a download that must go back to the database for more pages takes a slot:
            # one whose whole result is in hand costs no more than any other answer.
            slot = None if page.last else self.slots.acquire(session.account)
        except _Audited as audited:
            raise audited.refusal from None
        except CommitFailed:
            raise  # the group commit with its audit record failed: the caller audits it again
        except ApiError as exc:
            self.audit.failed(attempt, exc.errno)
            raise
        except SpendLost as lost:
            self.audit.spend_lost(lost)  # audited once, whether its write committed or not
            raise
        except StorageUnavailable:
            self.audit.failed(attempt, Errno.APISRV_DOWN)
            raise
        return Export(
            source, page, flt.filename(), self.settings.csv_safe,
            on_finish=lambda outcome, rows, size: self._finished(slot, attempt, outcome, rows, size),
        )  # fmt: skip

    def _small_signed(
        self, ask: DownloadRequest, attempt: DownloadAttempt, token_hash: str, flt: CdrFilter,
        random: str, signer: RandomSigner,
    ) -> Export | None:  # fmt: skip
        """``open_download``'s common case, a signed random spent from the token's login
        address with a result of one page, in fewer statements: the token's read, the day's
        read, then the spend and its audit record (``storage/signed_spend.py``). None, with
        nothing written, for any other case (a stored random, a refusal, the token's sliding
        mark due, a longer result, a random spent meanwhile): then the write transaction runs
        as before and finds the errno.

        On PostgreSQL without a transaction: two statements in autocommit, the token's read
        with the day's (``storage/session_day.py``; a scoped account's day is read apart), then
        the writes, where the write transaction took six round trips; the day is read before
        the spend in a snapshot of its own, so a CDR committed before the download was asked
        for is in it, as in the transaction's. On SQLite on the event loop: four statements in
        the loop's group commit without a SAVEPOINT around them (``Database.writes_last``),
        the reads first, the two writes last, and nothing raised after them."""
        key = _signed_key(random, token_hash, flt, signer)
        if key is None:
            return None
        statements = self.db.autocommit()
        autocommit = statements is not None
        if statements is None:
            statements = self.db.writes_last()
        if statements is None:
            return None
        spending: tuple[randoms.RandomRow, DownloadAttempt] | None = None
        try:
            with statements as conn:
                now = self.auth.now_ms()
                if key[0] <= now:
                    return None
                read = None
                if self.db.dialect == "postgresql" and flt.selector != ALL:
                    # The token and, when it can answer this download, the day's lines in one
                    # statement (``storage/session_day.py``); on SQLite the two reads cost no round
                    # trip, so the token is read here and the day below, once the token allows it.
                    fresh_after = now - TOUCH_EVERY_MS
                    read = session_day.read(
                        conn, token_hash, fresh_after, ask.client_ip, flt.query(), PAGE_ROWS
                    )
                seen = tokens.last_seen(conn, token_hash) if read is None else read.seen
                # A dead token raises its errno here, as ``authenticate_in`` does.
                session = self._fresh_session(seen, token_hash, now, ask.client_ip)
                if session is None:
                    return None
                if read is None or session.scope is not None:
                    whole = self._whole_result(conn, flt.query(session.scope))
                else:  # read with the token (None: more than a page)
                    whole = None if read.day is None else self._page(flt.query(), read.day)
                if whole is None:
                    return None
                spent, recorded, refusal = self._spend_of(key, flt, session, now, attempt, whole)
                if autocommit:  # one statement of its own: it may commit, its answer lost
                    spending = (spent, recorded)
                # The writes, last: on SQLite nothing may raise after them inside the block.
                record_id = self.audit.spent_in(conn, spent, recorded)
                if record_id is None:
                    return None
        except StorageUnavailable as exc:
            if spending is None:
                raise
            raise SpendLost(exc, spending[1], spent=spending[0]) from exc
        if refusal is not None:
            raise _Audited(refusal)
        return self._whole_export(whole, flt, record_id, recorded)

    async def issue_random_on_loop(self, ask: RandomRequest) -> str | None:
        """``issue_random``'s common case on the event loop, its one statement (the token's
        read) through asyncpg (``storage/pg_loop.py``): a signed random, for a caller at the
        token's login address without ``allowedip``, whose sliding mark is not due. None, with
        nothing written, for any other case (and before this process's key is read): then
        ``issue_random`` answers, in a thread. A dead token's errno is raised here, as there."""
        statements = self.db.loop_statements
        signer = self._random_signer
        if statements is None or signer is None:
            return None
        try:
            flt = parse_filter(ask.selector, ask.starttime, ask.endtime)
            if parse_allowed_ip(ask.allowedip) is not None:
                return None
        except ApiError:
            return None  # refused: ``issue_random`` raises it after the token's sliding mark
        token_hash = token_hash_of(ask.token)
        now = self.auth.now_ms()
        row = await statements.row(tokens.last_seen_statement(), {"hash": token_hash})
        seen = None if row is None else tokens.seen_of(row)
        session = self._fresh_session(seen, token_hash, now, ask.client_ip)
        if session is None:
            return None
        expires_ms = now + self.settings.random_ttl_seconds * 1000
        return signer.issue(expires_ms, session.token_hash, flt.selector, flt.start_ts, flt.end_ts)

    async def small_download_on_loop(self, ask: DownloadRequest) -> Export | None:
        """``open_download``'s common case (``_small_signed``: a signed random spent from the
        token's login address, one extension list's day of at most a page) on the event loop,
        through asyncpg (``storage/pg_loop.py``): one statement reads the token with the day
        and, when the download can be answered from them, spends the random and writes its
        audit record (``storage/session_spend.py``). Where it spends nothing but the download
        may still be answered here (``csv_safe``, whose lines' bytes the server cannot count,
        reads with ``session_day``'s statement instead; an empty day refused), the two
        statements of before answer: the day read, then the spend. None, with nothing
        written, for any other case, a refusal included (a dead token, a random spent
        meanwhile): then ``open_download`` answers it and audits it, in a thread, as before.
        Where ``autocommit()`` is None (SQLite, replicas) it is always None.

        ``StorageUnavailable`` is raised as it is: the caller audits the attempt (as
        ``commit_failed`` does) in a thread. The caller also runs this to its end when its
        request is cancelled (``api/threads.py``'s ``to_completion``): a spend is never cut."""
        statements = self.db.loop_autocommit()
        signer = self._random_signer
        if statements is None or signer is None:
            return None
        try:
            token_hash = token_hash_of(ask.token)
            flt = parse_filter(ask.selector, ask.starttime, ask.endtime)
            random = _random_text(ask.random)
        except ApiError:
            return None
        if random is None or flt.selector == ALL:  # ``all``: the day is not read with the token
            return None
        key = _signed_key(random, token_hash, flt, signer)
        now = self.auth.now_ms()
        if key is None or key[0] <= now:
            return None
        attempt = self.audit.begin(
            ask.client_ip, ask.api_version, ask.selector, ask.starttime, ask.endtime
        )
        query = flt.query()
        fresh_after = now - TOUCH_EVERY_MS
        # The day is read from its month's partition where it can be (``day_months``).
        months = self._day_months
        if self.settings.csv_safe:
            # The lines are rewritten before they are sent: their bytes are not the stored
            # ones, so the server cannot count them; the day is read, then spent.
            row = await months.row(
                statements,
                query,
                partial(session_day.statement, query),
                session_day.params(token_hash, fresh_after, ask.client_ip, query, PAGE_ROWS),
            )
        else:
            spent_row = _spent_row(key, token_hash, flt, ask.client_ip, now)
            sent = attempt.ended("ok", 0, 0)  # its account, rows and bytes the statement's
            try:
                row = await months.row(
                    statements,
                    query,
                    partial(session_spend.statement, query),
                    self._spend_params(token_hash, fresh_after, now, ask, query, spent_row, sent),
                    writes=True,
                )
            except StorageUnavailable as exc:
                raise SpendLost(exc, sent, spent=spent_row) from exc  # it may have committed
            spent_now = session_spend.spent_of(row)
            if spent_now is not None:
                assert row is not None
                return self._spent_with_day(flt, query, row[0], row[4], attempt, spent_now)
        # Nothing spent (a token unknown, due its mark, elsewhere or scoped; a long day; an
        # empty one refused; the random spent already): as the two statements answered.
        read = session_day.answer(row, PAGE_ROWS)
        if read.seen is None or read.day is None:
            return None  # a token unknown, due its mark, elsewhere or scoped; or a long day
        try:
            session = self._fresh_session(read.seen, token_hash, now, ask.client_ip)
        except ApiError:
            return None  # expired: refused and audited by ``open_download``
        if session is None:
            return None
        whole = self._page(query, read.day)
        spent, recorded, refusal = self._spend_of(key, flt, session, now, attempt, whole)
        try:
            record_id = await self.audit.spent_on_loop(statements, spent, recorded)
        except StorageUnavailable as exc:
            raise SpendLost(exc, recorded, spent=spent) from exc  # it may have committed
        if record_id is None:
            return None  # spent meanwhile: ``open_download`` finds and audits its errno
        if refusal is not None:
            raise refusal  # audited with the spend
        return self._whole_export(whole, flt, record_id, recorded)

    def _spend_params(
        self, token_hash: str, fresh_after: int, now: int, ask: DownloadRequest,
        query: CdrQuery, spent: randoms.RandomRow, sent: DownloadAttempt,
    ) -> dict[str, Any]:  # fmt: skip
        """``session_spend``'s values for ``small_download_on_loop``: what ``_fresh_session``
        and ``_spend_of`` check and write, as the statement checks and writes them (the random
        ``spent`` from the token's login address, which the statement checks is the caller's;
        the record ``sent``, whose account, rows and bytes the statement computes)."""
        # An empty result where ``empty_download`` is ``errno`` is refused and audited so by
        # the two statements' path: the one statement spends only a day with a line then.
        least = 1 if self.settings.empty_download == "errno" else 0
        idle_ms = self.settings.token_idle_seconds * 1000
        return session_spend.params(
            token_hash, fresh_after, now - idle_ms, ask.client_ip, query, PAGE_ROWS, least,
            spent, vars(sent), _HEADER_SIZE,
        )  # fmt: skip

    def _spent_with_day(
        self, flt: CdrFilter, query: CdrQuery, account: str, day: list[str],
        attempt: DownloadAttempt, spent: session_spend.Spent,
    ) -> Export:  # fmt: skip
        """The export of a download whose random ``session_spend``'s statement spent, with its
        record as written (``spent``: the rows and bytes the server counted, so that ``settle``
        corrects the record if what is sent differs)."""
        whole = self._page(query, day)
        recorded = attempt.by(account).ended("ok", spent.rows, spent.bytes)
        return self._whole_export(whole, flt, spent.record_id, recorded)

    def _fresh_session(
        self, seen: tokens.Seen | None, token_hash: str, now: int, client_ip: str
    ) -> Session | None:
        """The session of a token read as ``tokens.last_seen`` reads it, when a request may be
        answered without a write: its sliding mark is not due, and it comes from the token's
        login address. None otherwise (the write transaction's path answers it); a dead
        token's errno is raised, as ``authenticate_in`` raises it."""
        session, touch_due = self.auth.session_of(seen, token_hash, now)
        if touch_due or client_ip != session.login_ip:
            return None
        return session

    def _spend_of(
        self, key: tuple[int, str], flt: CdrFilter, session: Session, now: int,
        attempt: DownloadAttempt, whole: Page,
    ) -> tuple[randoms.RandomRow, DownloadAttempt, ApiError | None]:  # fmt: skip
        """A signed random's spend (``key``: its expiry and hash), with the audit record
        written with it, and the refusal to raise once it is written (an empty result where
        ``empty_download`` is ``errno``), for ``_small_signed`` and ``small_download_on_loop``."""
        spent = _spent_row(key, session.token_hash, flt, session.login_ip, now)
        attempt = attempt.by(session.account)
        if whole.empty and self.settings.empty_download == "errno":
            refusal = _not_found()
            return spent, attempt.but(outcome="failed", errno=refusal.errno.value), refusal
        return spent, attempt.ended("ok", whole.rows, _body_size(whole)), None

    def _whole_export(
        self, whole: Page, flt: CdrFilter, record_id: int, recorded: DownloadAttempt
    ) -> Export:
        """The export of a result read whole, audited as ``recorded`` (``record_id``) before
        it is sent: ``settle`` corrects the record if the send ends otherwise."""
        return Export(
            self.db, whole, flt.filename(), self.settings.csv_safe, recorded=True,
            on_finish=lambda outcome, rows, size: self.audit.settle(
                record_id, recorded, outcome, rows, size
            ),
        )  # fmt: skip

    def commit_failed(self, ask: DownloadRequest, export: Export | None = None) -> None:
        """``open_download(ask)`` ran on the loop and the group commit holding its writes failed
        (``Database.run_on_loop``; whether its request hears 30003 or was cancelled meanwhile),
        or ``small_download_on_loop``'s statements failed (``spend_failed``, where a lost spend
        was not found committed): its audit record went with them, or was never written, so
        the attempt is audited again, as failed with 30003 (its account, read in that
        transaction, is not known). ``export``: what ``open_download`` returned, if it did. A
        paged one, audited when it ends and holding a slot, is finished ``failed`` (its slot
        released, its record written once, with its account); a whole one's record went with
        the commit."""
        if export is not None and not export.recorded:
            export.finish("failed")
            return
        attempt = self.audit.begin(
            ask.client_ip, ask.api_version, ask.selector, ask.starttime, ask.endtime
        )
        self.audit.failed(attempt, Errno.APISRV_DOWN)

    def spend_failed(self, ask: DownloadRequest, failure: StorageUnavailable) -> None:
        """``small_download_on_loop(ask)``'s statements failed (``failure``): audited failed
        30003, once. A spend whose connection was lost (``SpendLost``), committed or not, by
        ``DownloadAudit.spend_lost``; any other failure as ``commit_failed`` audits it."""
        if isinstance(failure, SpendLost):
            self.audit.spend_lost(failure)
        else:
            self.commit_failed(ask)

    def cut_undecided(self, ask: DownloadRequest, outcome: Outcome) -> None:
        """``ask``'s request was cancelled (``outcome``: the drain's ``cut``) before any answer
        to it was decided: nothing spent, nothing written, nothing sent (``small_download_on_
        loop`` returned None, its thread's path never run). Audited once, so (its account,
        never read, is not known)."""
        attempt = self.audit.begin(
            ask.client_ip, ask.api_version, ask.selector, ask.starttime, ask.endtime
        )
        self.audit.record(attempt.ended(outcome, 0, 0))

    def _whole_result(self, conn: Connection, query: CdrQuery) -> Page | None:
        """The whole result of a short range when it fits one page (maybe empty), read on the
        redeem's connection; None when it may not (then it is paged after the commit as usual).

        Read while this process's writers queue behind the redeem, so the cost is bounded:
        at most a day (an extension's day sorts a few hundred rows) and one page of rows
        (``cdrs.read_whole``: the sort holds the day's matching rows for the read's moment)."""
        if query.end_ts - query.start_ts >= WHOLE_RESULT_SPAN:
            return None
        lines = cdrs.read_whole(conn, query, PAGE_ROWS)
        return None if lines is None else self._page(query, lines)

    def _page(self, query: CdrQuery, lines: list[str]) -> Page:
        """The one page of a result read whole: ``lines``, all of ``query``'s."""
        return Page.of_lines(query, lines, Cursor(query.end_ts + 1, 1), self.settings.csv_safe)

    def _finished(
        self, slot: ExportSlots.Slot | None, attempt: DownloadAttempt, outcome: Outcome, rows: int,
        size: int,
    ) -> None:  # fmt: skip
        if slot is not None:
            slot.release()
        ended = attempt.ended(outcome, rows, size)
        if outcome == "failed":
            self.audit.failed(ended, Errno.APISRV_DOWN)
        else:
            self.audit.record(ended)

    def _redeem(
        self,
        conn: Connection,
        session: Session,
        flt: CdrFilter,
        random: str | None,
        client_ip: str,
        signer: RandomSigner | None,
    ) -> ApiError | None:
        """Spend the random for this exact request; None, or the refusal that says why not."""
        random_key = None if random is None else randoms.key_of(random)
        if random is None or random_key is None or signer is None:
            return ApiError(Errno.CDR_RANDOM_INVALID, "random never issued or purged")
        now = self.auth.now_ms()
        if signer.signed(random, session.token_hash, flt.selector, flt.start_ts, flt.end_ts):
            return _spend_signed(conn, session, flt, random_key, client_ip, now)
        # Not signed for this token and filter: a stored random, or none of ours for them.
        # The conditional UPDATE is what makes the random single-use under races; it holds
        # every rule below, so only a refused download reads the row to learn its errno.
        spend = randoms.Spend(
            *random_key, session.token_hash, flt.selector, flt.start_ts, flt.end_ts, client_ip
        )
        if randoms.redeem(conn, spend, now):
            return None
        row = randoms.find(conn, *random_key)
        if row is None:
            # Signed under a key that replaced this process's, maybe: checked again under it.
            reread = self._reread_key(conn, now)
            if reread is not None and reread.signed(
                random, session.token_hash, flt.selector, flt.start_ts, flt.end_ts
            ):
                return _spend_signed(conn, session, flt, random_key, client_ip, now)
            # A signed random whose tag did not hold lands here too: which of its fields
            # differ cannot be told.
            why = (
                "random never issued or purged, or its token, extid/number or times "
                "differ from those given to get_random"
            )
            return ApiError(Errno.CDR_RANDOM_INVALID, why)
        if not hmac.compare_digest(row.token_hash, session.token_hash):
            return ApiError(Errno.CDR_RANDOM_INVALID, "random issued to another token")
        if (row.selector, row.start_ts, row.end_ts) != (flt.selector, flt.start_ts, flt.end_ts):
            why = "extid/number or times differ from those given to get_random"
            return ApiError(Errno.CDR_RANDOM_INVALID, why)
        if row.used_ms is not None:
            return ApiError(Errno.CDR_RANDOM_INVALID, _USED)
        if row.expires_ms <= now:
            return ApiError(Errno.CDR_RANDOM_INVALID, _EXPIRED)
        if client_ip not in (row.client_ip, row.allowed_ip):
            return ApiError(Errno.ALLOWEDIP_ERROR, _WRONG_ADDRESS)
        # Every rule holds now, but did not when the UPDATE ran: another download spent it.
        return ApiError(Errno.CDR_RANDOM_INVALID, "random used by a concurrent download")

    def purge_spent(self) -> int:
        with self.db.write() as conn:
            return randoms.purge(conn, self.auth.now_ms())


def _signed_key(
    random: str, token_hash: str, flt: CdrFilter, signer: RandomSigner
) -> tuple[int, str] | None:
    """A random's expiry and hash when it is one this server signed for this token and filter
    and the filter spans less than a day (``_small_signed``'s way); None otherwise."""
    if flt.end_ts - flt.start_ts >= WHOLE_RESULT_SPAN:
        return None
    key = randoms.key_of(random)
    if key is None or not signer.signed(random, token_hash, flt.selector, flt.start_ts, flt.end_ts):
        return None
    return key
