"""``CdrClient``: log in, keep the session alive, and stream CDRs out of an S-Series PBX.

Everything the device makes hard is handled here once: lazy login, heartbeat before the idle
limit, one re-login on a dead token, no retry at all on a lockout, a fresh random when the
30-second one expired, and long ranges cut into windows that stitch without gaps.

Several base URLs (cdrgate nodes sharing one database) are tried in turn: a connection failure
moves to the next node. A request carrying a random is never sent again (the random may be
spent); its window asks the next node for a fresh random instead, and a download that broke
mid-stream resumes from the last second it delivered, skipping the rows already delivered.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from cdrgate import __version__
from cdrgate.cdr import CSV_COLUMNS, CSV_HEADER
from cdrgate.client._answers import (
    MAX_ERROR_BODY,
    cut_short,
    envelope,
    first_line,
    read_capped,
)
from cdrgate.client._changes import MAX_LIMIT as CHANGES_MAX_LIMIT
from cdrgate.client._changes import PATH as CHANGES_PATH
from cdrgate.client._changes import ChangesPage, read_page
from cdrgate.client._deadline import DeadlinePassed, ProxyTlsFailed, ProxyUnreachable
from cdrgate.client._errors import (
    AuthenticationFailed,
    ClientError,
    ConnectError,
    LockedOut,
    PbxError,
    ProtocolError,
    TlsError,
    waited_out_busy,
)
from cdrgate.client._limits import DEFAULT_DEADLINE, DEFAULT_TIMEOUT
from cdrgate.client._proxies import shown, transports
from cdrgate.client._recordings import RecordingResult, download_recording
from cdrgate.client._records import Cdr, cdr_from_fields
from cdrgate.client._stream import CsvStream
from cdrgate.client._windows import DEFAULT_WINDOW, TimeArg, split, to_seconds
from cdrgate.errors import Errno
from cdrgate.passwords import md5_hex
from cdrgate.timefmt import format_pbx_time, parse_pbx_time, to_datetime
from cdrgate.versions import SELECTOR_FIELD

API_VERSIONS = ("v1.1.0", "v2.0.0")
# The PBX drops a token after 30 idle minutes; refresh well before, whatever the device counts.
DEFAULT_HEARTBEAT_AFTER = timedelta(minutes=20)
# The device locks an address for 10 minutes and does not say when it started.
LOCKOUT = timedelta(minutes=10)
RANDOM_ATTEMPTS = 3
# login/heartbeat/logout/get_random answers are a few hundred bytes; read no more than this.
MAX_ANSWER_BYTES = 1 << 20
TOKEN_ERRNOS = frozenset({Errno.TOKEN_UNKNOWN, Errno.TOKEN_EMPTY, Errno.TOKEN_EXPIRED})
_TIMESTART = CSV_COLUMNS.index("timestart")

# An API URL pasted where the base URL belongs: .../api/v1.1.0/ (or .../api/v1.1.0/login).
_API_PATH = re.compile(r"(?P<base>.*?)/api/(?P<version>v[0-9][0-9.]*)(?:/.*)?")
# What OpenSSL says when the other side answers a ClientHello in plain text.
_PLAIN_HTTP_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"})
# What h11 (under httpx) says when an answer's head passes its 100 KiB limit.
_HEAD_TOO_LARGE = "Receive buffer too long"

T = TypeVar("T")
Verify = bool | str | os.PathLike[str]


@dataclass
class DownloadStats:
    """Running totals, passed to a progress callback after each window and row batch."""

    windows_total: int
    windows_done: int = 0
    rows: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class DownloadResult:
    rows: int
    bytes: int
    windows: int


ProgressCallback = Callable[[DownloadStats], None]
PROGRESS_EVERY_ROWS = 1000


class CdrClient:
    """A client of one PBX (or cdrgate) CDR API. Use as a context manager to log out at the end.

    ``base_url``: one URL, or several (a sequence, or one string with commas) of cdrgate nodes
    sharing one database; ``base_url`` is then the first (the service's identity, e.g. for
    sync's state) and ``node_url`` the one in use.

    ``verify`` is True (system CAs), False (no check: only on a trusted network) or the path
    of a CA/certificate file, which is how a PBX's self-signed certificate is trusted properly.
    ``timeout`` bounds each silence (connecting, or between two reads); ``deadline`` bounds
    each request's whole answer, however steadily it trickles in (None: no bound).
    Proxies are taken from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) as
    httpx does. ``transport`` replaces the network (tests), and with it the proxies and the
    deadline;
    ``clock`` is a monotonic seconds source.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        username: str,
        password: str,
        *,
        api_version: str = "v1.1.0",
        verify: Verify = True,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float | None = DEFAULT_DEADLINE,
        window: timedelta = DEFAULT_WINDOW,
        heartbeat_after: timedelta = DEFAULT_HEARTBEAT_AFTER,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if api_version not in API_VERSIONS:
            raise ValueError(f"api_version must be one of {', '.join(API_VERSIONS)}")
        self.base_urls = tuple(_base_url(url, api_version) for url in split_urls(base_url))
        self.base_url = self.base_urls[0]
        self._node = 0
        self.api_version = api_version
        self.selector = SELECTOR_FIELD[api_version]
        self.window = window
        self._username = username
        self._password_md5 = md5_hex(password)
        self._heartbeat_after = heartbeat_after.total_seconds()
        self._clock = clock
        self._token: str | None = None
        self._alive_at = 0.0
        self._locked: LockedOut | None = None
        self._locked_until = 0.0
        if deadline is not None and deadline <= 0:
            raise ValueError("the deadline must be a positive number of seconds (or None)")
        mounts: dict[str, httpx.BaseTransport | None] = {}
        if transport is None:
            transport, mounts = transports(deadline, _ssl_context(verify))
        try:
            self._http = httpx.Client(
                transport=transport,
                mounts=mounts,
                timeout=timeout,
                headers={"User-Agent": f"cdrgate/{__version__}"},
            )
        except httpx.InvalidURL as exc:  # the proxies are parsed above, NO_PROXY's hosts here
            raise ClientError(f"cannot read NO_PROXY from the environment: {exc}") from None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> CdrClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Log out (best effort) and release the connection pool."""
        if self._token is not None:
            try:
                self._call("logout", {}, self._token)
            except ClientError:
                pass  # the token dies by itself after 30 minutes
            self._token = None
        self._http.close()

    # -- session --------------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (otherwise the first request does). Never retried: see LockedOut."""
        if self._locked is not None:
            if self._clock() < self._locked_until:
                raise self._locked
            self._locked = None
        body = {"username": self._username, "password": self._password_md5, "port": "8260"}
        try:
            answer = self._call("login", body, None)
        except PbxError as exc:
            if exc.errno == Errno.LOCKED_OUT:
                self._locked = LockedOut(exc.errno, "login", datetime.now() + LOCKOUT)
                self._locked_until = self._clock() + LOCKOUT.total_seconds()
                raise self._locked from None
            if exc.errno == Errno.BAD_CREDENTIALS:
                raise AuthenticationFailed(exc.errno, "login") from None
            raise
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError("login answered Success without a token")
        self._token = token
        self._alive_at = self._clock()

    def heartbeat(self) -> None:
        """Reset the token's idle timer (logs in if there is no session yet)."""
        if self._token is None:
            self.login()
            return
        try:
            self._call("heartbeat", {}, self._token)
        except PbxError as exc:
            if exc.errno not in TOKEN_ERRNOS:
                raise
            self._token = None
            self.login()
            return
        self._alive_at = self._clock()

    def _session_token(self) -> str:
        if self._token is None:
            self.login()
        elif self._clock() - self._alive_at >= self._heartbeat_after:
            self.heartbeat()
        assert self._token is not None
        return self._token

    def _authenticated(self, call: Callable[[str], T]) -> T:
        """Run ``call(token)``; on a dead token log in again once and retry once."""
        token = self._session_token()
        try:
            return call(token)
        except PbxError as exc:
            if exc.errno not in TOKEN_ERRNOS:
                raise
        self._token = None
        return call(self._session_token())

    # -- HTTP -----------------------------------------------------------------------------

    @property
    def node_url(self) -> str:
        """The base URL requests go to now."""
        return self.base_urls[self._node]

    def _url(self, endpoint: str) -> str:
        return f"{self.node_url}/api/{self.api_version}/{endpoint}"

    def _send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        rebuild: Callable[[], httpx.Request] | None = None,
    ) -> httpx.Response:
        """Send ``request``; on a connection failure move to the next node, and with
        ``rebuild`` (a request that may be repeated) send it there, each node once."""
        for tried in range(1, len(self.base_urls) + 1):
            try:
                return self._http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                error = _transport_error(exc, self.node_url)
                self._fail_over()
                if rebuild is None or tried == len(self.base_urls):
                    raise error from None
                request = rebuild()
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail_over(self) -> bool:
        """Move to the next node; False when there is only one."""
        self._node = (self._node + 1) % len(self.base_urls)
        return len(self.base_urls) > 1

    def _call(self, endpoint: str, body: dict[str, str], token: str | None) -> dict[str, Any]:
        params = {"token": token} if token is not None else None

        def build() -> httpx.Request:
            return self._http.build_request("POST", self._url(endpoint), json=body, params=params)

        # Login, heartbeat, logout and get_random may be repeated on another node: at worst
        # a second token or an unused random, which expire by themselves.
        for tried in range(1, len(self.base_urls) + 1):
            response = self._send(build(), stream=True, rebuild=build)
            try:
                answer = read_capped(response.iter_bytes(), MAX_ANSWER_BYTES)
                break
            except httpx.HTTPError as exc:
                error = cut_short(exc, self.node_url, f"its {endpoint} answer")
                if tried == len(self.base_urls) or not self._fail_over():
                    raise error from None
            finally:
                response.close()
        if len(answer) > MAX_ANSWER_BYTES:
            raise ProtocolError(f"{endpoint}: the answer exceeds 1 MiB: not an API answer")
        return envelope(response, answer, endpoint)

    # -- downloads ------------------------------------------------------------------------

    def _open_download(self, token: str, extid: str, start: int, end: int) -> Iterator[bytes]:
        """get_random, then the link; returns the CSV's byte chunks or raises PbxError."""
        answer = self._call(
            "cdr/get_random",
            {self.selector: extid, "starttime": format_pbx_time(start),
             "endtime": format_pbx_time(end)},
            token,
        )  # fmt: skip
        random = answer.get("random")
        if not isinstance(random, str) or not random:
            raise ProtocolError("cdr/get_random answered Success without a random")
        # Build the link from the echoed values, as the device expects; %20 for spaces.
        query = "&".join(
            f"{name}={quote(str(value), safe=':,')}"
            for name, value in (
                (self.selector, answer.get(self.selector, extid)),
                ("starttime", answer.get("starttime", format_pbx_time(start))),
                ("endtime", answer.get("endtime", format_pbx_time(end))),
                ("token", token),
                ("random", random),
            )
        )
        request = self._http.build_request("GET", f"{self._url('cdr/download')}?{query}")
        response = self._send(request, stream=True)
        try:
            chunks = response.iter_bytes()
            first = b""
            try:
                for chunk in chunks:
                    first += chunk
                    if first.strip():
                        break
                error_body = response.status_code != 200 or first.lstrip().startswith(b"{")
                if error_body:
                    first += read_capped(chunks, MAX_ERROR_BODY)
            except httpx.HTTPError as exc:
                raise cut_short(exc, self.node_url, "a download") from None
            if error_body:
                envelope(response, first, "cdr/download")
                raise ProtocolError("cdr/download answered Success without a file")
            if first.lstrip().startswith(b"<"):  # no CSV starts so: a web server's page
                raise ProtocolError(
                    "cdr/download answered an HTML page, not a CSV (is this an S-Series API URL?)"
                )
        except BaseException:
            response.close()
            raise
        return _guarded(first, chunks, response, self.node_url)

    def _window_stream(self, extid: str, start: int, end: int) -> CsvStream | None:
        """One window's CSV, or None when the PBX has no CDR in it (20021)."""
        attempt = failovers = busy = 0
        while True:
            attempt += 1
            try:
                chunks = self._authenticated(
                    lambda token: self._open_download(token, extid, start, end)
                )
            except PbxError as exc:
                if exc.errno == Errno.CDR_NOT_FOUND:
                    return None
                # The random lives 30 s; a slow link or a busy PBX can outlive it.
                if exc.errno == Errno.CDR_RANDOM_INVALID and attempt < RANDOM_ATTEMPTS:
                    continue
                if waited_out_busy(exc, busy):
                    busy += 1
                    continue
                raise
            except ConnectError:
                # _send has moved to the next node: a fresh random there, each node once.
                failovers += 1
                if failovers >= len(self.base_urls):
                    raise
                continue
            return CsvStream(chunks)

    def _window_rows(
        self, extid: str, low: int, high: int
    ) -> Iterator[tuple[CsvStream, list[str], bytes]]:
        """One window's rows with their stream; a node failing mid-stream is resumed on the
        next from the last second delivered, without the rows of that second already sent."""
        start, sent_at_start, failovers = low, set[bytes](), 0
        while True:
            stream = self._window_stream(extid, start, high)
            if stream is None:
                return
            last, sent_at_last = start, set[bytes]()
            try:
                for fields, raw in stream:
                    ts = parse_pbx_time(fields[_TIMESTART])
                    if ts == start and raw in sent_at_start:
                        continue
                    if ts != last:
                        last, sent_at_last = ts, set()
                    sent_at_last.add(raw)
                    failovers = 0
                    yield stream, fields, raw
                return
            except ConnectError:
                failovers += 1
                if failovers >= len(self.base_urls) or not self._fail_over():
                    raise
                if last != start:
                    sent_at_start = set()
                start, sent_at_start = last, sent_at_start | sent_at_last

    def windows(self, start: TimeArg, end: TimeArg) -> list[tuple[datetime, datetime]]:
        """The inclusive windows a range is downloaded in (``self.window`` each)."""
        return [
            (to_datetime(low), to_datetime(high))
            for low, high in split(to_seconds(start), to_seconds(end), self.window)
        ]

    def iter_window(self, extid: str, start: TimeArg, end: TimeArg) -> Iterator[Cdr]:
        """The CDRs of one range in one request (no splitting): the building block of sync."""
        for _stream, fields, _raw in self._window_rows(extid, to_seconds(start), to_seconds(end)):
            yield _typed(fields)

    def iter_cdrs(self, extid: str, start: TimeArg, end: TimeArg) -> Iterator[Cdr]:
        """Typed records for ``extid`` ("all", "1000" or "1000,1001") in [start, end]."""
        for low, high in split(to_seconds(start), to_seconds(end), self.window):
            for _stream, fields, _raw in self._window_rows(extid, low, high):
                yield _typed(fields)

    def changes(self, after: int = 0, limit: int = CHANGES_MAX_LIMIT) -> ChangesPage | None:
        """CDRs the far end stored after sequence ``after``, in storage order (``limit`` at
        most 10,000): a cdrgate's change feed. None when the far end has none (a real PBX)."""

        def fetch(token: str) -> ChangesPage | None:
            def build() -> httpx.Request:
                return self._http.build_request(
                    "GET",
                    f"{self.node_url}{CHANGES_PATH}",
                    params={"after": after, "limit": limit},
                    headers={"Authorization": f"Bearer {token}"},
                )

            # A read with no effect: safe to send again on the next node.
            return read_page(self._send(build(), rebuild=build))

        return self._authenticated(fetch)

    def download_recording(self, name: str, dest: str | os.PathLike[str]) -> RecordingResult:
        """Fetch one call recording to ``dest`` (a file, or a folder to put ``name`` in)."""
        return download_recording(self, name, dest)

    def download(
        self,
        extid: str,
        start: TimeArg,
        end: TimeArg,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Stream the CSV (one header, then every row of every window) to a path or stream.

        A path is written through ``<path>.part`` and renamed at the end, so a failed
        download never leaves a file that looks complete.
        """
        if isinstance(dest, str | os.PathLike):
            path = Path(dest)
            if path.is_dir():  # the rename would put "<dest>.part" inside it
                raise ValueError(f"{path} is a folder: give the CSV file's name")
            partial = path.with_name(path.name + ".part")
            try:
                with partial.open("wb") as out:
                    result = self._write_csv(extid, start, end, out, progress)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            shutil.move(partial, path)
            return result
        return self._write_csv(extid, start, end, dest, progress)

    def _write_csv(
        self,
        extid: str,
        start: TimeArg,
        end: TimeArg,
        out: BinaryIO,
        progress: ProgressCallback | None,
    ) -> DownloadResult:
        spans = split(to_seconds(start), to_seconds(end), self.window)
        stats = DownloadStats(windows_total=len(spans))
        header: bytes | None = None
        for low, high in spans:
            for stream, _fields, raw in self._window_rows(extid, low, high):
                if header is None:
                    header = stream.header or CSV_HEADER.encode()
                    out.write(header)
                    stats.bytes += len(header)
                elif stream.header not in (None, header):
                    raise ProtocolError("the PBX changed its CSV columns between windows")
                out.write(raw)
                stats.rows += 1
                stats.bytes += len(raw)
                if progress and stats.rows % PROGRESS_EVERY_ROWS == 0:
                    progress(stats)
            stats.windows_done += 1
            if progress:
                progress(stats)
        if header is None:  # nothing anywhere: still a valid, header-only CSV
            out.write(CSV_HEADER.encode())
            stats.bytes += len(CSV_HEADER)
        out.flush()
        return DownloadResult(rows=stats.rows, bytes=stats.bytes, windows=len(spans))


def _typed(fields: list[str]) -> Cdr:
    try:
        return cdr_from_fields(fields)
    except ValueError as exc:
        raise ProtocolError(f"bad CDR in the download: {exc}") from None


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """``"URL1,URL2"`` or a sequence of URLs -> the URLs (at least one)."""
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    found = [part.strip() for part in parts if part.strip()]
    if not found:
        raise ValueError("give the PBX URL")
    return found


def _base_url(url: str, api_version: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("the PBX URL must start with https:// or http://")
    try:
        # .port checks the port is a number in 0-65535 (httpx takes 99999); httpx.URL raises
        # here what it would otherwise raise at the first request ("http://[::1").
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValueError(f"not a usable PBX URL {url!r}: {exc}") from None
    if not host:
        raise ValueError(f"the PBX URL {url!r} names no host")
    base_url, url_version = split_api_url(url)
    if url_version is not None and url_version != api_version:
        raise ValueError(
            f"the URL names API {url_version} but the API version is {api_version}: "
            f"give the PBX base URL ({base_url}) and the API version separately"
        )
    return base_url


def split_api_url(url: str) -> tuple[str, str | None]:
    """``http://pbx:8088/api/v2.0.0/`` -> (``http://pbx:8088``, ``v2.0.0``); a base URL -> (it, None).

    A URL naming a version the SDK does not speak is refused with what to give instead."""
    url = url.strip().rstrip("/")
    match = _API_PATH.fullmatch(url)
    if match is None:
        return url, None
    base, version = match["base"], match["version"]
    if version not in API_VERSIONS:
        raise ValueError(
            f"{url} names API {version}, which this client does not speak "
            f"({', '.join(API_VERSIONS)}): give the PBX base URL, e.g. {base}"
        )
    return base, version


def _ssl_context(verify: Verify) -> ssl.SSLContext | bool:
    if verify is True:
        return ssl.create_default_context()
    if verify is False:
        return False
    try:
        return ssl.create_default_context(cafile=os.fspath(verify))
    except (OSError, ssl.SSLError) as exc:
        raise ClientError(f"cannot use CA file {os.fspath(verify)}: {exc}") from None


def _tls_reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    return error.reason or str(error)


def _transport_error(exc: httpx.HTTPError, base_url: str) -> ClientError:
    cause: BaseException | None = exc
    proxy: str | None = None  # the https:// proxy whose own TLS failed, if that is the cause
    while cause is not None:
        if isinstance(cause, ProxyTlsFailed):
            proxy = cause.proxy
        if isinstance(cause, ssl.SSLError) and proxy is not None:
            return TlsError(
                f"TLS with the proxy {shown(proxy)} (on the way to {base_url}) failed: "
                f"{_tls_reason(cause)} (a proxy's private CA: name its file in SSL_CERT_FILE)"
            )
        if isinstance(cause, ssl.SSLError):
            if cause.reason in _PLAIN_HTTP_REASONS:
                return TlsError(
                    f"{base_url} answered in plain HTTP, not HTTPS: "
                    f"use {_swap_scheme(base_url, 'http')}"
                )
            reason = _tls_reason(cause)
            return TlsError(
                f"TLS with {base_url} failed: {reason} "
                "(trust its certificate with a CA file, or disable verification)"
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, DeadlinePassed):
        return ConnectError(f"{base_url} did not answer in time: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return ConnectError(f"{base_url} did not answer in time")
    if isinstance(exc, ProxyUnreachable):
        return ConnectError(
            f"cannot connect to the proxy {shown(exc.proxy)} (on the way to {base_url}): "
            f"{first_line(exc)}"
        )
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"cannot connect to {base_url}: {first_line(exc)}")
    if isinstance(exc, httpx.ProxyError):
        # A CONNECT the proxy refused (403, 407, 502): said by the proxy, not by the PBX.
        return ConnectError(f"the proxy did not reach {base_url}: {first_line(exc)}")
    if isinstance(exc, httpx.RemoteProtocolError) and _HEAD_TOO_LARGE in str(exc):
        # It did answer, with a head no API sends: not a TLS mismatch, not a broken link.
        return ProtocolError(
            f"{base_url} answered with an HTTP head over 100 KiB: not an API answer"
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) and base_url.startswith(
        "http://"
    ):
        # An HTTPS server drops a plain-text request without an answer: it closes, or resets.
        return ConnectError(
            f"{base_url} closed the connection without answering "
            f"(does it speak HTTPS? try {_swap_scheme(base_url, 'https')})"
        )
    return ConnectError(f"connection to {base_url} failed: {first_line(exc)}")


def _swap_scheme(url: str, scheme: str) -> str:
    return scheme + url[url.index(":") :]


def _guarded(
    first: bytes, rest: Iterator[bytes], response: httpx.Response, base_url: str
) -> Iterator[bytes]:
    """The body's chunks; a broken connection becomes ConnectError; always closes."""
    try:
        yield first
        yield from rest
    except httpx.HTTPError as exc:
        raise cut_short(exc, base_url, "a download") from None
    finally:
        response.close()
