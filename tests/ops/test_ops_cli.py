"""The operator commands through the real CLI: config show, backup, restore, serve's log."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from contextlib import closing

import pytest

from tests.servers import CLI, launch, prepare_database


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_config_show_prints_toml_with_sources_and_no_secret(tmp_path):
    path = tmp_path / "cdrgate.toml"
    path.write_text('database = "postgresql://u:hunter2@h/db"\ndrain_seconds = 5\n')
    env = {**os.environ, "CDRGATE_PORT": "9100"}
    env.pop("CDRGATE_DATABASE", None)
    done = cli("config", "show", "--config", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout
    assert "drain_seconds = 5  # file" in done.stdout
    assert "port = 9100  # env" in done.stdout


def test_serve_refuses_a_bad_config_file_without_a_traceback(tmp_path):
    path = tmp_path / "cdrgate.toml"
    path.write_text("nonsense = 1\n")
    done = cli("serve", "--config", str(path), env=dict(os.environ))
    assert done.returncode == 2
    assert "unknown setting 'nonsense'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.e2e
def test_backup_while_serving_then_restore_only_once_stopped(tmp_path):
    url = prepare_database(tmp_path)
    env = {**os.environ, "CDRGATE_DATABASE": url}
    server = launch((), env, tmp_path / "serve.log", tmp_path)
    backup = tmp_path / "backup.db"
    try:
        done = cli("backup", "--output", str(backup), env=env)
        assert done.returncode == 0, done.stderr
        with closing(sqlite3.connect(backup)) as conn:
            assert conn.execute("SELECT count(*) FROM cdr").fetchone()[0] == 300
        again = cli("backup", "--output", str(backup), env=env)
        assert again.returncode == 1 and "exists" in again.stderr
        refused = cli("restore", str(backup), env=env)
        assert refused.returncode == 1 and "in use" in refused.stderr, refused.stderr
    finally:
        server.stop()
    live = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(live)) as conn, conn:
        conn.execute("DELETE FROM cdr")
    done = cli("restore", str(backup), env=env)
    assert done.returncode == 0, done.stderr
    with closing(sqlite3.connect(live)) as conn:
        assert conn.execute("SELECT count(*) FROM cdr").fetchone()[0] == 300


def test_restore_refuses_a_file_that_is_not_a_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{tmp_path / 'target.db'}"}
    done = cli("restore", str(junk), env=env)
    assert done.returncode == 1 and "not a SQLite database" in done.stderr


def test_restore_of_a_missing_file_names_it_as_a_usage_error(tmp_path):
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{tmp_path / 'cdrgate.db'}"}
    done = cli("restore", str(tmp_path / "nope.db"), env=env)
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path / 'nope.db'}: no such file\n"


def test_backup_of_postgresql_points_to_pg_dump(tmp_path):
    env = {**os.environ, "CDRGATE_DATABASE": "postgresql://u:p@127.0.0.1/db"}
    done = cli("backup", "--output", str(tmp_path / "x"), env=env)
    assert done.returncode == 2 and "pg_dump" in done.stderr


@pytest.mark.e2e
def test_serve_logs_one_start_line_as_json_with_the_password_redacted(tmp_path):
    url = prepare_database(tmp_path)
    env = {**os.environ, "CDRGATE_DATABASE": url}
    server = launch(
        ("--log-format", "json", "--permit", "127.0.0.0/8"), env, tmp_path / "s.log", tmp_path
    )
    server.stop()
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    starts = [line["message"] for line in lines if "starting:" in line["message"]]
    assert len(starts) == 1
    assert "workers=1" in starts[0] and "permit=127.0.0.0/8" in starts[0] and "tls=off" in starts[0]


def test_the_start_line_hides_a_database_password():
    from cdrgate.logsetup import startup_line
    from cdrgate.settings import Settings

    line = startup_line(Settings(database="postgresql://cdrgate:hunter2@db/cdr"), 2, "off")
    assert "hunter2" not in line and "cdrgate:***@db" in line and "workers=2" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--metrics", "maybe"), "--metrics: not a boolean"),
        (("--log-format", "xml"), "--log-format"),
    ],
)
def test_serve_refuses_a_bad_ops_flag_clearly(tmp_path, args, message):
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{tmp_path / 'x.db'}"}
    done = cli("serve", *args, env=env)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_backup_stopped_mid_copy_leaves_no_partial_file(tmp_path, monkeypatch):
    # A Ctrl-C (or SIGTERM's Terminated) arrives as the copy returns: the half copy went
    # only on an SQLite error, and a later backup to that name found a stray .partial.
    from cdrgate import backup as backups

    source = tmp_path / "store.db"
    with closing(sqlite3.connect(source)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    connect = backups._connect

    class Interrupted:  # the copy's connection, stopped as it ends
        def __init__(self, real: sqlite3.Connection) -> None:
            self.real = real

        def backup(self, target: sqlite3.Connection) -> None:
            self.real.backup(target)
            raise KeyboardInterrupt

        def close(self) -> None:
            self.real.close()

    def connect_stopped(path, *, readonly=False):
        real = connect(path, readonly=readonly)
        return Interrupted(real) if readonly else real

    monkeypatch.setattr(backups, "_connect", connect_stopped)
    output = tmp_path / "copy.db"
    with pytest.raises(KeyboardInterrupt):
        backups.backup(f"sqlite:///{source}", output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]
