"""``cdrgate stats`` and the ``--json`` output of list and summary commands."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.services.auth import set_api_user
from tests.conftest import make_cdr

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_stats_counts_rows_span_types_statuses_and_extensions(db, database_url, add_cdrs):
    add_cdrs(
        make_cdr(callid="1", timestart="2026-05-01 08:00:00", type="Outbound", callfrom="1000"),
        make_cdr(
            callid="2",
            timestart="2026-05-03 09:00:00",
            type="Inbound",
            callfrom="0215550100",
            callto="1001",
            status="NO ANSWER",
        ),
        make_cdr(
            callid="3",
            timestart="2026-05-02 10:00:00",
            type="Internal",
            callfrom="1000",
            callto="1002",
        ),
    )
    [stats] = json_lines(run("stats", "--json", "--database", database_url))
    assert stats == {
        "rows": 3,
        "first": "2026-05-01 08:00:00",
        "last": "2026-05-03 09:00:00",
        "types": {"Inbound": 1, "Internal": 1, "Outbound": 1},
        "statuses": {"ANSWERED": 2, "NO ANSWER": 1},
        "extensions": 3,
        "top_extensions": [
            {"extension": "1000", "calls": 2},
            {"extension": "1001", "calls": 1},
            {"extension": "1002", "calls": 1},
        ],
    }
    text = run("stats", "--database", database_url)
    assert "rows        3" in text
    assert "1000 (2)" in text and "0215550100" not in text


def test_stats_after_a_prune_count_only_the_calls_left(db, database_url, add_cdrs):
    # The counts come from cdr_summary: the pruned rows' types and statuses must be gone from
    # them, not left at zero.
    add_cdrs(
        make_cdr(callid="1", timestart="2026-05-01 08:00:00", type="Outbound", callfrom="1000"),
        make_cdr(
            callid="2", timestart="2026-05-03 09:00:00", type="Inbound", callfrom="0215550100",
            callto="1001", status="NO ANSWER",
        ),
        make_cdr(callid="3", timestart="2026-05-02 10:00:00", type="Internal", callto="1002"),
    )  # fmt: skip
    run("prune", "--max-records", "1", "--database", database_url)
    [stats] = json_lines(run("stats", "--json", "--database", database_url))
    assert stats == {
        "rows": 1,
        "first": "2026-05-03 09:00:00",
        "last": "2026-05-03 09:00:00",
        "types": {"Inbound": 1},
        "statuses": {"NO ANSWER": 1},
        "extensions": 1,
        "top_extensions": [{"extension": "1001", "calls": 1}],
    }


def test_stats_of_an_empty_store_says_so_without_failing(db, database_url):
    [stats] = json_lines(run("stats", "--json", "--database", database_url))
    assert stats["rows"] == 0 and stats["first"] is None and stats["top_extensions"] == []
    assert "first       -" in run("stats", "--database", database_url)


def test_api_user_list_json(db, database_url):
    set_api_user(db, "api", "a long enough password", 0)
    set_api_user(db, "crm", "a long enough password", 0)
    names = json_lines(run("api-user", "list", "--json", "--database", database_url))
    assert names == [{"name": "api", "extensions": "all"}, {"name": "crm", "extensions": "all"}]


def test_ingest_key_list_json_never_shows_the_key(db, database_url):
    key = run("ingest-key", "add", "asterisk-1", "--sn", "pbx-office", "--database", database_url)
    listed = run("ingest-key", "list", "--json", "--database", database_url)
    assert json_lines(listed) == [{"name": "asterisk-1", "sn": "pbx-office", "last_used": None}]
    assert key.strip() not in listed


def test_import_summaries_in_json_for_yeastar_and_asterisk_files(db, database_url, tmp_path):
    yeastar = tmp_path / "export.csv"
    row = make_cdr()
    header = ",".join(row._fields)
    yeastar.write_text(header + "\n" + ",".join(str(v) for v in row) + "\n")
    out = run("import", "--json", "--database", database_url, str(yeastar), str(yeastar))
    outbound = [{"type": "Outbound", "status": "ANSWERED", "rows": 1}]
    assert json_lines(out) == [
        {"source": str(yeastar), "rows": 1, "inserted": 1, "duplicates": 0, "rejected": 0,
         "kinds": outbound},
        {"source": str(yeastar), "rows": 1, "inserted": 0, "duplicates": 1, "rejected": 0,
         "kinds": outbound},
    ]  # fmt: skip
    master = tmp_path / "Master.csv"
    master.write_text(
        '"","1000","2001","from-internal","""Alice"" <1000>","PJSIP/1000-00000001",'
        '"PJSIP/2001-00000002","Dial","PJSIP/2001","2026-05-01 10:00:00",'
        '"2026-05-01 10:00:02","2026-05-01 10:00:30",30,28,"ANSWERED","DOCUMENTATION"\n'
    )
    out = run("import", "--format", "asterisk", "--json", "--database", database_url, str(master))
    [summary] = json_lines(out)
    assert summary["source"] == str(master)
    assert (summary["rows"], summary["inserted"], summary["rejected"]) == (1, 1, 0)
    assert summary["kinds"] == [{"type": "Internal", "status": "ANSWERED", "rows": 1}]
