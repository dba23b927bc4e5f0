"""import --follow: lines are stored as they are written, through rotation, truncation and
restarts, without losing or repeating one. Every wait has a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdrgate.ingest.follow import Follower
from cdrgate.ingest.formats import Format, row_mapper
from cdrgate.ingest.lines import Rejected
from cdrgate.ingest.profile import SourceProfile
from tests.ingest.conftest import asterisk_line, stored_lines
from tests.waiting import DEADLINE_S, wait_until

MAPPER = row_mapper(Format.asterisk, SourceProfile.build("pbx-a"))


def call(n: int, **overrides) -> str:
    return asterisk_line(uniqueid=f"1779962400.{n}", **overrides) + "\n"


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


class Running:
    """A Follower on its own thread, as `cdrgate import --follow` runs it."""

    def __init__(self, db, path: Path) -> None:
        self.reports: list[Rejected] = []
        self.follower = Follower(db, path, MAPPER, self.reports.append)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.follower.run, args=(self.stop, 0.02))
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()


@pytest.fixture
def follow(db) -> Iterator[Callable[[Path], Running]]:
    started: list[Running] = []

    def start(path: Path) -> Running:
        started.append(Running(db, path))
        return started[-1]

    yield start
    for running in started:
        running.halt()


def callids(db) -> list[str]:
    return [line.split(",")[0] for line in stored_lines(db)]


def test_lines_rotation_truncation_and_restart(db, tmp_path, follow):
    path = tmp_path / "Master.csv"
    path.write_text(call(1) + call(2))
    run = follow(path)
    wait_until(lambda: len(callids(db)) == 2, "the first two lines")

    append(path, call(3))
    wait_until(lambda: len(callids(db)) == 3, "the appended line")

    # logrotate (create mode): the file is renamed and a new one started.
    path.rename(tmp_path / "Master.csv.1")
    path.write_text(call(4) + "not,a,cdr\n")
    wait_until(lambda: len(callids(db)) == 4, "the first line of the new file")
    assert [str(r) for r in run.reports] == [f"{path}:2: expected 16 to 18 columns, found 3"]

    # copytruncate: the same file cut to zero and written again.
    with path.open("w", encoding="utf-8") as handle:
        handle.write(call(5))
    wait_until(lambda: len(callids(db)) == 5, "the line after truncation")

    run.halt()
    append(path, call(6) + call(7))  # written while cdrgate is stopped
    again = follow(path)
    wait_until(lambda: len(callids(db)) == 7, "the lines written while stopped")
    again.halt()
    assert callids(db) == [f"1779962400.{n}" for n in range(1, 8)]
    assert (again.follower.rows, again.reports) == (2, [])  # nothing read twice


def test_a_line_being_written_is_taken_only_once_its_line_end_arrives(db, tmp_path):
    # Polled by hand: with a polling thread the half line would rarely be seen at all.
    path = tmp_path / "Master.csv"
    path.write_text(call(1) + call(2).rstrip("\n"))
    reports: list[Rejected] = []
    follower = Follower(db, path, MAPPER, reports.append)
    try:
        follower.poll()
        assert callids(db) == ["1779962400.1"]
        append(path, "\n")
        follower.poll()
    finally:
        follower.close()
    assert (callids(db), reports) == (["1779962400.1", "1779962400.2"], [])


def test_a_rotation_while_stopped_finishes_the_old_file_first(db, tmp_path, follow):
    path = tmp_path / "Master.csv"
    path.write_text(call(1))
    run = follow(path)
    wait_until(lambda: len(callids(db)) == 1, "the first line")
    run.halt()

    append(path, call(2))  # the tail of the old file, never read before the rotation
    path.rename(tmp_path / "Master.csv-20260528")
    path.write_text(call(3))
    follow(path)
    wait_until(lambda: len(callids(db)) == 3, "old tail and new file")
    assert callids(db) == ["1779962400.1", "1779962400.2", "1779962400.3"]


def test_a_missing_file_is_waited_for(db, tmp_path, follow):
    path = tmp_path / "Master.csv"
    follow(path)
    path.write_text(call(1))
    wait_until(lambda: len(callids(db)) == 1, "the file to appear")


def test_the_command_follows_until_terminated(db, tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text(call(1))
    command = [sys.executable, "-m", "cdrgate", "import", "--format", "asterisk", "--sn", "pbx-a",
               "--follow", str(path), "--database", db.url]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            wait_until(lambda: len(callids(db)) == 1, "the existing line")
            append(path, call(2))
            wait_until(lambda: len(callids(db)) == 2, "the appended line")
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=DEADLINE_S)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "stopped: 2 rows, 2 new, 0 malformed lines skipped" in err
