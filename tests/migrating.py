"""Alembic run by hand in tests: a store taken to a given revision of cdrgate's migrations."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from cdrgate.storage import schema
from cdrgate.storage.db import Database


def alembic_config() -> Config:
    """An Alembic configuration of cdrgate's migrations (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    return config


def migrate(db: Database, action: str, revision: str) -> None:
    """``alembic <action> <revision>`` ("upgrade" or "downgrade") on ``db``, committed."""
    config = alembic_config()
    with db.connect() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)
        conn.commit()
