"""A PBX that misbehaves on purpose: a raw asyncio HTTP server on loopback, in a thread.

Raw, not an ASGI app, because the faults are below HTTP: bodies cut short, oversized heads,
connections reset or left silent. ``login``, ``cdr/get_random``, ``heartbeat`` and ``logout``
answer as a device does unless told otherwise; every other answer is given as the exact bytes
to write and what to do after them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from tests.client.helpers import free_socket

After = Literal["keep", "close", "reset", "hang"]


@dataclass(frozen=True)
class Answer:
    """``data`` written as is (status line, head and body), then ``after``: keep the
    connection, close it, reset it (RST), or hang (say nothing more until shutdown).

    ``trickle``: after its first ``trickle_from`` bytes, ``data`` is written one byte every
    ``trickle`` seconds, as a far end that stays just inside any read timeout."""

    data: bytes
    after: After = "keep"
    trickle: float = 0.0
    trickle_from: int = 0


def http(
    body: bytes,
    status: str = "200 OK",
    content_type: str = "application/json",
    headers: bytes = b"",
    length: int | None = None,
) -> bytes:
    """A response; ``length`` overrides Content-Length (-1: none, the body ends at close)."""
    size = len(body) if length is None else length
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n".encode()
    if size >= 0:
        head += f"Content-Length: {size}\r\n".encode()
    return head + headers + b"\r\n" + body


def json_answer(data: dict[str, object]) -> bytes:
    return http(json.dumps(data).encode())


def _device(endpoint: str, body: bytes) -> Answer | None:
    if endpoint == "login":
        return Answer(json_answer({"status": "Success", "token": "0123456789abcdef" * 2}))
    if endpoint in ("cdr/get_random", "recording/get_random"):
        echo = json.loads(body)
        return Answer(json_answer({"status": "Success", **echo, "random": "f" * 32}))
    if endpoint in ("heartbeat", "logout"):
        return Answer(json_answer({"status": "Success"}))
    return None


class FakePbx:
    """``answers`` maps an endpoint (``cdr/download``, ``login``, ...) to its Answer, or to a
    list of Answers given in turn (the last one repeats). ``seen`` lists endpoints asked for,
    ``targets`` their request targets (path and query, as sent)."""

    def __init__(self, answers: Mapping[str, Answer | list[Answer]]) -> None:
        self.answers = {k: v if isinstance(v, list) else [v] for k, v in answers.items()}
        self.seen: list[str] = []
        self.targets: list[str] = []
        self._stop: asyncio.Event | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def _answer(self, endpoint: str, body: bytes) -> Answer:
        queue = self.answers.get(endpoint)
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        return _device(endpoint, body) or Answer(http(b"Not Found", "404 Not Found", "text/plain"))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._stop is not None
        this = asyncio.current_task()
        assert this is not None
        self._connections[this] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                target = lines[0].split(" ")[1]
                self.targets.append(target)
                path = target.split("?")[0]
                endpoint = path.split("/", 3)[3] if path.startswith("/api/") else path
                self.seen.append(endpoint)
                answer = self._answer(endpoint, body)
                if not await self._write(writer, answer):
                    return
                if answer.after == "reset":
                    writer.transport.abort()
                    return
                if answer.after == "hang":
                    await self._stop.wait()
                if answer.after != "keep":
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._connections.pop(this, None)

    async def _write(self, writer: asyncio.StreamWriter, answer: Answer) -> bool:
        """Write the answer's data (trickled if asked); False once the client has gone."""
        if not answer.trickle:
            writer.write(answer.data)
            await writer.drain()
            return True
        writer.write(answer.data[: answer.trickle_from])
        for at in range(answer.trickle_from, len(answer.data)):
            await writer.drain()
            await asyncio.sleep(answer.trickle)
            if writer.transport.is_closing():
                return False
            writer.write(answer.data[at : at + 1])
        await writer.drain()
        return True

    @contextmanager
    def running(self) -> Iterator[str]:
        """Serve on 127.0.0.1; yields the base URL."""
        sock = free_socket()
        loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._serve, sock=sock)
            started.set()
            async with server:
                await self._stop.wait()
                # Close the connections still open (idle, hanging, trickling) and let their
                # handlers end, so none is left pending when the loop closes.
                for writer in self._connections.values():
                    writer.close()
                await asyncio.gather(*self._connections, return_exceptions=True)

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        assert started.wait(10), "the fake PBX did not start"
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            assert self._stop is not None
            loop.call_soon_threadsafe(self._stop.set)
            thread.join(timeout=10)
            loop.close()
