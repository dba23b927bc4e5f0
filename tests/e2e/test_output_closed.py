"""A command whose reader goes away (`cdrgate download -o - | head`) stops as a shell reports
SIGPIPE: exit 141, nothing on stderr, and not the exit 1 that says the work failed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import Served

WHOLE_SEED = ["--start", "2020-01-01 00:00:00", "--end", "2030-12-31 23:59:59"]


def _to_closed_pipe(args: list[str], cwd) -> subprocess.CompletedProcess[bytes]:
    reader, writer = os.pipe()
    os.close(reader)  # the reader went away before the first line
    try:
        return subprocess.run(
            [sys.executable, "-m", "cdrgate", *args],
            stdout=writer, stderr=subprocess.PIPE, cwd=cwd, timeout=60,
        )  # fmt: skip
    finally:
        os.close(writer)


def test_a_download_to_a_closed_pipe_exits_141_quietly(served: Served, tmp_path):
    env = {**os.environ, "CDRGATE_PBX_PASSWORD": served.password}
    command = [sys.executable, "-m", "cdrgate", "download", "--pbx", served.base_url,
               "--username", "api", *WHOLE_SEED, "--output", "-"]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        head = child.stdout.read(200)  # what `head -c 200` reads, then it goes away
        child.stdout.close()
        stderr = child.stderr.read().decode()
        code = child.wait(timeout=60)
    assert head.startswith(b"callid,")
    assert code == 141, stderr
    assert stderr == ""


def test_a_report_to_a_closed_pipe_exits_141_quietly(tmp_path):
    """A command's report goes through rich, whose own handler of a closed pipe exits 1."""
    database = f"sqlite:///{tmp_path / 'cdr.db'}"
    subprocess.run(
        [sys.executable, "-m", "cdrgate", "db", "upgrade", "--database", database],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    child = _to_closed_pipe(["db", "status", "--database", database], tmp_path)
    assert child.returncode == 141, child.stderr
    assert child.stderr == b""


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["--version"]])
def test_help_and_version_to_a_closed_pipe_exit_141_quietly(args, tmp_path):
    """Printed before any command runs, by typer: through rich (help), whose handler exits 1,
    or typer's echo (--version), whose EPIPE handler exits 1 too."""
    child = _to_closed_pipe(args, tmp_path)
    assert child.returncode == 141, child.stderr
    assert child.stderr == b""


def test_a_failed_command_with_stdout_on_dev_null_still_exits_1(tmp_path):
    """Only a stdout that went away makes an exit 1 a closed pipe: one sent to /dev/null from
    the start is not."""
    database = f"sqlite:///{tmp_path / 'cdr.db'}"
    child = subprocess.run(
        [sys.executable, "-m", "cdrgate", "import", str(tmp_path / "missing.csv"),
         "--database", database],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert child.returncode == 1
    assert b"missing.csv: no such file" in child.stderr
