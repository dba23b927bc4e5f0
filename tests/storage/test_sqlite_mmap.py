"""A SQLite store read through a memory map (the setting ``sqlite_mmap_mib``): a server's
own connections and its loop's get it, a download's export pool does not (its RSS stays
flat) nor does a store the other commands open, 0 turns it off, and a bad value is a clear
configuration error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cdrgate.app import serving_database
from cdrgate.config import read_config
from cdrgate.errors import UsageError
from cdrgate.settings import Settings
from cdrgate.storage import schema
from cdrgate.storage.db import Database

MIB = 1024 * 1024


def _mmap_size(db: Database) -> dict[str, int]:
    """PRAGMA mmap_size as each of the store's connections sees it."""

    def on_loop_read() -> int:
        with db.read() as conn:
            return int(conn.exec_driver_sql("PRAGMA mmap_size").scalar_one())

    with db.read() as conn:
        pooled = int(conn.exec_driver_sql("PRAGMA mmap_size").scalar_one())
    with db.read_export() as conn:
        export = int(conn.exec_driver_sql("PRAGMA mmap_size").scalar_one())
    loop = asyncio.run(db.run_on_loop(on_loop_read))
    return {"pooled": pooled, "loop": loop, "export": export}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db = Database(url)
    schema.upgrade(db)
    db.dispose()
    return url


def test_a_served_sqlite_store_is_read_through_a_map_but_not_by_exports(store_url):
    db = serving_database(Settings.from_env({}, database=store_url))
    try:
        assert _mmap_size(db) == {"pooled": 1024 * MIB, "loop": 1024 * MIB, "export": 0}
    finally:
        db.dispose()


def test_a_store_opened_by_other_commands_is_not_mapped(store_url):
    db = Database(store_url)
    try:
        assert _mmap_size(db) == {"pooled": 0, "loop": 0, "export": 0}
    finally:
        db.dispose()


def test_the_map_size_is_the_setting_and_0_turns_it_off(store_url):
    for mib, expected in ((16, 16 * MIB), (0, 0)):
        env = {"CDRGATE_SQLITE_MMAP_MIB": str(mib)}
        db = serving_database(Settings.from_env(env, database=store_url))
        try:
            assert _mmap_size(db) == {"pooled": expected, "loop": expected, "export": 0}
        finally:
            db.dispose()


def test_a_negative_or_junk_map_size_is_a_clear_configuration_error(tmp_path):
    for raw in ("-1", "lots"):
        with pytest.raises(UsageError, match="CDRGATE_SQLITE_MMAP_MIB"):
            Settings.from_env({"CDRGATE_SQLITE_MMAP_MIB": raw})
    config = tmp_path / "cdrgate.toml"
    config.write_text("sqlite_mmap_mib = -5\n")
    with pytest.raises(UsageError, match="sqlite_mmap_mib: must be 0 or more"):
        read_config(config)
