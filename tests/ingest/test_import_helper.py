"""A big file is parsed by a helper process while this one inserts: the store, the counts and
the errors must be those of an import parsed in process."""

from __future__ import annotations

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.errors import ImportFailed
from cdrgate.ingest import files
from cdrgate.ingest.helper import batches_from_helper
from cdrgate.storage import cdrs, schema
from tests.conftest import make_cdr
from tests.services.test_importing import import_yeastar_csv


@pytest.fixture
def via_helper(monkeypatch):
    """Every file goes through the helper; returns the list of files it parsed."""
    parsed = []

    def spy(produce, path, *args):
        parsed.append(path)
        return batches_from_helper(produce, path, *args)

    monkeypatch.setattr(files, "HELPER_MIN_BYTES", 0)
    monkeypatch.setattr(files, "PARSE_BATCH", 7)  # several batches cross the queue
    monkeypatch.setattr(files, "batches_from_helper", spy)
    return parsed


def _lines(db):
    with db.read() as conn:
        return cdrs.read_lines(conn, cdrs.CdrQuery(0, 2**40))


def test_a_file_parsed_by_the_helper_is_stored_as_in_process(via_helper, make_db, tmp_path):
    records = [make_cdr(callid=str(i), callfrom=f"10{i % 9:02d}") for i in range(40)]
    path = tmp_path / "big.csv"
    path.write_text(CSV_HEADER + "".join(r.csv_line() for r in [*records, records[3]]))
    stores = []
    for name, threshold in (("helper", 0), ("in-process", 2**40)):
        db = make_db(f"sqlite:///{tmp_path / name}.db")
        schema.upgrade(db)
        files.HELPER_MIN_BYTES = threshold
        result = import_yeastar_csv(db, path)
        assert (result.rows, result.inserted, result.duplicates) == (41, 40, 1)
        assert sum(result.kinds.values()) == 41
        stores.append(_lines(db))
    assert stores[0] == stores[1] and len(stores[0]) == 40
    assert via_helper == [str(path)]  # the first import only


def test_a_bad_row_found_by_the_helper_names_its_line_and_stores_nothing(via_helper, db, tmp_path):
    good = [make_cdr(callid=str(i)).csv_line() for i in range(20)]
    bad = make_cdr(callid="bad", timestart="2026-02-30 00:00:00").csv_line()
    path = tmp_path / "broken.csv"
    path.write_text(CSV_HEADER + "".join(good) + bad + "".join(good))
    with pytest.raises(ImportFailed) as failure:
        import_yeastar_csv(db, path)
    assert failure.value.line == 22 and via_helper == [str(path)]
    assert _lines(db) == []
