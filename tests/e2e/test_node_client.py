"""A Node.js client written like the public Yeastar integrations, against a real HTTPS serve."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.services.downloads import parse_filter
from cdrgate.storage import cdrs
from cdrgate.storage.db import Database
from tests.servers import PASSWORD_MD5, Server, ServerFactory

SCRIPT = Path(__file__).parent / "clients" / "yeastar_node.js"
START, END = "2026-05-04 00:00:00", "2026-05-08 23:59:59"
NODE = shutil.which("node") or ""
pytestmark = pytest.mark.skipif(not NODE, reason="needs Node.js (node) on PATH")


@pytest.fixture(scope="module")
def https_server(tmp_path_factory) -> Iterator[Server]:
    factory = ServerFactory(tmp_path_factory.mktemp("node"))
    yield factory("--self-signed", scheme="https")
    factory.close()


def stored(server: Server, ext: str) -> list[str]:
    db = Database(server.database_url)
    with db.read() as conn:
        lines = cdrs.read_lines(conn, parse_filter(ext, START, END).query())
    db.dispose()
    return lines


@pytest.mark.parametrize(
    ("version", "method", "ext"),
    [("v1.1.0", "GET", "all"), ("v1.1.0", "POST", "1003,1007"), ("v2.0.0", "GET", "1005")],
)
def test_node_client_downloads_exactly_the_stored_cdrs(https_server, version, method, ext):
    done = subprocess.run(
        [NODE, str(SCRIPT), https_server.base_url, "api", PASSWORD_MD5, version, method, ext, START, END],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = stored(https_server, ext)
    assert result["header"] == ",".join(CSV_COLUMNS)
    assert result["rows"] == len(expected) > 0
    assert ",".join(result["first"]) + "\n" == expected[0]
    assert result["type"].startswith("text/csv")
