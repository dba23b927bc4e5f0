"""`serve` migrates an older schema itself and refuses one newer than the code (both engines)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic import command
from sqlalchemy import event, inspect, text
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.passwords import md5_hex
from cdrgate.services.auth import AuthService, set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.migrating import alembic_config, migrate


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


def test_accounts_from_before_scopes_read_everything_after_the_upgrade(database_url, clock):
    config = alembic_config()
    db = Database(database_url)
    try:
        with db.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0006")
            conn.commit()
        set_api_user(db, "old", "a long enough password", 0)  # no scope column yet
        schema.upgrade(db)
        auth = AuthService(db, Settings(), clock)
        token = auth.login("old", md5_hex("a long enough password"), "127.0.0.1", {})
        assert auth.authenticate(token).scope is None
    finally:
        db.dispose()


def test_an_upgrade_that_fails_partway_leaves_the_store_at_its_old_revision(database_url):
    # The migrations of one upgrade commit together. On SQLite each used to commit alone: of
    # two processes upgrading one store at once, the second ran a migration the first had
    # already run ("no such index"), and a failure or a kill in the last left the rest done.
    db = Database(database_url)
    try:
        migrate(db, "upgrade", "0013")

        def fail_in_0017(_conn, _cursor, statement, *_args):
            if statement.startswith("DROP INDEX ix_cdr_callfrom_ts"):
                raise RuntimeError("stopped in 0017")

        event.listen(db.engine, "before_cursor_execute", fail_in_0017)
        with pytest.raises(RuntimeError, match="stopped in 0017"):
            schema.upgrade(db)
        event.remove(db.engine, "before_cursor_execute", fail_in_0017)
        assert schema.current_revision(db) == "0013"
        with db.read() as conn:
            assert not inspect(conn).has_table("server_key")  # 0014's, rolled back
        assert schema.upgrade(db) == schema.HEAD
    finally:
        db.dispose()


def test_the_head_constant_is_the_newest_migration():
    assert schema.HEAD == schema.script_head()


def test_a_command_on_a_current_store_does_not_import_alembic(db: Database):
    # Alembic is a tenth of a second of every command's start-up; a current store needs none.
    probe = (
        "import sys\n"
        "from cdrgate.cli import main\n"
        "sys.argv = ['cdrgate', 'seed', '--count', '0', '--database', sys.argv[1]]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('alembic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, db.url], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"
