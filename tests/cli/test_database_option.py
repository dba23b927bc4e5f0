"""Which commands may create or migrate a store, and what a bad ``--database`` says."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.cli.exits import EXIT_FAILED, EXIT_STORAGE
from cdrgate.services import stores
from cdrgate.storage import schema, sqlite_head
from cdrgate.storage.db import Database
from tests.conftest import postgres_schema
from tests.migrating import alembic_config

runner = CliRunner()
READ_ONLY = [["api-user", "list"], ["audit"], ["stats"]]
ADMIN = [
    ["api-user", "unlock"],
    ["api-user", "delete", "x"],
    ["api-user", "set", "x", "--generate"],
]


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("command_args", READ_ONLY + ADMIN, ids=" ".join)
def test_read_only_and_admin_commands_refuse_a_store_that_does_not_exist(
    command_args, database_url
):
    result = run(*command_args, "--database", database_url)
    assert result.exit_code == 2
    assert "cdrgate db upgrade" in result.stderr
    assert stores.revision(database_url) is None  # nothing was created
    if database_url.startswith("sqlite"):
        assert "no database at" in result.stderr


def test_without_database_option_no_cdrgate_db_appears_in_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDRGATE_DATABASE", raising=False)
    result = run("api-user", "unlock")
    assert result.exit_code == 2 and str(tmp_path / "cdrgate.db") in result.stderr
    # a shell that missed the export is told what names the store, not only how to make one
    assert "--database or CDRGATE_DATABASE" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("creator", [["db", "upgrade"], ["seed", "--count", "3"]], ids=" ".join)
def test_creating_commands_say_where_they_created_the_store(creator, tmp_path):
    path = tmp_path / "new.db"
    result = run(*creator, "--database", f"sqlite:///{path}")
    assert result.exit_code == 0, result.output
    assert f"created a new database at {path}" in result.stderr
    again = run(*creator, "--database", f"sqlite:///{path}")
    assert "created" not in again.stderr


def test_db_upgrade_of_an_empty_postgresql_database_says_it_made_the_tables_there():
    # The database existed (made by its administrator): "created a new database" was untrue.
    with postgres_schema() as url:
        result = run("db", "upgrade", "--database", url)
        assert result.exit_code == 0, result.output
        assert "created cdrgate's tables in the empty database postgresql" in result.stderr
        assert "created a new database" not in result.stderr
        assert "created" not in run("db", "upgrade", "--database", url).stderr


def test_a_store_in_a_missing_directory_names_the_path_and_the_cause(tmp_path):
    path = tmp_path / "no-such-dir" / "x.db"
    result = run("db", "upgrade", "--database", f"sqlite:///{path}")
    assert result.exit_code == 2
    assert f"cannot create the database {path}" in result.stderr
    assert f"the directory {path.parent} does not exist" in result.stderr


def test_a_sqlite_url_with_two_slashes_says_what_a_sqlite_url_looks_like(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("db", "upgrade", "--database", "sqlite://x.db")
    assert result.exit_code == 2
    assert "sqlite:///relative/file.db or sqlite:////absolute/file.db" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_read_only_commands_do_not_touch_a_file_without_a_schema(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    result = run("api-user", "list", "--database", f"sqlite:///{path}")
    # Said as a writer says it: "create it with cdrgate db upgrade" would send the user to a
    # command that refuses this file.
    assert result.exit_code == EXIT_FAILED
    assert "is not a cdrgate database" in result.stderr and "db upgrade" not in result.stderr
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"unrelated"}


@pytest.mark.parametrize("creator", [["db", "upgrade"], ["seed", "--count", "1"]], ids=" ".join)
def test_a_sqlite_file_of_another_application_is_refused_and_left_alone(creator, tmp_path):
    # A --database naming another program's SQLite file used to get cdrgate's fifteen tables
    # made beside its own, and then be served as an empty store.
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    result = run(*creator, "--database", f"sqlite:///{path}")
    assert result.exit_code == EXIT_FAILED, result.output
    assert result.stderr == (
        f"error: sqlite:///{path} is not a cdrgate database (it holds tables but no cdrgate "
        "schema): name another file, or a new one\n"
    )
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"unrelated"}


@pytest.mark.parametrize("command_args", [["db", "upgrade"], ["db", "status"], *READ_ONLY])
def test_a_file_that_is_not_a_database_is_one_line(command_args, tmp_path):
    # It was SQLAlchemy's DatabaseError, a traceback of some sixty lines.
    path = tmp_path / "notes.txt"
    path.write_text("not a database, but long enough for SQLite to read a header from\n" * 4)
    result = run(*command_args, "--database", f"sqlite:///{path}")
    assert result.exit_code == EXIT_STORAGE, result.exception
    assert result.stderr == "error: database unavailable: file is not a database\n"


def _migrate_to_the_revision_before_head(url: str) -> str:
    config = alembic_config()
    previous = ScriptDirectory.from_config(config).get_revision(schema.head_revision())
    assert previous is not None and isinstance(previous.down_revision, str)
    db = Database(url)
    with db.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, previous.down_revision)
        conn.commit()
    db.dispose()
    return previous.down_revision


def test_only_commands_that_write_migrate_an_old_schema(database_url):
    old = _migrate_to_the_revision_before_head(database_url)
    for read_only in READ_ONLY:
        result = run(*read_only, "--database", database_url)
        assert result.exit_code == 1 and "run cdrgate db upgrade" in result.stderr
    assert stores.revision(database_url) == old
    assert run("api-user", "unlock", "--database", database_url).exit_code == 0
    assert stores.revision(database_url) == schema.head_revision()
    assert run("api-user", "list", "--database", database_url).exit_code == 0


def _page_size(path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


@pytest.mark.parametrize("creator", [["db", "upgrade"], ["seed", "--count", "3"]], ids=" ".join)
def test_a_new_store_file_gets_the_new_store_page_size(creator, tmp_path):
    path = tmp_path / "new.db"
    assert run(*creator, "--database", f"sqlite:///{path}").exit_code == 0
    assert _page_size(path) == sqlite_head.NEW_STORE_PAGE_SIZE != 4096
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_existing_store_keeps_its_page_size_and_still_works(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a store made before new stores had their own size
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA journal_mode = WAL")
    url = f"sqlite:///{path}"
    assert run("db", "upgrade", "--database", url).exit_code == 0
    assert run("seed", "--count", "50", "--database", url).exit_code == 0
    assert _page_size(path) == 4096
    result = run("stats", "--database", url)
    assert result.exit_code == 0, result.output
    assert run("seed", "--count", "50", "--seed", "2", "--database", url).exit_code == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM cdr").fetchone()[0] == 100
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize(
    ("url", "shown"),
    [  # a port that is no number; the scheme's colon forgotten
        (
            "postgresql://app:s3cretPW@127.0.0.1:notaport/cdr",
            "postgresql+psycopg://app:***@127.0.0.1:notaport/cdr",
        ),
        ("postgres//app:s3cretPW@127.0.0.1/cdr", "postgres//app:***@127.0.0.1/cdr"),
        (  # the password in the query, as libpq and psycopg take it too
            "postgresql://app@127.0.0.1:notaport/cdr?sslmode=require&password=s3cretPW",
            "postgresql+psycopg://app@127.0.0.1:notaport/cdr?sslmode=require&password=***",
        ),
    ],
)
@pytest.mark.parametrize(
    "command_args", [["stats"], ["backup", "--output", "copy.db"], ["db", "upgrade"]], ids=" ".join
)
def test_a_malformed_database_url_is_one_line_without_its_password(
    url, shown, command_args, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = run(*command_args, "--database", url)
    # Before: the line quoted the whole URL, password and all; backup ended in a traceback.
    assert result.exit_code == 2, result.output
    assert "s3cretPW" not in result.output
    assert result.stderr.splitlines() == [f"error: not a database URL: {shown!r}"]


def test_config_show_hides_a_password_given_in_the_query(monkeypatch):
    # SQLAlchemy hides the user part's password only: the query's was shown in clear, as it
    # was in serve's start line.
    url = "postgresql://app@127.0.0.1/cdr?password=s3cretPW&sslmode=require"
    monkeypatch.setenv("CDRGATE_DATABASE", url)
    result = run("config", "show")
    assert result.exit_code == 0, result.output
    assert "s3cretPW" not in result.output and "password=***" in result.output
