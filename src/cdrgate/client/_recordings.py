"""Fetching one call recording: recording/get_random, then recording/download, into a file.

The file is written to a temporary name in the destination folder and renamed only once its
size matches the Content-Length, so a file under its final name is always complete (which is
what lets a mirror skip files it already has).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

import httpx

from cdrgate.client._answers import MAX_ERROR_BODY, cut_short, envelope, read_capped
from cdrgate.client._errors import PbxError, ProtocolError, waited_out_busy
from cdrgate.errors import Errno

if TYPE_CHECKING:
    from cdrgate.client._client import CdrClient

RANDOM_ATTEMPTS = 2  # the first try and one retry on 20012 (a random that aged in transit)


@dataclass(frozen=True)
class RecordingResult:
    name: str
    path: Path
    bytes: int


def target_path(name: str, dest: str | os.PathLike[str]) -> Path:
    """``dest`` itself, or ``dest/name`` when ``dest`` is an existing folder."""
    if not name or any(bad in name for bad in ("/", "\\", "\x00")) or name in (".", ".."):
        raise ValueError(f"not a recording file name: {name!r}")
    path = Path(dest)
    return path / name if path.is_dir() else path


def download_recording(
    client: CdrClient, name: str, dest: str | os.PathLike[str]
) -> RecordingResult:
    path = target_path(name, dest)
    attempt = busy = 0
    while True:
        attempt += 1
        try:
            size = client._authenticated(lambda token: _fetch(client, token, name, path))
        except PbxError as exc:
            if exc.errno == Errno.RECORDING_RANDOM_INVALID and attempt < RANDOM_ATTEMPTS:
                continue
            if waited_out_busy(exc, busy):  # as a CDR download
                busy += 1
                continue
            raise
        return RecordingResult(name, path, size)


def _fetch(client: CdrClient, token: str, name: str, path: Path) -> int:
    answer = client._call("recording/get_random", {"recording": name}, token)
    random = answer.get("random")
    if not isinstance(random, str) or not random:
        raise ProtocolError("recording/get_random answered Success without a random")
    # Quoted like the CDR link: a token or random is the PBX's text, whatever its shape.
    query = "&".join(
        f"{field}={quote(value, safe='')}"
        for field, value in (("recording", name), ("token", token), ("random", random))
    )
    request = client._http.build_request("GET", f"{client._url('recording/download')}?{query}")
    response = client._send(request, stream=True)
    try:
        kind = response.headers.get("content-type", "")
        if response.status_code != 200 or kind.startswith(("application/json", "text/")):
            try:
                body = read_capped(response.iter_bytes(), MAX_ERROR_BODY)
            except httpx.HTTPError as exc:
                raise cut_short(exc, client.node_url, "a recording download") from None
            envelope(response, body, "recording/download")
            raise ProtocolError("recording/download answered Success without a file")
        return _write(response, path, client.base_url)
    finally:
        response.close()


def _write(response: httpx.Response, path: Path, base_url: str) -> int:
    if path.exists() and not path.is_file() and not path.is_dir():
        # A device or FIFO (/dev/null, a pipe) is written as it is: a temporary file renamed
        # over it would replace the device with a regular file (as root, the machine's
        # /dev/null).
        with path.open("wb") as out:
            return _copy_checked(response, out, base_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            written = _copy_checked(response, out, base_url)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return written


def _copy_checked(response: httpx.Response, out: BinaryIO, base_url: str) -> int:
    """The body into ``out``; its size, which must be the announced Content-Length."""
    written = 0
    try:
        for chunk in response.iter_bytes():
            out.write(chunk)
            written += len(chunk)
    except httpx.HTTPError as exc:
        raise cut_short(exc, base_url, "a recording download") from None
    expected = response.headers.get("content-length")
    if expected is not None and expected.isdigit() and int(expected) != written:
        raise ProtocolError(f"recording/download sent {written} bytes of the {expected} announced")
    return written
