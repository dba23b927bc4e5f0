"""Schemathesis against the served OpenAPI document, in-process: no 5xx, and no answer that
is outside the documented envelope (status code, content type, body schema, headers)."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from cdrgate.api.openapi import DOCUMENTED_VERSIONS, OPENAPI_PATH, openapi_document
from cdrgate.api.routes import ENDPOINTS
from cdrgate.app import create_app
from cdrgate.settings import Settings
from tests.conftest import API_MD5, API_USER, make_cdr

FUZZ_SEED = 20261128
CASES_PER_OPERATION = 20
# The HTTP-200 envelope is the device's contract, so the checks that expect REST status codes
# (4xx for bad input, 401 without auth, 405 for other methods) do not apply.
ENVELOPE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


LOOPBACK = ("127.0.0.1", 50000)


def from_loopback(app):
    """The in-process transport names its peer "testclient"; real peers are IP addresses."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, "client": LOOPBACK}
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def api_schema(db, clock, api_account, add_cdrs):
    add_cdrs(
        make_cdr(),
        make_cdr(callid="1780000001.2", callfrom="+41445550100", callto="1001", type="Inbound"),
    )
    app = create_app(Settings(database=db.url, access_log=False), database=db, clock=clock)
    with TestClient(app, client=LOOPBACK) as http:
        token = http.post(
            "/api/v1.1.0/login", json={"username": API_USER, "password": API_MD5}
        ).json()["token"]
    schema = schemathesis.openapi.from_asgi(OPENAPI_PATH, from_loopback(app))

    # Half the value of fuzzing is past the token check: hand most cases a live token.
    @schema.auth()
    class LiveToken:
        def get(self, case, context):
            return token

        def set(self, case, data, context):
            if "token" in (case.query or {}):
                case.query = {**case.query, "token": data}

    return schema


OPERATIONS = [
    (method.upper(), path)
    for path, methods in openapi_document()["paths"].items()
    for method in methods
]


# Driven through schemathesis' Python API rather than its pytest plugin, which does not
# support this pytest version; the generation and checks are the same.
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_is_inside_the_documented_envelope(api_schema, method, path):
    operation = api_schema[path][method]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.seed(FUZZ_SEED)
    @hypothesis.settings(
        max_examples=CASES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case):
        case.call_and_validate(checks=ENVELOPE_CHECKS)

    fuzz()


def test_the_document_covers_every_endpoint_of_every_version(client):
    document = client.get(OPENAPI_PATH).json()
    for version in DOCUMENTED_VERSIONS:
        for name, endpoint in ENDPOINTS.items():
            path = f"/api/{version}/{name}"
            assert path in document["paths"], path
            documented = {method.upper() for method in document["paths"][path]}
            assert documented == set(endpoint.methods), path


def test_the_document_is_valid_openapi_3(client):
    document = client.get(OPENAPI_PATH).json()
    assert document["openapi"].startswith("3.")
    # Loading validates it against the OpenAPI 3 meta-schema.
    loaded = schemathesis.openapi.from_dict(document)
    assert len(list(loaded.get_all_operations())) > 10
