"""import --follow: lines are stored as they are written, through rotation, truncation and
restarts, without losing or repeating one. Every wait has a deadline."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.errors import StorageUnavailable
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


YEASTAR_HEADER = ",".join(CSV_COLUMNS) + "\n"


def yeastar_row(callid: str, callfrom: str = "1001") -> str:
    return f"{callid},2026-05-28 10:00:00,{callfrom},2002,10,5,,,ANSWERED,Internal,,,,pbx-y\n"


def test_a_yeastar_row_whose_quoted_field_holds_a_line_break_is_one_row(db, tmp_path):
    """Yeastar files quote line breaks inside fields: the row runs on until its quote closes,
    even when the break is all that has been written yet; nothing is skipped or split."""
    path = tmp_path / "cdr.csv"
    path.write_text(YEASTAR_HEADER + yeastar_row("y.1"))
    reports: list[Rejected] = []
    mapper = row_mapper(Format.yeastar, SourceProfile.build("yeastar"))
    follower = Follower(db, path, mapper, reports.append, multiline=True)
    follower.poll()
    append(path, 'y.2,2026-05-28 10:00:01,"Smith,\n')  # the quoted break, still being written
    follower.poll()
    assert callids(db) == ["y.1"]
    append(path, 'J.",2002,10,5,,,ANSWERED,Internal,,,,pbx-y\n' + yeastar_row("y.3"))
    follower.poll()
    append(path, 'y.4,2026-05-28 10:00:02,"never closed\n')
    follower.close()  # a restart ends the file as it is: the open quote waits, no report
    follower = Follower(db, path, mapper, reports.append, multiline=True)
    follower.poll()
    follower.close()
    assert reports == []
    assert callids(db) == ["y.1", "y.3", "y.2"]
    assert '"Smith,\nJ."' in stored_lines(db)[2]


def test_the_command_follows_a_yeastar_file_with_line_breaks_in_fields(db, tmp_path):
    path = tmp_path / "cdr.csv"
    path.write_text(
        YEASTAR_HEADER + 'y.5,2026-05-28 10:00:00,"A\r\nB",2002,1,1,,,BUSY,Inbound,,,,s\n'
    )
    command = [sys.executable, "-m", "cdrgate", "import", "--follow", str(path),
               "--database", db.url]  # fmt: skip
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            wait_until(lambda: callids(db) == ["y.5"], "the row")
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=DEADLINE_S)
        finally:
            if process.poll() is None:
                process.kill()
    assert "stopped: 1 rows, 1 new, 0 malformed lines skipped" in err, err


def test_a_line_longer_than_a_chunk_is_one_skipped_line_and_later_lines_keep_their_numbers(
    db, tmp_path, monkeypatch
):
    import cdrgate.ingest.follow as follow_module

    monkeypatch.setattr(follow_module, "CHUNK_BYTES", 1000)
    path = tmp_path / "Master.csv"
    path.write_text(call(1) + "x" * 3500)  # a runaway line, still being written
    reports: list[Rejected] = []
    follower = Follower(db, path, MAPPER, reports.append)
    follower.poll()
    assert reports == []  # its line end has not come yet
    append(path, "y" * 10 + "\n" + call(3) + "bad line\n")
    follower.poll()
    follower.close()
    assert [(r.line, r.reason.split(" (")[0]) for r in reports] == [
        (2, "line longer than 1000 bytes"),
        (4, "expected 16 to 18 columns, found 1"),
    ]
    assert "(3511)" in reports[0].reason
    assert callids(db) == ["1779962400.1", "1779962400.3"]


def test_a_database_outage_is_logged_once_when_it_begins_and_once_when_it_ends(
    db, tmp_path, monkeypatch, caplog
):
    # --follow polled (and logged "will retry") five times a second for a whole outage.
    path = tmp_path / "Master.csv"
    append(path, call(1))
    polls: list[int] = []
    real_poll = Follower.poll

    def poll(self) -> int:
        polls.append(1)
        if len(polls) <= 6:  # the outage: six polls, each refused
            raise StorageUnavailable("connection refused")
        return real_poll(self)

    monkeypatch.setattr(Follower, "poll", poll)
    caplog.set_level(logging.WARNING, logger="cdrgate")
    running = Running(db, path)
    try:
        wait_until(lambda: len(stored_lines(db)) == 1, "the line stored once it is back")
    finally:
        running.halt()
    said = [r.getMessage() for r in caplog.records if r.name == "cdrgate.follow"]
    assert [m.split(":")[0].split(" after")[0] for m in said] == [
        "database unavailable, will retry",
        "database available again",
    ]
