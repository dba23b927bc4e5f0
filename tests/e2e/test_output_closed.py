"""A command whose reader goes away (`cdrgate download -o - | head`) stops as a shell reports
SIGPIPE: exit 141, nothing on stderr, and not the exit 1 that says the work failed."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.conftest import Served

WHOLE_SEED = ["--start", "2020-01-01 00:00:00", "--end", "2030-12-31 23:59:59"]


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
    reader, writer = os.pipe()
    os.close(reader)  # the reader went away before the first line
    try:
        child = subprocess.run(
            [sys.executable, "-m", "cdrgate", "db", "status", "--database", database],
            stdout=writer, stderr=subprocess.PIPE, cwd=tmp_path, timeout=60,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert child.returncode == 141, child.stderr
    assert child.stderr == b""
