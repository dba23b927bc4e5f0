"""The OpenAPI description of the JSON query API (``/v1/...``), merged into ``/openapi.json``.

Built from the same constants the service validates with (statuses, types, sort orders,
groups, limits), so the document cannot drift from what is accepted.
"""

from __future__ import annotations

from typing import Any, get_args

from cdrgate.api.envelope import QUERY_CORS_HEADERS
from cdrgate.cdr import CSV_COLUMNS
from cdrgate.services.query import DEFAULT_LIMIT, MAX_LIMIT, STATUSES, TYPES
from cdrgate.storage.query import Group, Order

_DURATIONS = ("callduraction", "talkduraction")
_TIME = {
    "type": "string",
    "description": "PBX local time, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`.",
    "example": "2026-05-01 00:00:00",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_TOKEN = _query(
    "token", {"type": "string"}, "The login token, when not sent as `Authorization: Bearer`."
)
_LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "Items per page.",
)
_FILTERS = [
    _query("from", _TIME, "Calls starting at or after this time."),
    _query("until", _TIME, "Calls starting before this time (exclusive)."),
    _query("number", {"type": "string"}, "Comma list: the caller or the callee is one of them."),
    _query("status", {"type": "string", "example": "ANSWERED,NO ANSWER"},
           f"Comma list of {', '.join(STATUSES)}."),
    _query("type", {"type": "string", "example": "Inbound"}, f"Comma list of {', '.join(TYPES)}."),
    _query("trunk", {"type": "string"}, "Source or destination trunk name."),
    _query("did", {"type": "string"}, "DID number."),
    _query("sn", {"type": "string"}, "PBX serial number."),
    _query("has_recording", {"type": "string", "enum": ["true", "false"]},
           "Only calls with (or without) a recording."),
    _query("min_talk", {"type": "integer", "minimum": 0}, "Talk time at least this (s)."),
    _query("max_talk", {"type": "integer", "minimum": 0}, "Talk time at most this (s)."),
    _query("q", {"type": "string"}, "Case-blind substring of caller, callee, DID or trunk."),
]  # fmt: skip


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


_PROBLEMS = {
    "400": _problem("A parameter cannot be used; `parameter` names it."),
    "401": _problem("No token, or an unknown or idle one; `errno` is the device's."),
    "503": _problem(
        "The database is unavailable, or (a CSV answer) too many downloads are in progress: "
        "`errno` 20010 and `Retry-After`."
    ),
}


# On every answer, errors included, so that pages on other origins can read them.
_CORS = {
    name: {"required": True, "schema": {"type": "string", "enum": [value]}}
    for name, value in QUERY_CORS_HEADERS.items()
}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _get(operation_id: str, summary: str, parameters: list[Any], ok: dict[str, Any]) -> Any:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "description": _SCOPED,
            "tags": ["query"],
            "security": [{"Token": []}],
            "parameters": [*parameters, _TOKEN],
            "responses": {
                status: {**answer, "headers": _CORS}
                for status, answer in {"200": ok, **_PROBLEMS}.items()
            },
        }
    }


# What every query answer is limited to (docs/query.md "Scoped accounts").
_SCOPED = (
    "An account limited to extensions (`cdrgate api-user set NAME --extensions ...`) reads only "
    "the CDRs whose caller or callee is one of them: the scope is ANDed with the request's "
    "filters (items, `total`, CSV, changes and statistics alike), and a filter naming "
    "something outside it narrows the answer rather than being refused."
)


def query_paths() -> dict[str, Any]:
    list_params = [
        *_FILTERS,
        _query("order", {"type": "string", "enum": list(get_args(Order))}, "Sort key."),
        _query("direction", {"type": "string", "enum": ["desc", "asc"]}, "Sort direction."),
        _LIMIT,
        _query("cursor", {"type": "string"}, "`next_cursor` of the previous page."),
        _query("count", {"type": "string", "enum": ["true", "false"]}, "Add `total`."),
        _query("format", {"type": "string", "enum": ["json", "csv"]},
               "`csv`: the whole result as the device's CSV (as `Accept: text/csv`)."),
    ]  # fmt: skip
    cdrs_ok = {
        "description": "A page of CDRs, or (CSV asked for) the whole result as CSV.",
        "content": {
            "application/json": {"schema": _ref("CdrPage")},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
    return {
        "/v1/cdrs": _get("cdrs", "Search CDRs: filters, sort, keyset paging.", list_params,
                         cdrs_ok),
        "/v1/cdrs/changes": _get(
            "cdr_changes",
            "Every CDR stored after sequence `after`, in storage order.",
            [_query("after", {"type": "integer", "minimum": 0, "default": 0},
                    "`next_after` of the previous call."), _LIMIT],
            _json("CDRs with their `seq`, and where to continue.", "ChangesPage"),
        ),
        "/v1/stats": _get(
            "stats",
            "Calls, answered calls and seconds per group.",
            [{**_query("group", {"type": "string", "enum": list(get_args(Group))},
                       "Hour or day buckets, weekday, extension, status, type or trunk."),
              "required": True}, *_FILTERS],
            _json("The groups, in key order.", "Stats"),
        ),
    }  # fmt: skip


def _cdr(extra: dict[str, Any]) -> dict[str, Any]:
    fields = {name: {"type": "integer" if name in _DURATIONS else "string"} for name in CSV_COLUMNS}
    properties = {**extra, "id": {"type": "integer"}, **fields}
    return {"type": "object", "required": list(properties), "properties": properties}


def query_schemas() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    return {
        "Cdr": _cdr({}),
        "CdrChange": _cdr({"seq": {"type": "integer"}}),
        "CdrPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": _ref("Cdr")},
                "next_cursor": {"type": "string", "nullable": True},
                "total": count,
            },
        },
        "ChangesPage": {
            "type": "object",
            "required": ["items", "next_after", "last_seq"],
            "properties": {
                "items": {"type": "array", "items": _ref("CdrChange")},
                "next_after": count,
                # How far the feed reaches now: a reader's lag, and where a mirror that
                # copied everything up to now by time windows can follow on from.
                "last_seq": count,
            },
        },
        "Stats": {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "key",
                            "calls",
                            "answered",
                            "talk_seconds",
                            "duration_seconds",
                        ],
                        "properties": {
                            "key": {"type": "string"},
                            "calls": count,
                            "answered": count,
                            "talk_seconds": count,
                            "duration_seconds": count,
                        },
                    },
                }
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "parameter": {"type": "string", "description": "The parameter at fault (400)."},
                "errno": {
                    "type": "string",
                    "description": "The device's errno: a token's (401), 20010 (503, busy).",
                },
            },
        },
    }
