"""`serve` migrates an older schema itself and refuses one newer than the code (both engines)."""

from __future__ import annotations

from sqlalchemy import text
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.storage import schema
from cdrgate.storage.db import Database


def test_serve_refuses_a_database_newer_than_this_cdrgate(db: Database):
    with db.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    result = CliRunner().invoke(app, ["serve", "--database", db.url, "--port", "1"])
    assert result.exit_code == 1
    assert "the database schema (9999) is newer than this cdrgate" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output
    with db.read() as conn:  # and left it alone
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"


def test_upgrading_twice_is_harmless(db: Database):
    assert schema.upgrade(db) == schema.head_revision()
    assert schema.is_current(db)
