"""`serve --log-format json` against a real process: every line it writes is one JSON object."""

from __future__ import annotations

import json
import os

import pytest

from tests.servers import launch

pytestmark = pytest.mark.e2e


def test_every_line_serve_writes_at_start_is_json(tmp_path):
    # The unit's cdrgate.toml sets log_format = "json" for log shippers; the TLS fingerprint
    # and the start warnings were plain text lines among the JSON ones.
    url = f"sqlite:///{tmp_path / 'new.db'}"  # made by serve, with no API user yet
    env = {**os.environ, "CDRGATE_DATABASE": url}
    missing = tmp_path / "none"
    args = ("--log-format", "json", "--self-signed", "--recordings", str(missing))
    server = launch(args, env, tmp_path / "serve.log", tmp_path, scheme="https")
    server.stop()
    entries = [json.loads(line) for line in server.output().splitlines()]
    warning = f"recordings folder {missing} is not a folder: every recording answers 20014"
    assert {"level": "warning", "message": warning} in [
        {"level": e["level"], "message": e["message"]} for e in entries
    ]
    assert any(e["message"].startswith("TLS certificate ") for e in entries)
    assert any(e["message"].startswith("created a new database at ") for e in entries)
    assert any(e["message"].startswith("no API user yet") for e in entries)
