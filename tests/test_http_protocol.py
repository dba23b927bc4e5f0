import asyncio
import inspect
import logging

import pytest
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from cdrgate.http_protocol import LenientHttpToolsProtocol, fix_request_line, known_transfer_coding


@pytest.mark.parametrize(
    ("line", "fixed"),
    [
        (
            b"GET /api/v1.1.0/cdr/download?starttime=2018-11-07 00:00:00&x=1 HTTP/1.1",
            b"GET /api/v1.1.0/cdr/download?starttime=2018-11-07%2000:00:00&x=1 HTTP/1.1",
        ),
        (b"POST /a?b=c d e HTTP/1.0", b"POST /a?b=c%20d%20e HTTP/1.0"),
        (b"GET /a?n=\xc3\xa9&m=\xff HTTP/1.1", b"GET /a?n=%C3%A9&m=%FF HTTP/1.1"),
        (b"GET /a?n=1 \xc3\xa9 HTTP/1.1", b"GET /a?n=1%20%C3%A9 HTTP/1.1"),
        (b"GET /plain HTTP/1.1", b"GET /plain HTTP/1.1"),
        (b"GET /a?b=%C3%A9&c=\t HTTP/1.1", b"GET /a?b=%C3%A9&c=\t HTTP/1.1"),  # the parser's
        (b"garbage without version", b"garbage without version"),
        (b"\x16\x03\x01 \xff", b"\x16\x03\x01 \xff"),  # a TLS hello: the parser refuses it
    ],
)
def test_spaces_and_bytes_past_ascii_in_the_target_are_encoded_and_nothing_else_changes(
    line, fixed
):
    assert fix_request_line(line) == fixed


def test_the_uvicorn_seam_the_protocol_builds_on_is_still_there():
    """LenientHttpToolsProtocol subclasses uvicorn's private httptools protocol: the hooks it
    overrides and the attributes it reads must exist, or the pin in pyproject.toml is wrong."""
    for hook in (
        "connection_made",
        "connection_lost",
        "eof_received",
        "data_received",
        "on_headers_complete",
        "on_body",
        "on_message_complete",
        "on_response_complete",
        "send_400_response",
        "_start_asgi_task",
    ):
        assert callable(getattr(HttpToolsProtocol, hook)), hook
    assert callable(getattr(RequestResponseCycle, "run_asgi", None))
    # Read as uvicorn sets them: the peer (None once it is gone), whether an answer started.
    assert "self.client = get_remote_addr(transport)" in inspect.getsource(
        HttpToolsProtocol.connection_made
    )
    assert "self.response_started = False" in inspect.getsource(RequestResponseCycle.__init__)
    # A cycle writes through its own ``transport`` attribute, which ``http_head`` replaces.
    assert "self.transport = transport" in inspect.getsource(RequestResponseCycle.__init__)
    assert "self.transport.write(" in inspect.getsource(RequestResponseCycle.send)
    # ... and closes through it on a connection not kept alive (``_close_answered``).
    assert "self.transport.close()" in inspect.getsource(RequestResponseCycle.send)
    # The head's headers, lower-cased, as the transfer-coding check reads them.
    assert "self.headers.append((name, value))" in inspect.getsource(HttpToolsProtocol.on_header)
    assert "name = name.lower()" in inspect.getsource(HttpToolsProtocol.on_header)

    async def app(scope, receive, send):  # pragma: no cover - never called
        raise AssertionError

    loop = asyncio.new_event_loop()
    try:
        config = Config(app, timeout_keep_alive=7, log_config=None)
        protocol = LenientHttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        assert protocol.timeout_keep_alive == 7
        assert protocol.loop is loop and protocol.cycle is None
        assert len(protocol.pipeline) == 0 and protocol.flow is None
        assert isinstance(protocol.logger, logging.Logger)
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("headers", "known"),
    [
        ([], True),
        ([(b"host", b"x")], True),
        ([(b"transfer-encoding", b"chunked")], True),
        ([(b"transfer-encoding", b" Chunked ")], True),
        ([(b"transfer-encoding", b"gzip, chunked")], False),
        ([(b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")], False),
        ([(b"transfer-encoding", b"chunked, chunked")], False),
        ([(b"transfer-encoding", b"deflate")], False),
    ],
)
def test_only_chunked_alone_is_a_transfer_coding_the_server_undoes(headers, known):
    assert known_transfer_coding(headers) is known
