"""Call recordings over the S-Series API: recording/get_random and recording/download.

The service owns the whole sequence of each call: authentication, validation, issuing and
redeeming the one-time random, opening the file, and the audit record of every download
attempt (refused ones too). Handlers in api/recording.py only parse and answer.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from cdrgate.errors import ApiError, CdrgateError, Errno, SourceBroken
from cdrgate.recfolder import OpenFile, RecordingFolder, content_type, safe_name
from cdrgate.services.audit import DownloadAttempt, DownloadAudit
from cdrgate.services.auth import AuthService, Session
from cdrgate.services.downloads import parse_allowed_ip
from cdrgate.services.export import ExportSlots, Outcome
from cdrgate.settings import Settings
from cdrgate.storage import randoms, recordings
from cdrgate.storage.db import Database

CHUNK = 256 * 1024
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
    # The link's name read the other way where it holds a "+" (``recording`` reads "+" as
    # itself, this as a space): which one was meant is the name the random was issued for.
    recording_spaced: str | None = None


@dataclass(frozen=True)
class PlayRequest:
    """The web console's player: a signed-in session and no random, because an audio
    element sends a Range request for every seek and a random can be spent only once."""

    token: str | None
    recording: str | None
    client_ip: str
    range: str | None
    # The name with the link's "+" read as a space (None: the link held no "+"), heard when
    # no recording has the name read with "+" as itself (api/recording.recording_readings).
    recording_spaced: str | None = None


class RecordingBody:
    """A redeemed download: what to answer, and the file's bytes, read on demand.

    Sent by ``api.streaming.ExportResponse``, which calls :meth:`finish` exactly once however
    the transfer ends; that closes the file and writes the audit record.
    """

    def __init__(
        self, opened: OpenFile, first: int, last: int, partial: bool,
        on_finish: Callable[[Outcome, int], None],
    ) -> None:  # fmt: skip
        self.name = opened.name
        self.content_type = content_type(opened.name)
        self.size = opened.size  # of the whole file
        self.first = first  # first byte sent
        self.last = last  # last byte sent (inclusive); first > last for an empty file
        self.partial = partial  # True: answer 206 with Content-Range
        self.sent = 0
        self._stream = opened.stream
        self._remaining = self._expected = self.length
        self._on_finish = on_finish
        self._stream.seek(first)

    @property
    def status_code(self) -> int:
        return 206 if self.partial else 200

    def transfer_headers(self) -> dict[str, str]:
        """What any answer carrying this body says of it: type, length and (206) range. Caching
        is each API's own word (api/recording.py, console/pages.py)."""
        headers = {
            "Content-Type": self.content_type,
            "Content-Length": str(self.length),
            "Accept-Ranges": "bytes",
        }
        if self.partial:
            headers["Content-Range"] = f"bytes {self.first}-{self.last}/{self.size}"
        return headers

    @property
    def length(self) -> int:
        return max(0, self.last - self.first + 1)

    @property
    def ready(self) -> bool:
        """Only the end is: every read goes to a worker thread (the disk may be slow)."""
        return self._remaining <= 0

    def next_chunk(self) -> bytes | None:
        if self._remaining <= 0:
            return None
        try:
            chunk = self._stream.read(min(CHUNK, self._remaining))
        except OSError as exc:
            raise SourceBroken(f"recording {self.name!r} could not be read: {exc}") from exc
        if not chunk:
            # The file shrank while streaming: broken off (the client sees a transfer shorter
            # than its Content-Length), never padded, and never ended as if whole (the
            # server would refuse the short body with a traceback).
            raise SourceBroken(
                f"recording {self.name!r} ended at byte {self.first + self.sent} of {self.size}"
                " while sent: the file shrank"
            )
        self._remaining -= len(chunk)
        self.sent += len(chunk)
        return chunk

    def none_sent(self) -> None:
        """Answered without a body (a HEAD): the file is not read, and sending none of it
        is the whole answer."""
        self._remaining = self._expected = 0

    def finish(self, outcome: Outcome) -> None:
        self._stream.close()
        if outcome == "ok" and self.sent < self._expected:
            outcome = "failed"
        self._on_finish(outcome, self.sent)


class UnsatisfiableRange(CdrgateError):
    """The Range lies past the end of the file (HTTP 416); the random is spent."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable (file of {size} bytes)")
        self.size = size


class RecordingService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        auth: AuthService,
        audit: DownloadAudit,
        slots: ExportSlots,
    ) -> None:
        self.db = db
        self.settings = settings
        self.auth = auth
        self.audit = audit
        # Shared with the CDR downloads (app.build_services): a file streamed to a slow
        # client holds its memory and a file handle as long as a multi-page export does.
        self.slots = slots
        self.folder = RecordingFolder(settings.recordings, db) if settings.recordings else None

    def issue_random(self, request: RandomRequest) -> str:
        session = self.auth.authenticate(request.token)
        name = _required(request.recording)
        allowed_ip = parse_allowed_ip(request.allowed_ip)
        self._find(name, session).stream.close()
        random = randoms.new_random(self.auth.now_ms() + self.settings.random_ttl_seconds * 1000)
        with self.db.write() as conn:
            recordings.create_random(
                conn,
                random_hash=random.random_hash,
                token_hash=session.token_hash,
                recording=name,
                client_ip=request.client_ip,
                allowed_ip=allowed_ip,
                expires_ms=random.expires_ms,
            )
        return random.text

    def download(self, request: DownloadRequest) -> RecordingBody:
        """Redeem the random and open the file; every outcome is audited."""
        return self._audited(
            request.client_ip, request.api_version, request.token, request.recording,
            request.range, lambda session: self._redeem(session, request),
        )  # fmt: skip

    def play(self, request: PlayRequest) -> RecordingBody:
        """Open a recording for the console's player (its session is the authority, no
        random); audited like a download."""

        def find(session: Session) -> OpenFile:
            name = _required(request.recording)
            try:
                return self._find(name, session)
            except ApiError as exc:
                spaced = request.recording_spaced
                if exc.errno != Errno.RECORDING_NOT_FOUND or spaced is None or spaced == name:
                    raise
                return self._find(spaced, session)  # a form-encoded link: "+" meant " "

        return self._audited(
            request.client_ip, "console", request.token, request.recording, request.range, find
        )

    def _audited(
        self, client_ip: str, api_version: str, token: str | None, name: str | None,
        range_header: str | None, open_file: Callable[[Session], OpenFile],
    ) -> RecordingBody:  # fmt: skip
        """Authenticate, open the file and answer its body; every refusal is audited here,
        a sent file by the body's ``finish``. A file opened and then refused is closed here
        (``open_file`` closes one it opened and then failed on)."""
        attempt = self.audit.begin(client_ip, api_version, name, kind="recording")
        slot: ExportSlots.Slot | None = None
        opened: OpenFile | None = None
        try:
            session = self.auth.authenticate(token)
            attempt = attempt.by(session.account)
            opened = open_file(session)
            # After the random is spent, as for CDR downloads (ask a new one and retry): taken
            # before, the losers of a race on one random would hold slots the winner needs.
            slot = self.slots.acquire(session.account)
            return self._body(opened, range_header, attempt, slot)
        except ApiError as exc:
            _let_go(slot, opened)
            self.audit.failed(attempt, exc.errno)
            raise
        except UnsatisfiableRange:
            _let_go(slot, opened)
            self.audit.record(attempt)
            raise
        except Exception:
            _let_go(slot, opened)
            self.audit.failed(attempt, Errno.APISRV_DOWN)
            raise

    def purge_spent(self) -> int:
        with self.db.write() as conn:
            return recordings.purge_randoms(conn, self.auth.now_ms())

    def _redeem(self, session: Session, request: DownloadRequest) -> OpenFile:
        name = _required(request.recording)
        random = request.random
        if random is None or not random.strip():
            raise ApiError(Errno.PARAMETER_EMPTY, "random is required")
        key = randoms.key_of(random)
        now = self.auth.now_ms()
        row = None
        if key is not None:  # else not one of ours: never issued
            with self.db.read() as conn:
                row = recordings.find_random(conn, *key)
        if row is not None and row.recording != name and row.recording == request.recording_spaced:
            name = row.recording  # a form-encoded name holding a space: "+" meant " "
        if (
            key is None
            or row is None
            or not hmac.compare_digest(row.token_hash, session.token_hash)
            or row.recording != name
            or row.used_ms is not None
            or row.expires_ms <= now
        ):
            raise ApiError(Errno.RECORDING_RANDOM_INVALID)
        if request.client_ip not in (row.client_ip, row.allowed_ip):
            raise ApiError(Errno.ALLOWEDIP_ERROR)
        # Open before spending: a file that vanished since get_random leaves the random unused.
        opened = self._find(name, session)
        try:
            with self.db.write() as conn:
                won = recordings.redeem_random(conn, *key, now)
            if not won:
                raise ApiError(Errno.RECORDING_RANDOM_INVALID)
        except BaseException:
            # Lost the race, or the spend failed (30003; its COMMIT's answer lost, it may have
            # spent the random): nothing is sent, so the file is not held open until collected.
            opened.stream.close()
            raise
        return opened

    def _find(self, name: str, session: Session) -> OpenFile:
        """Open a recording the session may hear: one an in-scope CDR names (20014 for
        another account's, as for one that does not exist)."""
        if self.folder is None:
            raise ApiError(Errno.RECORDING_NOT_FOUND, "no recordings folder configured")
        # Refused before any query: a path is never a name, and PostgreSQL rejects NUL.
        if not safe_name(name):
            raise ApiError(Errno.RECORDING_NOT_FOUND, "not a plain file name")
        with self.db.read() as conn:
            referenced = recordings.is_referenced(conn, name, session.scope)
        opened = self.folder.open(name) if referenced else None
        if opened is None:
            raise ApiError(Errno.RECORDING_NOT_FOUND)
        return opened

    def _body(
        self,
        opened: OpenFile,
        range_header: str | None,
        attempt: DownloadAttempt,
        slot: ExportSlots.Slot,
    ) -> RecordingBody:
        size = opened.size
        span = _parse_range(range_header, size)
        if span is None:
            first, last, partial = 0, size - 1, False
        else:
            first, last = span
            partial = True
            if first >= size:
                raise UnsatisfiableRange(size)  # the file is closed by ``_audited``
        return RecordingBody(
            opened,
            first,
            last,
            partial,
            lambda outcome, sent: self._finished(slot, attempt, outcome, sent),
        )

    def _finished(
        self, slot: ExportSlots.Slot, attempt: DownloadAttempt, outcome: Outcome, sent: int
    ) -> None:
        slot.release()
        self.audit.record(attempt.ended(outcome, 1 if outcome == "ok" else 0, sent))


def _let_go(slot: ExportSlots.Slot | None, opened: OpenFile | None) -> None:
    """What a refused download held: its export slot and its open file."""
    if slot is not None:
        slot.release()
    if opened is not None:
        opened.stream.close()


def _required(value: str | None) -> str:
    if value is None or not value.strip():
        raise ApiError(Errno.PARAMETER_EMPTY, "recording is required")
    return value


def range_asked(range_header: str | None, if_range: str | None) -> str | None:
    """The Range a request's headers ask to be honoured: none under ``If-Range``. cdrgate
    hands out no validator (no ETag, no Last-Modified), so an If-Range's cannot be the file's
    current one, and RFC 9110 (13.1.5) then says to send the whole file: a client resuming a
    copy of another version must not be given a piece of this one."""
    return None if if_range is not None else range_header


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
        suffix = _position(match[2], size)
        if suffix == 0:
            return size, size
        return max(0, size - suffix), size - 1
    first = _position(match[1], size)
    if first >= size:
        return first, first  # unsatisfiable: answered 416
    last = _position(match[2], size) if match[2] else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)


def _position(digits: str, size: int) -> int:
    """A Range number; one with more digits than the file's size is past its end, whatever
    it is (``int`` refuses more than 4300 digits: such a header answered 30003)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= len(str(size)) else size + 1
