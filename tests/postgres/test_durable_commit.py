"""A durable write (an acknowledged push, the random-signing key) is flushed before it is
answered, even on a server run with ``synchronous_commit = off`` (a common speed setting,
and the test cluster's): with it a crash lost pushes already answered 200."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.conftest import postgres_schema


def setting(conn: Connection) -> str:
    return str(conn.exec_driver_sql("SELECT current_setting('synchronous_commit')").scalar())


@pytest.mark.parametrize(
    ("server", "durable"),
    [("off", "local"), ("local", "local"), ("on", "on"), ("remote_apply", "remote_apply")],
)
def test_a_durable_write_is_flushed_and_a_stronger_setting_is_kept(server: str, durable: str):
    with postgres_schema() as url:
        parsed = make_url(url)
        options = f"{parsed.query['options']} -csynchronous_commit={server}"
        db = Database(parsed.update_query_dict({"options": options}).render_as_string(False))
        try:
            schema.upgrade(db)
            with db.write(durable=True) as conn:
                assert setting(conn) == durable
            with db.write() as conn:  # for that transaction only: the others keep the server's
                assert setting(conn) == server
        finally:
            db.dispose()
