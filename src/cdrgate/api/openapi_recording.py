"""The OpenAPI fragment of recording/get_random and recording/download (see api/openapi.py)."""

from __future__ import annotations

from typing import Any

from cdrgate.recfolder import CONTENT_TYPES, DEFAULT_CONTENT_TYPE

_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_FILE = {"schema": {"type": "string", "format": "binary"}}


def recording_operations(version: str, token: dict[str, Any]) -> dict[str, Any]:
    v = version.replace(".", "_")
    base = f"/api/{version}/recording"
    file_types = {kind: _FILE for kind in sorted({*CONTENT_TYPES.values(), DEFAULT_CONTENT_TYPE})}
    params = [
        {"name": "recording", "in": "query", "required": True, "schema": {"type": "string"}},
        token,
        {"name": "random", "in": "query", "required": True, "schema": {"type": "string"}},
        {
            "name": "Range",
            "in": "header",
            "required": False,
            "description": "One `bytes=` range: 206 with that part. Spends the random.",
            "schema": {"type": "string"},
        },
    ]
    responses = {
        "200": {
            "description": "The file, or a Failed envelope (20012 random invalid, 20014 no "
            "such recording, 20015 wrong client IP, ...).",
            "content": {**file_types, "application/json": {"schema": _ref("Failure")}},
        },
        "206": {"description": "The requested byte range of the file.", "content": file_types},
        "416": {"description": "The range starts past the end of the file."},
    }

    def download(method: str) -> dict[str, Any]:
        return {
            "operationId": f"{v}_recording_download_{method}",
            "summary": "Redeem a one-time recording random: the recording file.",
            "tags": [version],
            "parameters": params,
            "responses": responses,
        }

    return {
        f"{base}/get_random": {
            "post": {
                "operationId": f"{v}_recording_get_random",
                "summary": "Issue a one-time random for one recording (valid 30 s, single use).",
                "tags": [version],
                "parameters": [token],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("RecordingRandomRequest")},
                        "text/plain": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "200": {
                        "description": "Always HTTP 200: Success, or Failed with an errno.",
                        "headers": {
                            "Access-Control-Allow-Origin": {
                                "schema": {"type": "string", "enum": ["*"]}
                            }
                        },
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        _ref("RecordingRandomSuccess"),
                                        _ref("Failure"),
                                    ]
                                }
                            }
                        },
                    }
                },
            }
        },
        f"{base}/download": {"get": download("get"), "post": download("post")},
    }


def recording_schemas() -> dict[str, Any]:
    return {
        "RecordingRandomRequest": {
            "type": "object",
            "required": ["recording"],
            "properties": {
                "recording": {"type": "string", "description": "The file name a CDR carries."},
                "allowedip": {
                    "type": "string",
                    "description": "One more IP address allowed to download (20015 if bad).",
                },
            },
        },
        "RecordingRandomSuccess": {
            "type": "object",
            "required": ["status", "recording", "random"],
            "properties": {
                "status": {"type": "string", "enum": ["Success"]},
                "recording": {"type": "string"},
                "random": _HEX32,
            },
            "additionalProperties": False,
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
