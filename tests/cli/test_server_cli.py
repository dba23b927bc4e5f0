"""The server-side commands: api-user, import, seed, db — adapters with clean errors."""

from __future__ import annotations

from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.passwords import md5_hex
from cdrgate.services.auth import AuthService
from cdrgate.settings import Settings
from tests.conftest import make_cdr

runner = CliRunner()


def invoke(database_url: str, *args: str, stdin: str | None = None):
    return runner.invoke(app, [*args, "--database", database_url], input=stdin)


def test_api_user_from_stdin_can_log_in_and_is_stored_hashed(db, database_url, clock):
    result = invoke(
        database_url, "api-user", "set", "crm", "--password-stdin", stdin="s3cret-pass\n"
    )
    assert result.exit_code == 0, result.output
    token = AuthService(db, Settings(), clock).login("crm", md5_hex("s3cret-pass"), "127.0.0.1", {})
    assert len(token) == 32
    with db.read() as conn:
        stored = " ".join(
            str(v) for row in conn.exec_driver_sql("SELECT * FROM api_account") for v in row
        )
    assert "crm" in stored and "scrypt$" in stored
    assert "s3cret-pass" not in stored and md5_hex("s3cret-pass") not in stored


def test_generated_password_is_printed_once_and_works(db, database_url, clock):
    result = invoke(database_url, "api-user", "set", "crm", "--generate")
    password = result.stdout.strip()
    assert result.exit_code == 0 and len(password) >= 16
    assert AuthService(db, Settings(), clock).login("crm", md5_hex(password), "127.0.0.1", {})


def test_short_password_is_refused_without_traceback(database_url):
    result = invoke(database_url, "api-user", "set", "crm", "--password-stdin", stdin="short\n")
    assert result.exit_code == 2
    assert "at least 8 characters" in result.output and "Traceback" not in result.output


def test_no_password_source_is_a_usage_error(database_url):
    result = invoke(database_url, "api-user", "set", "crm")
    assert result.exit_code == 2 and "--password-stdin" in result.output


def test_list_and_delete_users(db, database_url):
    invoke(database_url, "api-user", "set", "b-user", "--generate")
    invoke(database_url, "api-user", "set", "a-user", "--generate")
    listed = invoke(database_url, "api-user", "list").stdout.splitlines()
    assert [line.split() for line in listed] == [["a-user", "all"], ["b-user", "all"]]
    assert invoke(database_url, "api-user", "delete", "a-user").exit_code == 0
    assert invoke(database_url, "api-user", "delete", "a-user").exit_code == 2


def test_import_reports_counts_and_bad_files(database_url, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(make_cdr(callid="1").csv_line() + make_cdr(callid="2").csv_line())
    bad = tmp_path / "bad.csv"
    bad.write_text(make_cdr(callid="3").csv_line() + "1,2,3\n")
    result = invoke(database_url, "import", str(good), str(bad), str(good))
    assert result.exit_code == 1
    assert "good.csv: 2 rows, 2 new, 0 already present" in result.stdout
    assert "good.csv: 2 rows, 0 new, 2 already present" in result.stdout
    assert f"{bad}:2: expected 14 columns, found 3" in result.stderr
    assert "Traceback" not in result.output


def test_import_of_a_missing_file_says_no_such_file_without_a_line_number(database_url, tmp_path):
    result = invoke(database_url, "import", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope.csv'}: no such file" in result.stderr
    assert "nope.csv:0:" not in result.stderr


def test_a_hostile_duration_is_a_clear_refusal_and_the_other_files_are_imported(
    database_url, tmp_path
):
    first, last = tmp_path / "first.csv", tmp_path / "last.csv"
    first.write_text(make_cdr(callid="1").csv_line())
    last.write_text(make_cdr(callid="2").csv_line())
    hostile = tmp_path / "hostile.csv"
    hostile.write_text(make_cdr(callid="3").csv_line().replace(",42,", f",{2**63},", 1))
    result = invoke(database_url, "import", str(first), str(hostile), str(last))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{hostile}:1: callduraction is out of range" in result.stderr
    assert "first.csv: 1 rows, 1 new" in result.stdout
    assert "last.csv: 1 rows, 1 new" in result.stdout


def test_seed_then_db_status(database_url):
    result = invoke(database_url, "seed", "--count", "1000", "--seed", "5")
    assert result.exit_code == 0 and "seeded 1000 new CDRs" in result.stdout
    assert invoke(database_url, "db", "status").exit_code == 0


def test_unsupported_database_url_is_a_clear_error():
    result = runner.invoke(app, ["api-user", "list", "--database", "mysql://x/y"])
    assert result.exit_code == 2 and "unsupported database" in result.output


def test_unreachable_database_is_a_clear_error():
    url = "postgresql://nobody@127.0.0.1:1/nothing"  # nothing listens on port 1
    result = runner.invoke(app, ["api-user", "list", "--database", url])
    assert result.exit_code == 3 and "database unavailable" in result.output


def test_error_messages_print_user_data_verbatim(database_url, tmp_path):
    # A file name or CSV cell that looks like console markup or an emoji code must neither
    # crash the CLI nor be rewritten.
    bad = tmp_path / "[bold]calls :ab:.csv"
    bad.write_text(make_cdr().csv_line().replace(",42,34,", ",42,[/x] :ab:,"))
    result = invoke(database_url, "import", str(bad))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{bad}:1: talkduraction is not a whole number of seconds: '[/x] :ab:'" in result.stderr


def test_serve_with_a_port_past_65535_is_a_usage_error_not_a_traceback(database_url):
    for args, env in ((["--port", "99999"], {}), ([], {"CDRGATE_PORT": "70000"})):
        result = runner.invoke(app, ["serve", *args, "--database", database_url], env=env)
        assert result.exit_code == 2, result.output
        assert "65535" in result.output and "Traceback" not in result.output
        assert not isinstance(result.exception, OverflowError)
