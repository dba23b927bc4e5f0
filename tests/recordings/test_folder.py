"""The recordings folder index: hits touch no folder listing, misses list only what changed."""

from __future__ import annotations

import os

import pytest

from cdrgate.recfolder import RecordingFolder


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "rec"
    for day in ("01", "02", "03"):
        (root / "2026" / "05" / day).mkdir(parents=True)
        (root / "2026" / "05" / day / f"call-{day}.wav").write_bytes(day.encode())
    return root


@pytest.fixture
def listings(monkeypatch):
    """The folders os.scandir is asked to list, in order."""
    seen: list[str] = []
    real = os.scandir

    def counting(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr("cdrgate.recfolder.os.scandir", counting)
    return seen


def settle(root):
    """Backdate every folder's mtime so the index may trust it (fresh ones are re-listed)."""
    for folder, _dirs, _files in os.walk(root):
        os.utime(folder, ns=(1_000_000_000, 1_000_000_000))


def test_a_hit_lists_no_folder(db, tree, listings):
    settle(tree)
    folder = RecordingFolder(tree, db)
    folder.refresh()
    listings.clear()
    opened = folder.open("call-02.wav")
    assert opened is not None and opened.stream.read() == b"02"
    opened.stream.close()
    assert listings == []


def test_a_miss_lists_only_the_folder_that_changed(db, tree, listings):
    settle(tree)
    folder = RecordingFolder(tree, db)
    folder.refresh()
    listings.clear()
    (tree / "2026" / "05" / "03" / "late.wav").write_bytes(b"late")
    assert folder.locate("late.wav") == (tree / "2026" / "05" / "03" / "late.wav").resolve()
    assert listings == [str(tree / "2026" / "05" / "03")]


def test_a_removed_folder_is_forgotten(db, tree):
    folder = RecordingFolder(tree, db)
    assert folder.locate("call-01.wav") is not None
    (tree / "2026" / "05" / "01" / "call-01.wav").unlink()
    (tree / "2026" / "05" / "01").rmdir()
    assert folder.locate("call-01.wav") is None
    assert "call-01.wav" not in folder.files()


def test_two_folders_with_one_name_serve_the_earliest_folder(db, tree):
    (tree / "2026" / "05" / "03" / "call-01.wav").write_bytes(b"copy")
    folder = RecordingFolder(tree, db)
    opened = folder.open("call-01.wav")
    assert opened is not None
    assert opened.stream.read() == b"01"
    opened.stream.close()


def test_a_folder_gone_while_serving_is_one_warning_and_its_return_one_note(db, tree, caplog):
    # An unmounted share made every recording 20014 with no log line but the refusals, and
    # /readyz does not look at the folder: the operator had nothing to go on.
    folder = RecordingFolder(tree, db)
    assert folder.locate("call-01.wav") is not None
    tree.rename(tree.with_name("rec-unmounted"))
    with caplog.at_level("INFO", logger="cdrgate.recordings"):
        assert folder.locate("call-01.wav") is None
        assert folder.locate("call-02.wav") is None
        gone = [r for r in caplog.records if r.levelname == "WARNING"]
        assert [r.getMessage() for r in gone] == [
            f"recordings folder {tree} is gone (unmounted or removed?): every recording "
            "answers 20014 until it is back"
        ]
        tree.with_name("rec-unmounted").rename(tree)
        (tree / "2026" / "05" / "03" / "late.wav").write_bytes(b"late")  # a miss: a refresh
        assert folder.locate("late.wav") is not None
        assert f"recordings folder {tree} is back" in caplog.messages
