"""`download-recording`, `sync --recordings`, `recordings scan` and `prune` with recordings,
against a real server on loopback and a real database."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from cdrgate.app import create_app
from cdrgate.cli import app as cli_app
from cdrgate.settings import Settings
from tests.client.helpers import live_server
from tests.conftest import API_PASSWORD, API_USER, make_cdr

runner = CliRunner()
SINCE = ["--since", "2026-05-27 00:00:00", "--until", "2026-05-29 23:59:59"]
A, B = "20260527-a.wav", "20260528-b.wav"


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pbx-recordings"
    (root / "2026" / "05" / "27").mkdir(parents=True)
    (root / "2026" / "05" / "28").mkdir(parents=True)
    (root / "2026" / "05" / "27" / A).write_bytes(b"A" * 3000)
    (root / "2026" / "05" / "28" / B).write_bytes(b"B" * 5000)
    (root / "stray.wav").write_bytes(b"S")
    return root


@pytest.fixture
def pbx(db, clock, api_account, add_cdrs, folder) -> Iterator[str]:
    add_cdrs(
        make_cdr(callid="a", timestart="2026-05-27 23:59:59", recording=A),
        make_cdr(callid="b", timestart="2026-05-28 00:00:00", recording=B),
        make_cdr(callid="c", timestart="2026-05-28 09:00:00", recording="lost.wav"),
        make_cdr(callid="d", timestart="2026-05-28 10:00:00"),
    )
    settings = Settings(database=db.url, access_log=False, recordings=str(folder))
    with live_server(create_app(settings, database=db, clock=clock)) as port:
        yield f"http://127.0.0.1:{port}"


def client_cmd(*args: str):
    return runner.invoke(
        cli_app, [*args, "--username", API_USER, "--password-stdin"], input=API_PASSWORD + "\n"
    )


def test_download_recording_writes_the_file(pbx, tmp_path):
    target = tmp_path / "call.wav"
    result = client_cmd("download-recording", "--pbx", pbx, B, "--output", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes() == b"B" * 5000
    assert "5000 bytes" in result.stderr


def test_download_recording_into_a_missing_folder_is_one_line_and_makes_nothing(pbx, tmp_path):
    target = tmp_path / "typo" / "call.wav"
    result = client_cmd("download-recording", "--pbx", pbx, B, "--output", str(target))
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot write {target}: No such file or directory\n"
    assert not target.parent.exists()


def test_download_recording_of_a_missing_file_is_one_error_line(pbx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = client_cmd("download-recording", "--pbx", pbx, "lost.wav", "-o", str(out))
    assert result.exit_code == 1
    assert "20014" in result.stderr
    assert "Traceback" not in result.output
    assert list(out.iterdir()) == []


def test_sync_with_recordings_mirrors_the_files_and_reports_the_missing(pbx, tmp_path):
    into = f"sqlite:///{tmp_path / 'mirror.db'}"
    mirror = tmp_path / "mirror"
    result = client_cmd("sync", "--pbx", pbx, "--into", into, *SINCE, "--recordings", str(mirror))
    assert result.exit_code == 0, result.stderr
    assert (mirror / A).read_bytes() == b"A" * 3000
    assert (mirror / B).read_bytes() == b"B" * 5000
    assert "lost.wav" in result.stderr
    assert "2 fetched" in result.stdout and "1 missing" in result.stdout


def test_a_rerun_skips_complete_files_and_resumes_after_a_crash(pbx, tmp_path):
    into = f"sqlite:///{tmp_path / 'mirror.db'}"
    mirror = tmp_path / "mirror"
    first = client_cmd("sync", "--pbx", pbx, "--into", into, *SINCE, "--recordings", str(mirror))
    assert first.exit_code == 0, first.stderr
    # A crash mid-file leaves only a temporary file, never a short file under the real name.
    (mirror / B).unlink()
    (mirror / f".{B}.x1y2.part").write_bytes(b"B" * 10)
    again = client_cmd("sync", "--pbx", pbx, "--into", into, *SINCE, "--recordings", str(mirror))
    assert again.exit_code == 0, again.stderr
    assert "1 fetched" in again.stdout and "1 already there" in again.stdout
    assert sorted(p.name for p in mirror.iterdir()) == [A, B]


def test_scan_reports_unreferenced_files_and_missing_ones(db, add_cdrs, folder):
    add_cdrs(
        make_cdr(callid="a", recording=A),
        make_cdr(callid="b", recording=B),
        make_cdr(callid="c", recording="lost.wav"),
    )
    result = runner.invoke(cli_app, ["recordings", "scan", str(folder), "--database", db.url])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["unreferenced stray.wav", "missing lost.wav"]
    assert "3 files, 3 names in CDRs" in result.stderr


def test_scan_of_a_missing_folder_is_a_usage_error(db, tmp_path):
    result = runner.invoke(
        cli_app, ["recordings", "scan", str(tmp_path / "nope"), "--database", db.url]
    )
    assert result.exit_code == 2
    assert "not a folder" in result.stderr


def prune(db, folder, *args: str):
    return runner.invoke(
        cli_app, ["prune", *args, "--recordings", str(folder), "--database", db.url]
    )


def test_pruning_a_cdr_removes_its_file_unless_another_cdr_names_it(db, add_cdrs, folder):
    add_cdrs(
        make_cdr(callid="old-a", timestart="2020-01-01 00:00:00", recording=A),
        make_cdr(callid="old-b", timestart="2020-01-01 00:00:00", recording=B),
        make_cdr(callid="new-b", timestart="2099-01-01 00:00:00", recording=B),
    )
    dry = prune(db, folder, "--max-age-days", "365", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "would remove 2 CDRs" in dry.stdout
    assert f"would remove recording {A}" in dry.stdout
    assert B not in dry.stdout
    assert (folder / "2026" / "05" / "27" / A).exists()
    done = prune(db, folder, "--max-age-days", "365")
    assert done.exit_code == 0, done.stderr
    assert not (folder / "2026" / "05" / "27" / A).exists()
    assert (folder / "2026" / "05" / "28" / B).exists()
    assert (folder / "stray.wav").exists()


def test_recordings_max_age_removes_files_but_keeps_the_cdrs(db, add_cdrs, folder):
    add_cdrs(
        make_cdr(callid="old-a", timestart="2020-01-01 00:00:00", recording=A),
        make_cdr(callid="new-b", timestart="2099-01-01 00:00:00", recording=B),
    )
    done = prune(db, folder, "--recordings-max-age-days", "30")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines() == [f"removed recording {A}", "removed 1 recording files"]
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr").scalar() == 2


def test_recordings_max_age_without_the_folder_is_a_usage_error(db):
    result = runner.invoke(
        cli_app, ["prune", "--recordings-max-age-days", "30", "--database", db.url]
    )
    assert result.exit_code == 2


@pytest.fixture
def read_only(tmp_path):
    """Make a folder read-only even to root: a read-only bind mount (as ProtectSystem=strict
    leaves a recordings folder under the systemd unit), or its mode for another user."""
    mounted: list[str] = []

    def make(folder):
        if os.geteuid() != 0:
            for path in (folder, *[p for p in folder.rglob("*") if p.is_dir()]):
                path.chmod(0o555)
            return
        view = tmp_path / "read-only-view"
        view.mkdir()
        for args in (["--bind", str(folder), str(view)], ["-o", "remount,bind,ro", str(view)]):
            if subprocess.run(["mount", *args], capture_output=True).returncode != 0:
                pytest.skip("cannot bind-mount read-only here")
            mounted.append(str(view))
        return view

    yield make
    for view in mounted[:1]:
        subprocess.run(["umount", view], check=True)


def test_a_recording_that_cannot_be_removed_is_one_error_line_not_a_traceback(
    db, add_cdrs, folder, read_only
):
    add_cdrs(
        make_cdr(callid="old-a", timestart="2020-01-01 00:00:00", recording=A),
        make_cdr(callid="old-b", timestart="2020-01-01 00:00:00", recording=B),
    )
    view = read_only(folder) or folder
    done = prune(db, view, "--recordings-max-age-days", "30")
    # Before: an OSError traceback (exit 1), and serve's retention failed every interval.
    assert done.exit_code == 1, done.output
    assert isinstance(done.exception, SystemExit), done.exception
    line = done.stderr.strip()
    assert line.startswith("error: could not remove 2 recording files: "), line
    assert line.endswith(("Read-only file system (and 1 more)", "Permission denied (and 1 more)"))
    assert "removed 0 recording files" in done.stdout
