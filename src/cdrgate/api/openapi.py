"""The OpenAPI 3 description of everything cdrgate serves, built from the same tables the
dispatcher uses (endpoint names, selector fields, errnos), served at ``/openapi.json``.

It documents the device's quirks as they are: every API answer is HTTP 200 with a
``Success``/``Failed`` envelope, and the download answers either ``text/csv`` or that envelope.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cdrgate import __version__
from cdrgate.api.openapi_query import query_paths, query_schemas
from cdrgate.api.openapi_recording import recording_operations, recording_schemas
from cdrgate.errors import Errno
from cdrgate.services.auth import EVENT_FIELDS

OPENAPI_PATH = "/openapi.json"
# The versions documented; "v1.10" (a docs typo cdrgate also accepts) is left out on purpose.
DOCUMENTED_VERSIONS = {"v1.1.0": "extid", "v2.0.0": "number"}

_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_PBX_TIME = {
    "type": "string",
    "description": "PBX local wall-clock time, `yyyy-mm-dd hh:mm:ss`.",
    "example": "2026-05-01 00:00:00",
}
_STRING_OR_NUMBER = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def _event_field(name: str, number_too: bool = False) -> dict[str, Any]:
    """An event-push field of login/heartbeat, with the longest value kept (20000 past it;
    20008 for ``port``)."""
    string = {"type": "string", "maxLength": EVENT_FIELDS[name].max_chars}
    return {"oneOf": [string, {"type": "number"}]} if number_too else string


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _success(**fields: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", *fields],
        "properties": {"status": {"type": "string", "enum": ["Success"]}, **fields},
        "additionalProperties": False,
    }


def _envelope(success_schema: str) -> dict[str, Any]:
    return {
        "200": {
            "description": "Always HTTP 200: a Success envelope, or Failed with an errno.",
            "headers": {
                "Access-Control-Allow-Origin": {"schema": {"type": "string", "enum": ["*"]}}
            },
            "content": {
                "application/json": {"schema": {"oneOf": [_ref(success_schema), _ref("Failure")]}}
            },
        }
    }


def _json_body(schema: str, required: bool = True) -> dict[str, Any]:
    # Real clients send JSON as text/plain too; the device (and cdrgate) ignore the header.
    return {
        "required": required,
        "content": {
            "application/json": {"schema": _ref(schema)},
            "text/plain": {"schema": {"type": "string"}},
        },
    }


_TOKEN = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "The login token (32 hex). Missing: 20005; unknown: 20004; idle: 20006.",
    "schema": {"type": "string"},
}


def _operations(version: str, selector: str) -> dict[str, Any]:
    v = version.replace(".", "_")
    download_params = [
        {"name": selector, "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "starttime", "in": "query", "required": True, "schema": _PBX_TIME},
        {"name": "endtime", "in": "query", "required": True, "schema": _PBX_TIME},
        _TOKEN,
        {"name": "random", "in": "query", "required": True, "schema": {"type": "string"}},
    ]
    download_responses = {
        "200": {
            "description": "The CSV file (header row, one line per CDR), or a Failed envelope "
            "(20020 random invalid, 20021 no CDR, 20015 wrong client IP, ...).",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": _ref("Failure")},
            },
        }
    }

    def download(method: str) -> dict[str, Any]:
        return {
            "operationId": f"{v}_cdr_download_{method}",
            "summary": "Redeem a one-time random: the CDR file for the filter.",
            "tags": [version],
            "parameters": download_params,
            "responses": download_responses,
        }

    base = f"/api/{version}"
    random_schema = f"RandomRequest_{v}"
    return {
        f"{base}/login": {
            "post": {
                "operationId": f"{v}_login",
                "summary": "Log in with the md5 of the API password; returns a token.",
                "tags": [version],
                "requestBody": _json_body("LoginRequest"),
                "responses": _envelope("LoginSuccess"),
            }
        },
        f"{base}/heartbeat": {
            "post": {
                "operationId": f"{v}_heartbeat",
                "summary": "Keep the token alive and update the event target.",
                "tags": [version],
                "parameters": [_TOKEN],
                "requestBody": _json_body("HeartbeatRequest", required=False),
                "responses": _envelope("Success"),
            }
        },
        f"{base}/logout": {
            "post": {
                "operationId": f"{v}_logout",
                "summary": "End the session; the token stops working.",
                "tags": [version],
                "parameters": [_TOKEN],
                "responses": _envelope("Success"),
            }
        },
        f"{base}/cdr/get_random": {
            "post": {
                "operationId": f"{v}_cdr_get_random",
                "summary": "Issue a one-time download random (valid 30 s, single use).",
                "tags": [version],
                "parameters": [_TOKEN],
                "requestBody": _json_body(random_schema),
                "responses": _envelope(f"RandomSuccess_{v}"),
            }
        },
        f"{base}/cdr/download": {"get": download("get"), "post": download("post")},
        f"{base}/cdr/push": {
            "post": {
                "operationId": f"{v}_cdr_push",
                "summary": "cdrgate's own: store pushed NewCdr events (all or nothing).",
                "description": "Authorised by an ingest key (`cdrgate ingest-key`), not a token. "
                "The HTTP status tells a retrying sender what to do.",
                "tags": [version],
                "security": [{"IngestKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _ref("NewCdrEvent"),
                                    {"type": "array", "items": _ref("NewCdrEvent")},
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": _push_answer(
                        "Stored, or refused for good (see errno).",
                        {"oneOf": [_ref("PushSuccess"), _ref("PushFailure")]},
                    ),
                    "401": _push_answer("Missing or unknown ingest key.", _ref("PushFailure")),
                    "503": _push_answer(
                        "Store unavailable: send again later.", _ref("PushFailure")
                    ),
                },
            }
        },
    }


def _push_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Failure": {
            "type": "object",
            "required": ["status", "errno"],
            "properties": {
                "status": {"type": "string", "enum": ["Failed"]},
                "errno": {"type": "string", "enum": [e.value for e in Errno]},
            },
            "additionalProperties": False,
        },
        "Success": _success(),
        "PushSuccess": _success(
            received={"type": "string"},
            inserted={"type": "string"},
            duplicates={"type": "string"},
            ignored={"type": "string"},
        ),
        "PushFailure": {
            "type": "object",
            "required": ["status", "errno"],
            "properties": {
                "status": {"type": "string", "enum": ["Failed"]},
                "errno": {"type": "string", "enum": [e.value for e in Errno]},
                "index": {"type": "string", "description": "0-based index of the bad event."},
                "reason": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "NewCdrEvent": {
            "type": "object",
            "description": "A Yeastar NewCdr event (v1 `action` or v2 `event` key); other "
            "events are acknowledged and ignored.",
            "properties": {
                "event": {"type": "string"},
                "action": {"type": "string"},
                "callid": {"type": "string"},
                "timestart": _PBX_TIME,
                "callfrom": {"type": "string"},
                "callto": {"type": "string"},
                "callduraction": _STRING_OR_NUMBER,
                "talkduraction": _STRING_OR_NUMBER,
                "status": {"type": "string"},
                "type": {"type": "string"},
                "sn": {"type": "string"},
            },
        },
        "LoginSuccess": _success(token=_HEX32),
        "LoginRequest": {
            "type": "object",
            "required": ["username", "password"],
            "properties": {
                "username": {"type": "string"},
                "password": {
                    "type": "string",
                    "description": "md5 of the API password, 32 hex characters.",
                },
                "port": _event_field("port", number_too=True),
                "version": _event_field("version"),
                "url": _event_field("url"),
                "urltag": _event_field("urltag", number_too=True),
            },
        },
        "HeartbeatRequest": {
            "type": "object",
            "properties": {
                "ipaddr": _event_field("ipaddr"),
                "port": _event_field("port", number_too=True),
                "url": _event_field("url"),
                "urltag": _event_field("urltag", number_too=True),
                "urlflag": _event_field("urlflag", number_too=True),
                "version": _event_field("version"),
            },
        },
        "Index": {
            "type": "object",
            "required": ["service", "version", "api"],
            "properties": {
                "service": {"type": "string"},
                "version": {"type": "string"},
                "api": {"type": "array", "items": {"type": "string"}},
            },
        },
    }
    for version, selector in DOCUMENTED_VERSIONS.items():
        v = version.replace(".", "_")
        schemas[f"RandomRequest_{v}"] = {
            "type": "object",
            "required": [selector, "starttime", "endtime"],
            "properties": {
                selector: {
                    "type": "string",
                    "description": "`all`, one extension, or a comma-separated list. For an "
                    "account limited to extensions, `all` means its extensions, and other "
                    "extensions in a list select nothing.",
                },
                "starttime": _PBX_TIME,
                "endtime": _PBX_TIME,
                "allowedip": {
                    "type": "string",
                    "description": "One more IP address allowed to download (20015 if bad).",
                },
            },
        }
        schemas[f"RandomSuccess_{v}"] = _success(
            **{selector: {"type": "string"}},
            starttime={"type": "string"},
            endtime={"type": "string"},
            random=_HEX32,
        )
    return schemas


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "operationId": "index",
                "summary": "Service name, version and API versions.",
                "responses": {
                    "200": {
                        "description": "About this server.",
                        "content": {"application/json": {"schema": _ref("Index")}},
                    }
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    for version, selector in DOCUMENTED_VERSIONS.items():
        paths.update(_operations(version, selector))
        paths.update(recording_operations(version, _TOKEN))
    paths.update(query_paths())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "cdrgate: Yeastar S-Series compatible CDR API",
            "version": __version__,
            "description": (
                'Every API answer is HTTP 200 JSON: `{"status":"Success",...}` or '
                '`{"status":"Failed","errno":"NNNNN"}`. Tokens and randoms travel in the '
                "query string. Clients outside the permitted networks get errno 20015."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {**_schemas(), **recording_schemas(), **query_schemas()},
            "securitySchemes": {
                "IngestKey": {"type": "http", "scheme": "bearer"},
                "Token": {"type": "http", "scheme": "bearer"},
            },
        },
    }


async def openapi_endpoint(_request: Request) -> Response:
    return JSONResponse(openapi_document())
