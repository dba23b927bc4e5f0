"""The rules every endpoint shares: HTTP 200 envelopes, CORS, methods, paths, bodies."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from starlette.requests import Request

from cdrgate.api.envelope import failure, query_fields, read_json_fields, success
from cdrgate.errors import ApiError, Errno
from tests.conftest import API_MD5, API_USER

CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS, PUT, DELETE",
}


def test_success_and_failure_carry_the_cors_headers(client):
    for body in ({"username": API_USER, "password": API_MD5}, {"username": "x", "password": "y"}):
        response = client.post("/api/v1.1.0/login", json=body)
        assert response.status_code == 200
        assert {k: response.headers[k] for k in CORS} == CORS
        assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1,2]",
        '"text"',
        "{bad",
        "\xff\xfe",
        '{"a": "1"} {"b": "2"}',
        '{"a": "1"}x',
        "{} ]",
    ],
)
def test_body_that_is_not_a_json_object_is_20000(client, body):
    response = client.post(
        "/api/v1.1.0/login",
        content=body.encode("latin-1"),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"status": "Failed", "errno": "20000"}


@pytest.mark.parametrize(
    "body",
    [
        '{"username":"\\ud800","password":"' + API_MD5 + '"}',  # a lone high surrogate
        '{"username":"' + API_USER + '","password":"\\udfff"}',  # a lone low one
        f'{{"username":"{API_USER}","password":"{API_MD5}","\\ud83d":"x"}}',  # as a key
    ],
)
def test_an_unpaired_surrogate_escape_is_20000_not_an_error(client, body, caplog):
    # JSON can spell a string that is not Unicode; it goes no further than a body not UTF-8.
    response = client.post("/api/v1.1.0/login", content=body.encode())
    assert response.json() == {"status": "Failed", "errno": "20000"}
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_surrogate_pair_escape_is_text(client):
    body = f'{{"username":"{API_USER}","password":"{API_MD5}","\\ud83d\\ude00":"x"}}'
    assert client.post("/api/v1.1.0/login", content=body.encode()).json()["status"] == "Success"


def test_xml_body_is_10002(client):
    answer = client.post("/api/v1.1.0/login", content=b"<xml><username>a</username></xml>").json()
    assert answer["errno"] == "10002"


def test_body_over_64_kib_is_refused(client):
    body = '{"username":"' + "a" * 70000 + '","password":"x"}'
    assert client.post("/api/v1.1.0/login", content=body).json()["errno"] == "20000"


@pytest.mark.parametrize("endpoint", ["login", "heartbeat", "logout", "cdr/get_random"])
def test_get_on_a_post_endpoint_is_20001(client, endpoint):
    response = client.get(f"/api/v1.1.0/{endpoint}")
    assert response.status_code == 200
    assert response.json() == {"status": "Failed", "errno": "20001"}


@pytest.mark.parametrize(
    "path", ["/api/v1.1.0/nothing", "/api/v1.1.0/cdr/delete", "/api/v9.9.9/login", "/api/v1.1.0/"]
)
def test_unknown_request_is_10003(client, path):
    response = client.post(path, json={})
    assert response.status_code == 200
    assert response.json() == {"status": "Failed", "errno": "10003"}


def test_doc_typo_path_v1_10_works(client):
    body = {"username": API_USER, "password": API_MD5}
    assert client.post("/api/v1.10/login", json=body).json()["status"] == "Success"


def test_browser_preflight_is_answered(client):
    response = client.options(
        "/api/v1.1.0/login",
        headers={
            "Origin": "http://crm.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"


def test_null_and_nested_values_count_as_missing(client):
    body = {"username": None, "password": {"md5": API_MD5}}
    assert client.post("/api/v1.1.0/login", json=body).json()["errno"] == "10004"


def test_storage_failure_is_an_envelope_not_a_500(client, db, flow):
    token = flow.token()
    with db.write() as conn:  # every get_random reads its token (most store nothing)
        conn.exec_driver_sql("DROP TABLE api_token")
    answer = flow.get_random(token)
    assert answer == {"status": "Failed", "errno": "30003"}


def test_a_peer_that_is_not_an_ip_address_still_works(make_client, api_account):
    # Behind a Unix-socket proxy or in-process, the peer has no IP; the API must not fail.
    http = make_client(ip="unix-socket")
    body = {"username": API_USER, "password": API_MD5}
    assert http.post("/api/v1.1.0/login", json=body).json()["status"] == "Success"


def _request(query: bytes = b"", chunks: tuple[bytes, ...] = (), length: bytes | None = None):
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks or (b"",))
    ]

    async def receive():
        return messages.pop(0)

    headers = [] if length is None else [(b"content-length", length)]
    return Request({"type": "http", "query_string": query, "headers": headers}, receive)


@pytest.mark.parametrize(
    "query",
    [b"", b"&&", b"a", b"a=", b"=b", b"a=1&a=2", b"a=b=c", b"x=1;y=2", b"a+b=c+d%2B%20e",
     b"t=2026-05-01%2000%3A00%3A00", b"v=%E2%82%AC", b"v=%zz%", "v=\xe9".encode("latin-1"),
     b"long=" + b"%41+" * 40],
)  # fmt: skip
def test_query_fields_are_decoded_as_starlettes_query_params(query):
    assert query_fields(_request(query)) == dict(_request(query).query_params)


@pytest.mark.parametrize(
    "chunks",
    [(b'\xef\xbb\xbf{"extid": "1000", "port": 8260}',), (b'  {"ext', b'id": "10', b'00"}\n')],
    ids=["bom-in-one-chunk", "split-over-chunks"],
)
def test_a_body_in_any_chunks_with_or_without_a_bom_is_read_whole(chunks):
    fields = asyncio.run(read_json_fields(_request(chunks=chunks), limit=100))
    assert fields["extid"] == "1000"


def test_duplicate_keys_keep_the_last_value():
    fields = asyncio.run(read_json_fields(_request(chunks=(b'{"a": "1", "a": "2"}',)), 100))
    assert fields == {"a": "2"}


@pytest.mark.parametrize("length", [None, b"101"], ids=["undeclared", "declared"])
def test_a_body_past_the_limit_is_20000_however_it_comes(length):
    request = _request(chunks=(b"{" + b" " * 60, b" " * 60 + b"}"), length=length)
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_json_fields(request, limit=100))
    assert refused.value.errno == Errno.JSON_ONLY


@pytest.mark.parametrize(
    "value", ["1000", "", 'a"b\\c/d', "é ü 中 😀", "\u2028\u2029", "\x00\x1f\x7f\n"]
)
def test_an_answers_body_is_the_compact_json_text_of_its_fields(value):
    # get_random echoes the client's fields: any text comes back as JSON writes it.
    answer = success(number=value, starttime=value, random="0123")
    fields = {"status": "Success", "number": value, "starttime": value, "random": "0123"}
    assert answer.body == json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(bytes(answer.body)) == fields
    assert failure(Errno.CDR_NOT_FOUND).body == b'{"status":"Failed","errno":"20021"}'
