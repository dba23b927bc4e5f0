"""Request shapes of public third-party Yeastar clients (PHP, Python, Node, Go, C#, Qt, browser
code), replayed against a real ``cdrgate serve``: each test sends what one kind of client sends,
byte for byte where a library would mend it, and asserts what that client relies on.

Shapes already covered elsewhere are not repeated here: raw spaces and raw UTF-8 in a link
(test_serve.py), a Node https client with encodeURIComponent (test_node_client.py), JSON as
text/plain, numbers for strings, lenient link decoding and parameter order (tests/api).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.services.downloads import parse_filter
from cdrgate.storage import cdrs
from cdrgate.storage.db import Database
from tests.raw_http import head_and_body, read_to_close
from tests.servers import PASSWORD_MD5, Server, ServerFactory, prepare_database

pytestmark = pytest.mark.e2e

START, END = "2026-05-04 00:00:00", "2026-05-08 23:59:59"
WAV = b"RIFF" + b"\x00" * 40 + b"call" * 500


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server with a recordings folder holding the file of a call from an E.164 caller (its
    name carries the "+"), and that name."""
    directory = tmp_path_factory.mktemp("wild")
    db = Database(prepare_database(directory))
    with db.read() as conn:
        name = conn.exec_driver_sql(
            "SELECT recording FROM cdr WHERE recording LIKE '%+%' ORDER BY recording LIMIT 1"
        ).scalar_one()
    db.dispose()
    folder = directory / "recordings"
    (folder / "2026" / "05").mkdir(parents=True)
    (folder / "2026" / "05" / name).write_bytes(WAV)
    factory = ServerFactory(directory)
    yield factory("--recordings", str(folder)), name
    factory.close()


@pytest.fixture(scope="module")
def server(recorded: tuple[Server, str]) -> Server:
    return recorded[0]


def stored(server: Server, ext: str, start: str = START, end: str = END) -> str:
    """The CSV the device would send: the header row and the stored rows, as text."""
    db = Database(server.database_url)
    with db.read() as conn:
        lines = cdrs.read_lines(conn, parse_filter(ext, start, end).query())
    db.dispose()
    assert lines, "the test range must hold CDRs"
    return ",".join(CSV_COLUMNS) + "\n" + "".join(lines)


def send(server: Server, head: str, body: bytes = b"") -> tuple[bytes, bytes]:
    """One request on its own connection (``head`` without its blank line): the answer's head
    and body (as sent: not de-chunked), read as far as its framing says, since a client that
    keeps the connection alive does not wait for the close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        received = b""
        while b"\r\n\r\n" not in received:
            received += _more(sock)
        answer_head, _, rest = received.partition(b"\r\n\r\n")
        lower = answer_head.lower()
        length = next(
            (
                int(line[15:])
                for line in lower.split(b"\r\n")
                if line.startswith(b"content-length:")
            ),
            None,
        )
        if length is not None:
            while len(rest) < length:
                rest += _more(sock)
        elif b"transfer-encoding: chunked" in lower:
            while not rest.endswith(b"\r\n0\r\n\r\n") and rest != b"0\r\n\r\n":
                rest += _more(sock)
        else:
            rest += read_to_close(sock)
        return answer_head, rest


def _more(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed before its answer was whole"
    return chunk


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            return out
        out += rest[:length]
        body = rest[length + 2 :]


def login_json(server: Server, version: str = "v1.1.0", **extra: object) -> str:
    body = json.dumps({"username": "api", "password": PASSWORD_MD5, "port": "8260", **extra})
    _, answer = send(
        server,
        f"POST /api/{version}/login HTTP/1.1\r\nHost: pbx\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}",
        body.encode(),
    )
    return str(json.loads(answer)["token"])


def test_guzzle_posts_json_with_a_utf8_charset_and_then_the_echoed_link_with_no_body(server):
    # A Laravel console command (Guzzle): get_random with 'json' => [...] plus its own
    # "Content-Type: application/json; charset=utf8" and a Content-Length it computed with
    # strlen(json_encode(...)); then the link built from the *echoed* times, POSTed with no
    # body at all (no Content-Length either: a bodiless POST), the answer trim()med and read
    # by cell index [0]..[13], the wait computed as [4] - [5].
    token = login_json(server)
    body = json.dumps({"extid": "all", "starttime": START, "endtime": END}).encode()
    head, answer = send(
        server,
        f"POST /api/v1.1.0/cdr/get_random?token={token} HTTP/1.1\r\nHost: pbx:8088\r\n"
        "User-Agent: GuzzleHttp/7\r\nConnection: close\r\n"
        f"Content-Type: application/json; charset=utf8\r\nContent-Length: {len(body)}",
        body,
    )
    echo = json.loads(answer)
    assert echo["status"] == "Success" and (echo["starttime"], echo["endtime"]) == (START, END)
    link = (
        f"/api/v1.1.0/cdr/download?extid=all&starttime={echo['starttime']}"
        f"&endtime={echo['endtime']}&token={token}&random={echo['random']}"
    ).replace(" ", "%20")  # Guzzle's PSR-7 Uri encodes the spaces it was given
    head, answer = send(server, f"POST {link} HTTP/1.1\r\nHost: pbx:8088\r\nConnection: close")
    assert head.startswith(b"HTTP/1.1 200")
    text = dechunk(answer).decode().strip()
    assert text + "\n" == stored(server, "all")
    for line in text.split("\n")[1:]:
        cells = line.split(",")
        assert len(cells) == 14
        assert int(cells[4]) - int(cells[5]) >= 0


def test_go_net_http_sorted_form_encoded_link_for_a_v2_number_list(server):
    # A Go tool: login with http.Post(url, "application/json", ...) at the docs' typo path
    # /api/v1.10/, then url.Values{}.Encode() for every query: keys sorted (endtime, number,
    # random, starttime, token), spaces as "+", ":" as %3A, "," as %2C; Go's transport adds
    # "Accept-Encoding: gzip" and its own User-Agent. It writes the body to a .csv file as is.
    go = "User-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip"
    body = json.dumps({"password": PASSWORD_MD5, "port": "8260", "username": "api"}).encode()
    _, answer = send(
        server,
        f"POST /api/v1.10/login HTTP/1.1\r\nHost: pbx:8088\r\n{go}\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: application/json",
        body,
    )
    token = json.loads(answer)["token"]
    ask = json.dumps({"endtime": END, "number": "1003,1007", "starttime": START}).encode()
    _, answer = send(
        server,
        f"POST /api/v2.0.0/cdr/get_random?{urlencode({'token': token})} HTTP/1.1\r\n"
        f"Host: pbx:8088\r\n{go}\r\nContent-Length: {len(ask)}\r\nContent-Type: application/json",
        ask,
    )
    random = json.loads(answer)["random"]
    query = urlencode(
        sorted({"number": "1003,1007", "starttime": START, "endtime": END,
                "token": token, "random": random}.items())
    )  # fmt: skip
    assert "+" in query and "%3A" in query and "%2C" in query
    head, answer = send(
        server, f"GET /api/v2.0.0/cdr/download?{query} HTTP/1.1\r\nHost: pbx:8088\r\n{go}"
    )
    assert head.startswith(b"HTTP/1.1 200") and b"content-encoding" not in head.lower()
    assert dechunk(answer).decode() == stored(server, "1003,1007")


def qt_json(fields: dict[str, object]) -> bytes:
    """``QJsonDocument(object).toJson()``: keys sorted (a QJsonObject is), 4-space indents,
    a trailing newline."""
    return (json.dumps(fields, indent=4, sort_keys=True) + "\n").encode()


def test_qt_posts_indented_json_with_qts_default_form_content_type(recorded):
    # A Qt/C++ recording client: QNetworkAccessManager::post with no Content-Type set for
    # get_random, so Qt sends application/x-www-form-urlencoded; the body is
    # QJsonDocument::toJson(), indented with a trailing newline; login at /api/v1.10/ with
    # "port" an int. The link is a QString with the name pasted in (QUrl leaves "+" as it
    # is), fetched with GET, and its bytes appended to a file named after the recording.
    server, name = recorded
    body = qt_json({"username": "api", "password": PASSWORD_MD5, "port": 8260, "url": "127.0.0.1"})
    _, answer = send(
        server,
        "POST /api/v1.10/login HTTP/1.1\r\nHost: pbx:8088\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: Keep-Alive\r\nAccept-Encoding: gzip, deflate"
        "\r\nAccept-Language: en-US,*\r\nUser-Agent: Mozilla/5.0",
        body,
    )
    token = json.loads(answer)["token"]
    ask = qt_json({"recording": name})
    _, answer = send(
        server,
        f"POST /api/v1.1.0/recording/get_random?token={token} HTTP/1.1\r\nHost: pbx:8088\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(ask)}\r\nConnection: Keep-Alive",
        ask,
    )
    echo = json.loads(answer)
    assert echo["recording"] == name
    head, answer = send(
        server,
        f"GET /api/v1.1.0/recording/download?recording={name}&random={echo['random']}"
        f"&token={token} HTTP/1.1\r\nHost: pbx:8088\r\nConnection: close",
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert answer == WAV


@pytest.mark.parametrize(
    "style",
    [
        # NestJS (node-fetch) and Python (str.format + requests.get): the name pasted as is,
        # in the docs' order recording, random, token.
        "pasted",
        # A Node service: every value through encodeURIComponent ("+" as %2B), with
        # "Accept: application/octet-stream"; it keeps the Content-Type for the file.
        "encodeURIComponent",
        # Odoo (Python): urlencode() of a dict, the token added last.
        "urlencode",
    ],
)
def test_recording_links_as_each_client_builds_them(recorded, style):
    server, name = recorded
    token = login_json(server)
    body = json.dumps({"recording": name}).encode()
    _, answer = send(
        server,
        f"POST /api/v1.1.0/recording/get_random?token={token} HTTP/1.1\r\nHost: pbx\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close",
        body,
    )
    random = json.loads(answer)["random"]
    if style == "pasted":
        query = f"recording={name}&random={random}&token={token}"
    elif style == "encodeURIComponent":
        query = "&".join(
            f"{key}={quote(value, safe='')}"
            for key, value in (("recording", name), ("random", random), ("token", token))
        )
    else:
        query = urlencode({"recording": name, "random": random, "token": token})
    assert ("+" in query) == (style == "pasted")
    head, answer = send(
        server,
        f"GET /api/v1.1.0/recording/download?{query} HTTP/1.1\r\nHost: pbx\r\n"
        "Accept: application/octet-stream\r\nConnection: close",
    )
    assert b"content-type: audio/wav" in head.lower()
    assert answer == WAV


def test_a_recording_fetched_over_http_1_0_comes_with_its_length(recorded):
    # PHP's file_get_contents() of the link: HTTP/1.0, no chunked decoding; the file is
    # written with file_put_contents as it arrives.
    server, name = recorded
    token = login_json(server)
    body = json.dumps({"recording": name}).encode()
    _, answer = send(
        server,
        f"POST /api/v1.1.0/recording/get_random?token={token} HTTP/1.0\r\nHost: pbx\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}",
        body,
    )
    random = json.loads(answer)["random"]
    head, answer = send(
        server,
        f"GET /api/v1.1.0/recording/download?recording={name}&random={random}&token={token}"
        " HTTP/1.0\r\nHost: pbx",
    )
    assert f"content-length: {len(WAV)}".encode() in head.lower()
    assert answer == WAV


def test_expect_100_continue_gets_its_interim_answer_before_the_body(server):
    # .NET Framework's HttpClient sends "Expect: 100-continue" with every POST body, and PHP
    # curl with any over 1024 bytes (a long extid list): the client waits for
    # "100 Continue" (350 ms, 1 s) before it sends the body.
    token = login_json(server)
    extensions = ",".join(str(1000 + n) for n in range(300))
    body = json.dumps({"extid": extensions, "starttime": START, "endtime": END}).encode()
    assert len(body) > 1024
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"POST /api/v1.1.0/cdr/get_random?token={token} HTTP/1.1\r\nHost: pbx\r\n"
            "Content-Type: application/json; charset=utf-8\r\nExpect: 100-continue\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        sock.settimeout(5)  # well past any client's wait: the interim answer came, or not
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        sock.settimeout(30)
        _, answer = head_and_body(read_to_close(sock))
    echo = json.loads(answer)
    assert echo["status"] == "Success" and echo["extid"] == extensions


def test_one_kept_alive_connection_carries_a_whole_flow_twice(server):
    # requests.Session, .NET's HttpClient, Node's keep-alive agent and Guzzle reuse one
    # connection: login, get_random, the chunked download, again, then logout.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    json_head = {"Content-Type": "application/json"}

    def call(method: str, path: str, body: dict[str, str] | None = None) -> bytes:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers=json_head if payload else {})
        answer = conn.getresponse()
        assert answer.status == 200 and not answer.will_close
        return answer.read()

    try:
        login = {"username": "api", "password": PASSWORD_MD5, "port": "8260"}
        token = json.loads(call("POST", "/api/v1.1.0/login", login))["token"]
        first = conn.sock
        for ext in ("all", "1005"):
            ask = {"extid": ext, "starttime": START, "endtime": END}
            random = json.loads(call("POST", f"/api/v1.1.0/cdr/get_random?token={token}", ask))[
                "random"
            ]
            link = (
                f"/api/v1.1.0/cdr/download?extid={ext}&starttime={quote(START)}"
                f"&endtime={quote(END)}&token={token}&random={random}"
            )
            assert call("GET", link).decode() == stored(server, ext)
        assert json.loads(call("POST", f"/api/v1.1.0/logout?token={token}")) == {
            "status": "Success"
        }
        assert conn.sock is first  # never reconnected
    finally:
        conn.close()


def test_python_requests_with_a_stray_charset_header_and_a_bodiless_logout(server):
    # A Python script: HEADERS = {'Content-type': 'application/json', 'charset': 'utf-8'}
    # on every call (a "charset" header of its own), logout POSTed with those headers and
    # no body (Content-Length: 0), success judged by 'Success' in r.text.
    stray = "Content-type: application/json\r\ncharset: utf-8\r\nUser-Agent: python-requests/2"
    body = json.dumps({"username": "api", "password": PASSWORD_MD5, "port": "8260"}).encode()
    _, answer = send(
        server,
        f"POST /api/v1.1.0/login HTTP/1.1\r\nHost: pbx\r\n{stray}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close",
        body,
    )
    token = json.loads(answer)["token"]
    _, answer = send(
        server,
        f"POST /api/v1.1.0/logout?token={token} HTTP/1.1\r\nHost: pbx\r\n{stray}\r\n"
        "Content-Length: 0\r\nConnection: close",
    )
    assert "Success" in answer.decode()
    _, answer = send(
        server,
        f"POST /api/v1.1.0/heartbeat?token={token} HTTP/1.1\r\nHost: pbx\r\n{stray}\r\n"
        "Content-Length: 2\r\nConnection: close",
        b"{}",
    )
    assert json.loads(answer) == {"status": "Failed", "errno": "20004"}


def test_php_json_encode_escapes_the_slash_of_an_event_url(server):
    # PHP's json_encode() escapes "/" as "\/" unless told not to: the event URL of a login or
    # heartbeat arrives as "110.22.2.3:8260\/report" (a CRM's cURL login, urltag "1").
    body = (
        b'{"username":"api","password":"%s","port":"8260","version":"1.0.2",'
        b'"url":"127.0.0.1:8260\\/report","urltag":"1"}' % PASSWORD_MD5.encode()
    )
    _, answer = send(
        server,
        "POST /api/v1.1.0/login HTTP/1.1\r\nHost: pbx\r\nContent-Type: application/json\r\n"
        f"Accept: */*\r\nContent-Length: {len(body)}\r\nConnection: close",
        body,
    )
    token = json.loads(answer)["token"]
    heartbeat = b'{"url":"127.0.0.1:8260\\/report","urltag":"1"}'
    _, answer = send(
        server,
        f"POST /api/v1.1.0/heartbeat?token={token} HTTP/1.1\r\nHost: pbx\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(heartbeat)}\r\nConnection: close",
        heartbeat,
    )
    assert json.loads(answer) == {"status": "Success"}


def test_odoo_logs_in_without_a_port(server):
    # Odoo's Yeastar S connector logs in with username and password only (no "port": it
    # takes no events), keeps the token 29 minutes, and logs in again on errno "20004".
    body = json.dumps({"username": "api", "password": PASSWORD_MD5}).encode()
    _, answer = send(
        server,
        "POST /api/v1.1.0/login HTTP/1.1\r\nHost: pbx\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close",
        body,
    )
    token = json.loads(answer)["token"]
    assert len(token) == 32


def test_a_browser_posting_the_link_cross_origin_gets_the_csv_after_its_preflight(server):
    # A React page: axios.post(link, {responseType: 'blob'}) from another origin, which the
    # browser precedes by a preflight (the JSON body makes it non-simple). The preflight must
    # not spend the random; the CSV must carry the CORS headers or the page never sees it.
    token = login_json(server)
    body = json.dumps({"extid": "all", "starttime": START, "endtime": END}).encode()
    _, answer = send(
        server,
        f"POST /api/v1.1.0/cdr/get_random?token={token} HTTP/1.1\r\nHost: pbx\r\n"
        "Origin: http://crm.example\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close",
        body,
    )
    random = json.loads(answer)["random"]
    link = (
        f"/api/v1.1.0/cdr/download?extid=all&starttime={quote(START)}&endtime={quote(END)}"
        f"&token={token}&random={random}"
    )
    head, _ = send(
        server,
        f"OPTIONS {link} HTTP/1.1\r\nHost: pbx\r\nOrigin: http://crm.example\r\n"
        "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n"
        "Connection: close",
    )
    lower = head.lower()
    assert head.startswith(b"HTTP/1.1 200") and b"access-control-allow-origin: *" in lower
    assert b"access-control-allow-headers: content-type" in lower
    blob = b'{"responseType":"blob"}'
    head, answer = send(
        server,
        f"POST {link} HTTP/1.1\r\nHost: pbx\r\nOrigin: http://crm.example\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(blob)}\r\nConnection: close",
        blob,
    )
    lower = head.lower()
    assert b"access-control-allow-origin: *" in lower
    assert b"access-control-expose-headers: content-disposition" in lower
    assert dechunk(answer).decode() == stored(server, "all")


def test_stored_rows_split_on_commas_give_fourteen_cells_for_naive_readers(server):
    # A C# client (StreamReader.ReadLine, line.Split(',')) and Python's csv with
    # quotechar='|' read the file without RFC 4180 quoting: the seeded rows must need none.
    for line in stored(server, "all", "2026-05-01 00:00:00", "2026-05-31 23:59:59").splitlines():
        assert len(line.split(",")) == 14 and '"' not in line
