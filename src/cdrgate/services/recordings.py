"""Call recordings over the S-Series API: recording/get_random and recording/download.

The service owns the whole sequence of each call: authentication, validation, issuing and
redeeming the one-time random, opening the file, and the audit record of every download
attempt (refused ones too). Handlers in api/recording.py only parse and answer.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from cdrgate.clock import Clock
from cdrgate.errors import ApiError, CdrgateError, Errno
from cdrgate.passwords import secret_hash
from cdrgate.recfolder import OpenFile, RecordingFolder, content_type, safe_name
from cdrgate.services.auth import AuthService, Session
from cdrgate.services.downloads import parse_allowed_ip
from cdrgate.settings import Settings
from cdrgate.storage import audit, recordings
from cdrgate.storage.db import Database

log = logging.getLogger("cdrgate.recordings")

CHUNK = 256 * 1024
NAME_AUDIT_LIMIT = 256
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class RandomRequest:
    token: str | None
    recording: str | None
    allowed_ip: str | None
    client_ip: str


@dataclass(frozen=True)
class DownloadRequest:
    token: str | None
    recording: str | None
    random: str | None
    client_ip: str
    api_version: str
    range: str | None  # the Range header, as sent


@dataclass
class RecordingBody:
    """A redeemed download: what to answer and the bytes, streamed from the open file."""

    name: str
    content_type: str
    size: int  # of the whole file
    first: int  # first byte sent
    last: int  # last byte sent (inclusive); first > last for an empty file
    partial: bool  # True: answer 206 with Content-Range
    chunks: Iterator[bytes]

    @property
    def length(self) -> int:
        return max(0, self.last - self.first + 1)


class UnsatisfiableRange(CdrgateError):
    """The Range lies past the end of the file (HTTP 416); the random is spent."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable (file of {size} bytes)")
        self.size = size


class RecordingService:
    def __init__(self, db: Database, settings: Settings, clock: Clock, auth: AuthService) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.auth = auth
        self.folder = RecordingFolder(settings.recordings, db) if settings.recordings else None

    def issue_random(self, request: RandomRequest) -> str:
        session = self.auth.authenticate(request.token)
        name = _required(request.recording)
        allowed_ip = parse_allowed_ip(request.allowed_ip)
        self._find(name).stream.close()
        random = secrets.token_hex(16)
        now = self.auth.now_ms()
        with self.db.write() as conn:
            recordings.create_random(
                conn,
                random_hash=secret_hash(random),
                token_hash=session.token_hash,
                recording=name,
                client_ip=request.client_ip,
                allowed_ip=allowed_ip,
                expires_ms=now + self.settings.random_ttl_seconds * 1000,
            )
        return random

    def download(self, request: DownloadRequest) -> RecordingBody:
        """Redeem the random and open the file; every outcome is audited."""
        record = {
            "at_ms": int(self.clock() * 1000),
            "client_ip": request.client_ip,
            "api_version": request.api_version,
            # NUL cannot be stored in PostgreSQL text; a hostile name must still be audited.
            "selector": (request.recording or "")[:NAME_AUDIT_LIMIT].replace("\x00", "\\0"),
            "starttime": "",
            "endtime": "",
            "kind": "recording",
            "account": None,
        }
        try:
            session = self.auth.authenticate(request.token)
            record["account"] = session.account
            opened = self._redeem(session, request)
            body = self._body(opened, request.range)
        except ApiError as exc:
            self._audit(record, "failed", exc.errno, 0)
            raise
        except UnsatisfiableRange:
            self._audit(record, "failed", None, 0)
            raise
        except Exception:
            self._audit(record, "failed", Errno.APISRV_DOWN, 0)
            raise
        body.chunks = self._audited(record, body.chunks)
        return body

    def purge_spent(self) -> int:
        with self.db.write() as conn:
            return recordings.purge_randoms(conn, self.auth.now_ms())

    def _redeem(self, session: Session, request: DownloadRequest) -> OpenFile:
        name = _required(request.recording)
        random = request.random
        if random is None or not random.strip():
            raise ApiError(Errno.PARAMETER_EMPTY, "random is required")
        random_hash = secret_hash(random.strip().lower())
        now = self.auth.now_ms()
        with self.db.read() as conn:
            row = recordings.find_random(conn, random_hash)
        if (
            row is None
            or not hmac.compare_digest(row.token_hash, session.token_hash)
            or row.recording != name
            or row.used_ms is not None
            or row.expires_ms <= now
        ):
            raise ApiError(Errno.RECORDING_RANDOM_INVALID)
        if request.client_ip not in (row.client_ip, row.allowed_ip):
            raise ApiError(Errno.ALLOWEDIP_ERROR)
        # Open before spending: a file that vanished since get_random leaves the random unused.
        opened = self._find(name)
        with self.db.write() as conn:
            won = recordings.redeem_random(conn, random_hash, now)
        if not won:
            opened.stream.close()
            raise ApiError(Errno.RECORDING_RANDOM_INVALID)
        return opened

    def _find(self, name: str) -> OpenFile:
        if self.folder is None:
            raise ApiError(Errno.RECORDING_NOT_FOUND, "no recordings folder configured")
        # Refused before any query: a path is never a name, and PostgreSQL rejects NUL.
        if not safe_name(name):
            raise ApiError(Errno.RECORDING_NOT_FOUND, "not a plain file name")
        with self.db.read() as conn:
            referenced = recordings.is_referenced(conn, name)
        opened = self.folder.open(name) if referenced else None
        if opened is None:
            raise ApiError(Errno.RECORDING_NOT_FOUND)
        return opened

    def _body(self, opened: OpenFile, range_header: str | None) -> RecordingBody:
        size = opened.size
        span = _parse_range(range_header, size)
        if span is None:
            first, last, partial = 0, size - 1, False
        else:
            first, last = span
            partial = True
            if first >= size:
                opened.stream.close()
                raise UnsatisfiableRange(size)
        return RecordingBody(
            name=opened.name,
            content_type=content_type(opened.name),
            size=size,
            first=first,
            last=last,
            partial=partial,
            chunks=_read(opened, first, last),
        )

    def _audited(self, record: dict[str, object], chunks: Iterator[bytes]) -> Iterator[bytes]:
        sent = 0
        completed = False
        try:
            for chunk in chunks:
                sent += len(chunk)
                yield chunk
            completed = True
        finally:
            self._audit(record, "ok" if completed else "aborted", None, sent)

    def _audit(
        self, record: dict[str, object], outcome: str, errno: Errno | None, sent: int
    ) -> None:
        values = {**record, "outcome": outcome, "errno": errno.value if errno else None}
        values.update(rows=1 if outcome == "ok" else 0, bytes=sent)
        try:
            with self.db.write() as conn:
                audit.insert(conn, values)
        except Exception:
            # The answer to the client must not depend on the audit write; the log keeps it.
            log.exception("could not record recording download audit (%s)", outcome)


def _required(value: str | None) -> str:
    if value is None or not value.strip():
        raise ApiError(Errno.PARAMETER_EMPTY, "recording is required")
    return value


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (first, last), clamped to the file; None = send it whole.

    Several ranges, or a header that is not a byte range, are ignored (RFC 9110 allows a full
    200 answer instead); the random is spent either way.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # the last N bytes
        suffix = int(match[2])
        if suffix == 0:
            return size, size
        return max(0, size - suffix), size - 1
    first = int(match[1])
    if first >= size:
        return first, first  # unsatisfiable: answered 416
    last = int(match[2]) if match[2] else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)


def _read(opened: OpenFile, first: int, last: int) -> Iterator[bytes]:
    try:
        opened.stream.seek(first)
        remaining = last - first + 1
        while remaining > 0:
            chunk = opened.stream.read(min(CHUNK, remaining))
            if not chunk:
                break  # the file shrank while streaming: stop short rather than pad
            remaining -= len(chunk)
            yield chunk
    finally:
        opened.stream.close()
