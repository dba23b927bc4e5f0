"""Reading a download as it arrives: bytes -> lines -> rows, keeping each row's raw bytes.

Keeping the raw bytes lets ``download()`` write the device's own text (byte for byte) while
still counting and validating rows with a real CSV parser.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cdrgate.client._errors import ConnectError, ProtocolError
from cdrgate.client._records import is_header, iter_ordered_rows

# A CDR line is a few hundred bytes; anything far longer is not a CDR file.
MAX_LINE_BYTES = 1 << 20
BOM = "\ufeff"


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines with their endings; the last line may lack one."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", start)) != -1:
            yield bytes(buffer[start : newline + 1])
            start = newline + 1
        del buffer[:start]
        if len(buffer) > MAX_LINE_BYTES:
            raise ProtocolError("the download is not a CDR file (a line exceeds 1 MiB)")
    if buffer:
        yield bytes(buffer)


class CsvStream:
    """The rows of one downloaded CSV: ``(fields in CSV_COLUMNS order, raw line bytes)``.

    ``header`` holds the file's header line (with the file's own line end, LF if it had none)
    once it has been read: a CRLF file stays CRLF throughout, never an LF header on CRLF rows.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.header: bytes | None = None
        self._pending: list[bytes] = []
        self._unfinished = False  # the last line read lacks its line end

    def _text_lines(self) -> Iterator[str]:
        first = True
        for raw in split_lines(self._chunks):
            self._unfinished = not raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("the CDR file is not UTF-8 text") from None
            if first:
                first = False
                text = text.removeprefix(BOM)
                if is_header([text.split(",", 1)[0]]):
                    header = text.encode()
                    self.header = header if header.endswith(b"\n") else header + b"\n"
                    yield text
                    continue
                raw = text.encode()
            self._pending.append(raw if raw.endswith(b"\n") else raw + b"\n")
            yield text

    def __iter__(self) -> Iterator[tuple[list[str], bytes]]:
        try:
            for fields in iter_ordered_rows(self._text_lines()):
                raw = b"".join(self._pending)
                self._pending.clear()
                yield fields, raw
        except ProtocolError:
            # A body delimited by the connection's close (no length, no chunks) that was cut
            # shows it only here: a last line that is both unfinished and unreadable.
            if self._unfinished:
                raise ConnectError(
                    "the download ended in the middle of a line: the connection was cut"
                ) from None
            raise
