"""Sample Asterisk and FreeSWITCH rows written the way those systems write them, and helpers
to read back what the store holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cdrgate.ingest.push import create_key
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from cdrgate.storage.tables import cdr


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def asterisk_line(**overrides: Any) -> str:
    """A cdr_csv Master.csv line (loguniqueid=yes, loguserfield=yes): strings quoted, numbers
    bare, as cdr_csv writes them. ``uniqueid=None`` drops the two optional columns."""
    values: dict[str, Any] = {
        "accountcode": "", "src": "0215550100", "dst": "1000", "dcontext": "from-trunk",
        "clid": '"Bob" <0215550100>', "channel": "PJSIP/provider-0000001a",
        "dstchannel": "PJSIP/1000-0000001b", "lastapp": "Dial", "lastdata": "PJSIP/1000,30",
        "start": "2026-05-28 10:00:00", "answer": "2026-05-28 10:00:05",
        "end": "2026-05-28 10:01:00", "duration": 60, "billsec": 55,
        "disposition": "ANSWERED", "amaflags": "DOCUMENTATION",
        "uniqueid": "1779962400.26", "userfield": "",
    }  # fmt: skip
    values.update(overrides)
    if values["uniqueid"] is None:
        del values["uniqueid"], values["userfield"]
    return ",".join(
        str(value) if isinstance(value, int) else _quoted(value) for value in values.values()
    )


def freeswitch_line(**overrides: Any) -> str:
    """A mod_cdr_csv line in the default ``example`` template: every field quoted."""
    values: dict[str, Any] = {
        "caller_id_name": "Bob", "caller_id_number": "0215550100",
        "destination_number": "1000", "context": "public",
        "start_stamp": "2026-05-28 10:00:00", "answer_stamp": "2026-05-28 10:00:05",
        "end_stamp": "2026-05-28 10:01:00", "duration": "60", "billsec": "55",
        "hangup_cause": "NORMAL_CLEARING", "uuid": "4f5e8c1a-6b4d-4c2e-9d8e-0a1b2c3d4e5f",
        "bleg_uuid": "", "accountcode": "", "read_codec": "PCMA", "write_codec": "PCMA",
    }  # fmt: skip
    values.update(overrides)
    return ",".join(_quoted(str(value)) for value in values.values())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty store at the schema's head, to copy for each test that needs one."""
    path = tmp_path_factory.mktemp("template") / "empty.db"
    database = Database(f"sqlite:///{path}")
    schema.upgrade(database)
    database.dispose()
    return path


def stored_lines(db: Database) -> list[str]:
    """The stored CDRs as the download would write them, in download order."""
    with db.read() as conn:
        rows = conn.execute(select(cdr.c.line).order_by(cdr.c.ts, cdr.c.callid, cdr.c.sn))
        return [line.rstrip("\n") for line in rows.scalars()]


@pytest.fixture
def ingest_key(db: Database, clock) -> Callable[..., str]:
    def make(name: str = "freepbx", sn: str = "freepbx-1") -> str:
        return create_key(db, name, sn, int(clock() * 1000))

    return make
