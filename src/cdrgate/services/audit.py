"""The download audit: when, who, from where, which filter, how much, and how it ended.

Every download attempt is recorded, refused ones included. The record is written once, when
the outcome is known (after the last byte for a successful download), with one INSERT, so a
download costs one extra small write and nothing per row.

One exception, for speed: a download whose whole result is in hand when its random is spent
(a small one, see ``DownloadService``) is recorded as ``ok`` with its row and byte counts in
the redeem's own transaction (``record_in``), or on PostgreSQL in the signed random's spend,
one statement (``spent_in``; on the event loop the statement that reads the token and the
day too, its rows and bytes counted by the server: ``storage/session_spend.py``, run by
``DownloadService.small_download_on_loop``), and corrected by ``settle`` if the send then
ends otherwise (aborted, cut). A flow thus costs one write transaction less. The price: if
the process dies while sending those few kilobytes, the record says ``ok`` for a body the
client may not have received whole (before, the record was lost entirely).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal

from sqlalchemy import Connection

from cdrgate import metrics
from cdrgate.clock import Clock
from cdrgate.errors import Errno, StorageUnavailable
from cdrgate.settings import Settings
from cdrgate.storage import audit, signed_spend
from cdrgate.storage.db import Database, WriterBusy
from cdrgate.storage.pg_loop import LoopStatements
from cdrgate.storage.randoms import RandomRow

log = logging.getLogger("cdrgate.audit")


class SpendLost(StorageUnavailable):
    """A PostgreSQL write holding a download's audit record ``attempt`` (as sent) whose
    connection failed before its answer came: the server may have committed it, the record
    with it. The client hears 30003 (its random may be spent); ``DownloadAudit.spend_lost``
    audits the attempt once, whichever it was. The record is found by ``record_id`` where
    the write returned it before its COMMIT (a write transaction: ``open_download``'s), else
    by the random ``spent`` (its row as sent) that one statement spent with it, in autocommit,
    the id in the answer lost (``storage/signed_spend.py``, ``storage/session_spend.py``)."""

    def __init__(
        self, failure: StorageUnavailable, attempt: DownloadAttempt, *,
        spent: RandomRow | None = None, record_id: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(str(failure))
        assert (spent is None) != (record_id is None), "found by one of them"
        self.attempt = attempt
        self.spent = spent
        self.record_id = record_id


# ok: sent whole; failed: refused (errno); aborted: the client went away mid-stream;
# cut: the server ended it (a client reading too slowly, or shutdown at the drain deadline).
Outcome = Literal["ok", "failed", "aborted", "cut"]
Kind = Literal["cdr", "recording"]
FIELD_LIMIT = 256  # filters come from the network: keep hostile ones from bloating the log
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class DownloadAttempt:
    """One ``download_audit`` record: its fields are the table's columns, stored as
    ``vars(attempt)`` (flat values: ``asdict``'s deep copy showed in a small flow's profile)."""

    at_ms: int
    client_ip: str
    api_version: str
    selector: str
    starttime: str
    endtime: str
    account: str | None = None
    rows: int = 0
    bytes: int = 0
    outcome: Outcome = "failed"
    errno: str | None = None
    kind: Kind = "cdr"

    def by(self, account: str) -> DownloadAttempt:
        return self.but(account=account)

    def ended(self, outcome: Outcome, rows: int, size: int) -> DownloadAttempt:
        return self.but(outcome=outcome, rows=rows, bytes=size)

    def but(self, **changes: Any) -> DownloadAttempt:
        """A copy with ``changes`` (field names, unchecked): ``dataclasses.replace`` runs
        ``__init__`` over every field again, a few microseconds each time, and a small flow
        made four copies; the fields are flat values, so copying the dict is the whole copy."""
        copy = object.__new__(DownloadAttempt)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


# What ``begin`` copies (with ``but``) instead of running the frozen class's ``__init__``: it
# sets the twelve fields one ``object.__setattr__`` at a time, on every download.
_BLANK = DownloadAttempt(0, "", "", "", "", "")


class DownloadAudit:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    def begin(
        self, client_ip: str, api_version: str, selector: str | None, start: str | None = None,
        end: str | None = None, kind: Kind = "cdr",
    ) -> DownloadAttempt:  # fmt: skip
        return _BLANK.but(
            at_ms=int(self.clock() * 1000),
            client_ip=client_ip,
            api_version=api_version,
            selector=_clip(selector),
            starttime=_clip(start),
            endtime=_clip(end),
            kind=kind,
        )

    def failed(self, attempt: DownloadAttempt, errno: Errno) -> None:
        self.record(attempt.but(outcome="failed", errno=errno.value))

    def failed_in(
        self, conn: Connection, attempt: DownloadAttempt, errno: Errno
    ) -> tuple[int, DownloadAttempt]:
        """``failed`` in the caller's transaction (a refusal found in it: its outcome is known).
        Returns the record's id and the record written, for the caller to ``count`` once its
        transaction has committed (if the commit fails, the attempt is audited, and counted,
        as failed 30003: counting it here as well made it two), or to have it corrected if
        that commit's answer is lost (``SpendLost``)."""
        refused = attempt.but(outcome="failed", errno=errno.value)
        return audit.insert(conn, vars(refused)), refused

    def count(self, attempt: DownloadAttempt) -> None:
        """Count ``attempt`` in the metrics once its record is kept: at once, or inside
        ``Database.run_on_loop``'s call when its group commit commits (``Database.on_commit``;
        a failed commit audits and counts the attempt again, as ``commit_failed``)."""
        self.db.on_commit(
            partial(metrics.record_download, attempt.kind, attempt.outcome, attempt.rows,
                    attempt.bytes)
        )  # fmt: skip

    def record_in(self, conn: Connection, attempt: DownloadAttempt) -> tuple[int, DownloadAttempt]:
        """Write ``attempt`` in the caller's transaction, before the download is sent (see
        the module's docstring); returns the record's id (for ``settle``) and the record, as
        ``failed_in`` does."""
        return audit.insert(conn, vars(attempt)), attempt

    def spent_in(self, conn: Connection, spent: RandomRow, attempt: DownloadAttempt) -> int | None:
        """Spend a signed random and write ``attempt`` (its outcome known: ``ok`` as
        ``record_in`` writes it, or ``failed``) in one statement (``storage/signed_spend.py``);
        the record's id, or None when the random was spent already (nothing is written)."""
        return self._counted(signed_spend.spend_audited(conn, spent, vars(attempt)), attempt)

    async def spent_on_loop(
        self, statements: LoopStatements, spent: RandomRow, attempt: DownloadAttempt
    ) -> int | None:
        """``spent_in``, its one statement run on the event loop (``storage/pg_loop.py``)."""
        row = await statements.row(
            signed_spend.statement(), signed_spend.params(spent, vars(attempt)), writes=True
        )
        return self._counted(None if row is None else int(row[0]), attempt)

    def _counted(self, record_id: int | None, attempt: DownloadAttempt) -> int | None:
        """A spend's record id (None: the random was spent already, nothing written); a failed
        attempt written with it is counted in the metrics once kept, as it has no export to
        end (an ``ok`` one is counted by ``settle``)."""
        if record_id is not None and attempt.outcome == "failed":
            self.count(attempt)
        return record_id

    def spend_lost(self, lost: SpendLost) -> None:
        """Audit once, as failed 30003 with nothing sent (what the client heard and got), an
        attempt whose write lost its answer (``lost``), in one transaction on a new connection:
        its record corrected where that write committed, else the failed record written
        (``audit.write_under`` by the record's id, one statement; ``audit.fail_spent`` by the
        random's spend, then the insert; each waits, bounded, for a lost write still running).
        Counted once. If that transaction fails too (the database still unreachable, or that
        wait run out), nothing more is written and the log names the attempt: its record,
        where the lost write committed, still says what it was to send (docs/storage.md)."""
        failed = lost.attempt.but(outcome="failed", errno=Errno.APISRV_DOWN.value, rows=0,
                                  bytes=0)  # fmt: skip
        try:
            with self.db.write() as conn:
                if lost.record_id is not None:
                    audit.write_under(conn, lost.record_id, vars(failed))
                else:
                    assert lost.spent is not None  # one or the other: ``SpendLost``
                    if not audit.fail_spent(conn, lost.spent, vars(lost.attempt), vars(failed)):
                        audit.insert(conn, vars(failed))
        except Exception as exc:
            # Its class only: a driver's message may hold the statement's parameters.
            log.error(
                "could not audit a download whose write lost its answer (%s); if that write "
                "committed, its record stays as sent: %s", type(exc).__name__,
                _summary(lost.attempt),
            )  # fmt: skip
        self.count(failed)

    def settle(
        self, row_id: int, recorded: DownloadAttempt, outcome: Outcome, rows: int, size: int
    ) -> None:
        """The download recorded by ``record_in`` as ``recorded`` has ended: ``outcome``,
        ``rows`` and ``size`` sent. Nothing to write (nor to copy) when that is as recorded."""
        metrics.record_download(recorded.kind, outcome, rows, size)
        if (outcome, rows, size) == (recorded.outcome, recorded.rows, recorded.bytes):
            return
        ended = recorded.ended(outcome, rows, size)
        try:
            with self.db.write() as conn:
                audit.settle(conn, row_id, ended.outcome, ended.rows, ended.bytes)
        except Exception:
            log.exception("could not correct download audit %s", _summary(ended))

    def record(self, attempt: DownloadAttempt) -> None:
        record_id: int | None = None  # once its insert has returned it
        try:
            with self.db.write() as conn:
                record_id = audit.insert(conn, vars(attempt))
        except WriterBusy:
            raise  # nothing written: the caller runs again in a thread (Database.run_on_loop)
        except Exception as exc:
            if isinstance(exc, StorageUnavailable) and not self.db.is_sqlite:
                self._record_again(attempt, record_id, exc)
            else:
                # The answer to the client must not depend on the audit write; the log keeps it.
                log.exception("could not record download audit %s", _summary(attempt))
        # Counted once, whether its record was written or not; on the loop once the group
        # commit holding it has committed (if that fails, the attempt is audited again).
        self.count(attempt)

    def _record_again(
        self, attempt: DownloadAttempt, record_id: int | None, failure: StorageUnavailable
    ) -> None:
        """``record``'s PostgreSQL write failed (``failure``: its connection lost, a backend
        restarted or killed, a network blip): written once more, in a new transaction on a
        new connection. Where the insert had its id, its COMMIT may have landed all the same:
        the record goes under that id (``audit.write_under``, which waits, bounded, for a
        COMMIT still on its way), so it is never kept twice; where it had none, nothing was
        committed. A database still down fails this too: the log names the attempt."""
        log.warning(
            "could not record download audit (%s): writing it again on a new connection",
            type(failure).__name__,
        )
        try:
            with self.db.write() as conn:
                if record_id is None:
                    audit.insert(conn, vars(attempt))
                else:
                    audit.write_under(conn, record_id, vars(attempt))
        except Exception as exc:
            # Classes only: a driver's message may hold the statement's parameters.
            log.error(
                "could not record download audit, twice (%s, then %s): %s",
                type(failure).__name__, type(exc).__name__, _summary(attempt),
            )  # fmt: skip

    def purge_old(self) -> int:
        if self.settings.audit_days <= 0:
            return 0
        cutoff = int(self.clock() * 1000) - self.settings.audit_days * DAY_MS
        with self.db.write() as conn:
            return audit.purge(conn, cutoff)


def _clip(value: str | None) -> str:
    if value is None:
        return ""
    # PostgreSQL text cannot hold NUL, and a hostile value must still be audited, readably.
    value = value.replace("\x00", "\\0")
    return value if len(value) <= FIELD_LIMIT else value[: FIELD_LIMIT - 1] + "…"


def _summary(attempt: DownloadAttempt) -> dict[str, Any]:
    return {k: v for k, v in asdict(attempt).items() if k in ("at_ms", "client_ip", "outcome")}
