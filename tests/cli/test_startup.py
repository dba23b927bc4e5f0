"""What a command that never talks to a PBX loads: the HTTP client (httpx) is a tenth of a
second or more of every start-up, so it comes with the commands that use it, not the CLI."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cdrgate.cdr import CSV_HEADER
from cdrgate.cli import app
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.conftest import make_cdr


def _modules_after(argv: list[str], names: list[str]) -> dict[str, bool]:
    probe = (
        "import sys\n"
        "names = sys.argv[1].split(',')\n"
        "from cdrgate.cli import main\n"
        "sys.argv = ['cdrgate', *sys.argv[2:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "finally:\n"
        "    print(*(name in sys.modules for name in names))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, ",".join(names), *argv],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.stderr == "", done.stderr
    flags = done.stdout.splitlines()[-1].split()
    return dict(zip(names, (flag == "True" for flag in flags), strict=True))


def test_a_store_command_does_not_load_the_http_client(db: Database):
    loaded = _modules_after(["seed", "--count", "0", "--database", db.url], ["httpx"])
    assert loaded == {"httpx": False}


def test_every_sdk_name_loads_on_first_use():
    from cdrgate import client

    assert client.CdrClient.__module__ == "cdrgate.client._client"
    for name in client.__all__:
        assert getattr(client, name) is not None
    assert set(client.__all__) <= set(dir(client))


def test_a_command_loads_its_own_module_and_not_the_others(db: Database):
    names = [
        "cdrgate.cli.data",
        "cdrgate.cli.serve",
        "cdrgate.cli.client_cmds",
        "cdrgate.cli.audit",
    ]
    loaded = _modules_after(["seed", "--count", "0", "--database", db.url], names)
    assert loaded == {
        "cdrgate.cli.data": True,
        "cdrgate.cli.serve": False,
        "cdrgate.cli.client_cmds": False,
        "cdrgate.cli.audit": False,
    }


def test_the_version_loads_no_command_module():
    loaded = _modules_after(["--version"], ["cdrgate.cli.data", "cdrgate.cli.serve"])
    assert loaded == {"cdrgate.cli.data": False, "cdrgate.cli.serve": False}


def test_the_version_does_not_load_sqlalchemy():
    # main's SIGTERM edge (cli.exits) is all --version needs besides the root group.
    loaded = _modules_after(["--version"], ["sqlalchemy", "cdrgate.cli.common"])
    assert loaded == {"sqlalchemy": False, "cdrgate.cli.common": False}


def test_the_help_lists_every_command_without_loading_sqlalchemy():
    # Every command module is imported to list its help; each imports the storage (and with
    # it SQLAlchemy, ~0.3 s) only where a command runs (bench/RESULTS.md, eighteenth round).
    loaded = _modules_after(["--help"], ["sqlalchemy", "cdrgate.cli.serve", "cdrgate.cli.users"])
    assert loaded == {"sqlalchemy": False, "cdrgate.cli.serve": True, "cdrgate.cli.users": True}


def test_the_cdrgate_process_sets_its_imports_aside_from_the_collector(db: Database):
    probe = (
        "import gc, sys\n"
        "from cdrgate.cli import main\n"
        "sys.argv = ['cdrgate', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "finally:\n"
        "    print(gc.get_freeze_count() > 0, gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "seed", "--count", "0", "--database", db.url],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.stderr == "", done.stderr
    assert done.stdout.splitlines()[-1] == "True True"


def test_a_command_run_in_process_leaves_the_collector_as_it_was(db: Database):
    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(app, ["seed", "--count", "0", "--database", db.url])
    assert result.exit_code == 0, result.output
    assert gc.get_freeze_count() == frozen
    assert gc.isenabled()


def test_a_command_on_sqlite_does_not_load_the_postgresql_dialect(db: Database):
    # ~25 ms of every start-up: SQLAlchemy imports a dialect to check an option naming it.
    if not db.is_sqlite:
        pytest.skip("a SQLite store")
    loaded = _modules_after(
        ["seed", "--count", "0", "--database", db.url], ["sqlalchemy.dialects.postgresql"]
    )
    assert loaded == {"sqlalchemy.dialects.postgresql": False}


def test_alembics_metadata_gives_the_recording_index_its_condition_on_postgresql():
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    from cdrgate.storage import tables

    index = next(ix for ix in tables.cdr.indexes if ix.name == "ix_cdr_recording")
    tables.with_postgresql_options()
    created = str(CreateIndex(index).compile(dialect=postgresql.dialect()))
    assert created.endswith("WHERE recording != ''")


def test_a_first_file_into_an_empty_sqlite_store_reaches_its_first_row_without_sqlalchemy(
    tmp_path,
):
    # ~0.45 s of CPU before the first row (bench/RESULTS.md, eighteenth round): the apsw
    # writer and its child use none of it (ingest/first_load.py).
    from cdrgate.ingest import part

    if not part.APSW:
        pytest.skip("apsw is not installed")
    store = tmp_path / "store.db"
    template = Database(f"sqlite:///{store}")
    schema.upgrade(template)
    template.dispose()
    source = tmp_path / "calls.csv"
    source.write_text(CSV_HEADER + "".join(make_cdr(callid=str(n)).csv_line() for n in range(9)))
    probe = (
        "import sys\n"
        "from cdrgate.ingest import apsw_writer, parallel\n"
        "parallel.MIN_BYTES = 1\n"
        "real = apsw_writer.load\n"
        "def load(*args):\n"
        "    print('sqlalchemy at the first row:', 'sqlalchemy' in sys.modules)\n"
        "    return real(*args)\n"
        "apsw_writer.load = load\n"
        "from cdrgate.cli import main\n"
        "sys.argv = ['cdrgate', *sys.argv[1:]]\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "import", str(source), "--database", f"sqlite:///{store}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[:2] == [
        "sqlalchemy at the first row: False",
        f"{source}: 9 rows, 9 new, 0 already present",
    ]


def test_a_sqlite_servers_small_flow_does_not_load_asyncpg(tmp_path):
    # asyncpg runs PostgreSQL's flow statements on the loop (storage/pg_loop.py), imported on
    # a pool's first use only.
    probe = (
        "import sys, time\n"
        "from starlette.testclient import TestClient\n"
        "from cdrgate.app import create_app\n"
        "from cdrgate.services.auth import set_api_user\n"
        "from cdrgate.settings import Settings\n"
        "from cdrgate.storage import schema\n"
        "from cdrgate.storage.db import Database\n"
        "from tests.conftest import API_MD5, API_PASSWORD, API_USER, Flow\n"
        "db = Database(sys.argv[1])\n"
        "schema.upgrade(db)\n"
        "set_api_user(db, API_USER, API_PASSWORD, int(time.time() * 1000))\n"
        "app = create_app(Settings(database=db.url, access_log=False), database=db)\n"
        "with TestClient(app, client=('127.0.0.1', 50000)) as http:\n"
        "    flow = Flow(http)\n"
        "    token = flow.token()\n"
        "    answer = flow.download(token, '1000', '2026-05-28 00:00:00', '2026-05-28 23:59:59')\n"
        "    assert answer.status_code == 200, answer.text\n"
        "db.dispose()\n"
        "print('asyncpg' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, f"sqlite:///{tmp_path / 'store.db'}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
