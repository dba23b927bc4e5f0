"""``cdrgate api-user set --extensions``: scoped accounts from the command line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.passwords import md5_hex
from cdrgate.services.auth import AuthService
from cdrgate.settings import Settings

runner = CliRunner()
PASSWORD = "a long enough password"


def invoke(database_url: str, *args: str, stdin: str | None = None):
    return runner.invoke(app, [*args, "--database", database_url], input=stdin)


def listed(database_url: str) -> list[dict[str, str]]:
    result = invoke(database_url, "api-user", "list", "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def session_scope(db, clock, name: str = "desk") -> str:
    auth = AuthService(db, Settings(), clock)
    token = auth.login(name, md5_hex(PASSWORD), "127.0.0.1", {})
    session = auth.authenticate(token)
    return "all" if session.scope is None else session.scope.render()


def test_a_new_account_with_extensions_is_scoped_and_list_shows_it(db, database_url, clock):
    result = invoke(
        database_url, "api-user", "set", "desk", "--password-stdin",
        "--extensions", "2001, 1000-1099", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert listed(database_url) == [{"name": "desk", "extensions": "1000-1099,2001"}]
    assert invoke(database_url, "api-user", "list").stdout.split() == ["desk", "1000-1099,2001"]
    assert session_scope(db, clock) == "1000-1099,2001"


def test_extensions_alone_rescope_an_account_and_all_clears_it(db, database_url, clock):
    invoke(database_url, "api-user", "set", "desk", "--password-stdin", stdin=PASSWORD + "\n")
    assert listed(database_url) == [{"name": "desk", "extensions": "all"}]
    result = invoke(database_url, "api-user", "set", "desk", "--extensions", "3000-3009")
    assert result.exit_code == 0, result.output
    assert session_scope(db, clock) == "3000-3009"
    invoke(database_url, "api-user", "set", "desk", "--extensions", "all")
    assert session_scope(db, clock) == "all"


def test_a_password_change_keeps_the_scope(db, database_url, clock):
    invoke(database_url, "api-user", "set", "desk", "--generate", "--extensions", "2001")
    result = invoke(
        database_url, "api-user", "set", "desk", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert session_scope(db, clock) == "2001"


@pytest.mark.parametrize(
    ("spec", "says"),
    [("1099-1000", "reversed"), ("10-1099", "same number of digits"), ("sales", "digits")],
)
def test_a_bad_spec_is_one_readable_line_and_a_usage_exit(db, database_url, spec, says):
    invoke(database_url, "api-user", "set", "desk", "--password-stdin", stdin=PASSWORD + "\n")
    result = invoke(database_url, "api-user", "set", "desk", "--extensions", spec)
    assert result.exit_code == 2
    assert says in result.output and "--extensions" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert listed(database_url) == [{"name": "desk", "extensions": "all"}]  # unchanged


def test_scoping_an_unknown_account_is_a_usage_error(db, database_url):
    result = invoke(database_url, "api-user", "set", "nobody", "--extensions", "1000")
    assert result.exit_code == 2 and "no API user 'nobody'" in result.output
