"""Typer's and click's own usage errors (an unknown or malformed option, a value out of range,
a missing option or argument, an unknown command) are one line on stderr, as cdrgate's own
errors are: ``error: ... (see cdrgate COMMAND --help)``, exit 2, no Rich panel, no colour
when stderr is not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdrgate.cli import app

CDRGATE = Path(sys.executable).parent / "cdrgate"  # the installed script

# (arguments, what the line must name, the command its hint points at: None where click's
# parser raises the error without its context, so without the command it concerns)
USAGE_ERRORS = [
    (["serve", "--port", "99999"], "'--port'", "cdrgate serve"),
    (["serve", "--port", "eighty"], "'--port'", "cdrgate serve"),
    (["serve", "--port"], "'--port' requires an argument", None),
    (["download", "--nope"], "--nope", "cdrgate download"),
    (["download", "--out", "x.csv"], "--output", "cdrgate download"),  # the suggestion
    (["audit", "--outcome", "nah"], "'--outcome'", "cdrgate audit"),
    (["audit", "--limit", "0"], "'--limit'", "cdrgate audit"),
    (["import", "--format", "nope", "calls.csv"], "'--format'", "cdrgate import"),
    (["backup"], "'--output'", "cdrgate backup"),
    (["api-user", "set"], "'name'", "cdrgate api-user set"),
    (["api-user", "delte", "x"], "'delete'", "cdrgate api-user"),
    (["frobnicate"], "'frobnicate'", "cdrgate"),
    (["seve"], "'serve'", "cdrgate"),
    (["--nope"], "--nope", "cdrgate"),
    # raised by cdrgate's own option check, as click's are
    (["seed", "--count", "1", "--start", "someday"], "--start", "cdrgate seed"),
    (["serve", "--log-level", "verbose"], "'--log-level'", "cdrgate serve"),
]


@pytest.mark.parametrize("level", ["warn", "FATAL", "Critical"])
def test_every_log_level_logging_takes_is_still_taken(tmp_path, level):
    # logging's own aliases were served before the check: the run goes on to the next error
    done = _run([str(CDRGATE), "serve", "--log-level", level, "--database", "nosuch://x"], tmp_path)
    assert done.returncode == 2
    assert "--log-level" not in done.stderr and "unsupported database" in done.stderr


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return {**env, "CDRGATE_DATABASE": "sqlite:///never-opened.db", "COLUMNS": "40"}


def _run(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=tmp_path, env=_env()
    )


def _assert_one_line(stderr: str, names: str, command: str | None) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert names in line, line
    if command is not None:
        assert line.endswith(f"(see {command} --help)"), line
    else:
        assert "(see" not in line, line
    assert "\x1b" not in line and "Usage:" not in line and "Traceback" not in line
    assert "Value error," not in line  # pydantic's prefix on a choice Typer refused


@pytest.mark.parametrize(("args", "names", "command"), USAGE_ERRORS)
def test_a_usage_error_is_one_line_and_exit_2(tmp_path, args, names, command):
    done = _run([str(CDRGATE), *args], tmp_path)
    assert done.returncode == 2, done.stderr
    _assert_one_line(done.stderr, names, command)
    assert done.stdout == ""
    assert not (tmp_path / "never-opened.db").exists()


@pytest.mark.parametrize(
    ("args", "names"),
    [(["serve", "--port", "99999"], "'--port'"), (["frobnicate"], "'frobnicate'")],
)
def test_python_m_cdrgate_says_the_same(tmp_path, args, names):
    done = _run([sys.executable, "-m", "cdrgate", *args], tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and names in line, line
    assert line.endswith("--help)"), line


@pytest.mark.parametrize(("args", "names", "command"), USAGE_ERRORS[:6])
def test_in_process_too(args, names, command):
    result = CliRunner().invoke(app, args, env=_env())
    assert result.exit_code == 2, result.output
    _assert_one_line(result.stderr, names, command)


@pytest.mark.parametrize(
    "args", [["--help"], ["-h"], ["serve", "--help"], ["api-user", "set", "-h"]]
)
def test_help_is_still_the_help(tmp_path, args):
    done = _run([str(CDRGATE), *args], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "Options" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("args", [[], ["api-user"]])
def test_a_group_without_a_command_still_prints_its_help(tmp_path, args):
    # click's "no arguments is help" for a group: the help on stdout, exit 2, as before
    done = _run([str(CDRGATE), *args], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Usage:" in done.stdout and "Commands" in done.stdout
    assert done.stderr == ""


def test_ctrl_c_in_a_command_is_still_130_and_says_stopped(db, monkeypatch):
    from cdrgate.cli import users

    def interrupted() -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(users, "read_secret_stdin", interrupted)
    result = CliRunner().invoke(
        app, ["api-user", "set", "crm", "--password-stdin", "--database", db.url]
    )
    assert result.exit_code == 130, result.output
    assert result.stderr.startswith("stopped: Ctrl-C")


def test_ctrl_c_while_the_command_is_found_is_still_130(monkeypatch):
    from cdrgate.cli import commands

    def interrupted(name: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_build", interrupted)
    result = CliRunner().invoke(app, ["stats"])
    assert result.exit_code == 130, result.output
    assert "error:" not in result.stderr
