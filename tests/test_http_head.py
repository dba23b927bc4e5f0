"""A response's head leaves with its first body bytes (``http_head.py``), through the protocol
``serve`` runs: one write for an answer sent whole, the head alone when its body comes later."""

from __future__ import annotations

import asyncio

from uvicorn import Config
from uvicorn.server import ServerState

from cdrgate.http_protocol import LenientHttpToolsProtocol

HEAD = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok"}
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """What the protocol wrote, one entry per write or writelines call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def writelines(self, list_of_data) -> None:
        self.writes.append(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connect(app) -> tuple[LenientHttpToolsProtocol, RecordingTransport]:
    """A connection of the protocol ``serve`` runs, on the running loop, to ``app``."""
    config = Config(app, log_config=None)
    config.load()  # the app as uvicorn wraps it
    protocol = LenientHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _answered(protocol: LenientHttpToolsProtocol) -> None:
    for _ in range(100):  # the request's task, and the turns of the loop it takes
        await asyncio.sleep(0.01)
        if protocol.cycle is not None and protocol.cycle.response_complete:
            return
    raise AssertionError("no answer")


def _writes_answering(app, request: bytes = REQUEST) -> list[bytes]:
    async def main() -> list[bytes]:
        protocol, transport = _connect(app)
        protocol.data_received(request)
        await _answered(protocol)
        protocol.connection_lost(None)
        return transport.writes

    return asyncio.run(main())


def test_an_answer_sent_whole_leaves_in_one_write():
    async def app(scope, receive, send):
        await send(HEAD)
        await send(BODY)

    writes = _writes_answering(app)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\nok")


def test_a_head_whose_body_comes_later_is_written_alone_first():
    async def app(scope, receive, send):
        await send(HEAD)
        await asyncio.sleep(0.03)  # as a large export reads its first page
        await send(BODY)

    writes = _writes_answering(app)
    assert len(writes) == 2
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\n")
    assert writes[1] == b"ok"


def test_100_continue_is_written_at_once_not_held_as_a_head():
    async def app(scope, receive, send):
        await receive()
        await send(HEAD)
        await send(BODY)

    async def main() -> None:
        protocol, transport = _connect(app)
        protocol.data_received(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        await asyncio.sleep(0.03)
        assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        protocol.data_received(b"hi")
        await _answered(protocol)
        protocol.connection_lost(None)
        assert len(transport.writes) == 2 and transport.writes[1].endswith(b"\r\n\r\nok")

    asyncio.run(main())


def test_a_head_request_on_a_closing_connection_is_answered():
    # uvicorn writes no body bytes for HEAD and then closes a connection not kept alive: the
    # held head must go out before the close (curl -I over HTTP/1.0, Connection: close).
    async def app(scope, receive, send):
        await send(HEAD)
        await send(BODY)

    async def main() -> None:
        protocol, transport = _connect(app)
        protocol.data_received(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await _answered(protocol)
        assert transport.closed
        assert len(transport.writes) == 1
        assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert transport.writes[0].endswith(b"\r\n\r\n")

    asyncio.run(main())
