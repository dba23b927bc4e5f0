"""cdrgate ingest-key: keys are shown once, stored hashed, and deleting one stops its pushes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.ingest.test_newcdr import V2_EVENT

runner = CliRunner()


def invoke(db, *args: str):
    return runner.invoke(app, [*args, "--database", db.url])


def test_a_key_from_the_command_authorises_pushes_until_deleted(db, make_client):
    added = invoke(db, "ingest-key", "add", "asterisk-1", "--sn", "pbx-a")
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    http = make_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert http.post("/api/v2.0.0/cdr/push", json=V2_EVENT, headers=headers).status_code == 200

    listed = invoke(db, "ingest-key", "list")
    assert "asterisk-1  sn=pbx-a  last used " in listed.stdout and key not in listed.stdout
    if db.is_sqlite:
        # The main file and its WAL: a fresh commit may still sit only in the WAL.
        path = Path(db.url.removeprefix("sqlite:///"))
        raw = b"".join(part.read_bytes() for part in path.parent.glob(path.name + "*"))
        assert key.encode() not in raw and b"asterisk-1" in raw

    assert invoke(db, "ingest-key", "delete", "asterisk-1").exit_code == 0
    refused = http.post("/api/v2.0.0/cdr/push", json=V2_EVENT, headers=headers)
    assert refused.status_code == 401


def test_names_are_unique_and_unknown_names_are_usage_errors(db):
    assert invoke(db, "ingest-key", "add", "a").exit_code == 0
    again = invoke(db, "ingest-key", "add", "a")
    assert again.exit_code == 2 and "exists" in again.stderr
    assert invoke(db, "ingest-key", "delete", "nope").exit_code == 2


def test_listing_keys_does_not_migrate_the_database(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a file, but no schema yet
    url = f"sqlite:///{path}"
    result = runner.invoke(app, ["ingest-key", "list", "--database", url])
    assert result.exit_code == 2 and "cdrgate db upgrade" in result.stderr
    db = Database(url)
    try:
        assert schema.current_revision(db) is None
    finally:
        db.dispose()
