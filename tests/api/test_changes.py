"""GET /v1/cdrs/changes: every CDR in storage order after a sequence number."""

from __future__ import annotations

import pytest

from tests.api.test_query import cdr, cdr_at, ids_of


@pytest.fixture
def changes(client, flow):
    token = flow.token()

    def fetch(**params):
        response = client.get("/v1/cdrs/changes", params={"token": token, **params})
        assert response.status_code == 200, response.text
        return response.json()

    return fetch


def test_changes_come_in_storage_order_with_their_seq(changes, add_cdrs):
    add_cdrs(cdr(3))
    add_cdrs(cdr(1))
    body = changes()
    assert [item["callid"] for item in body["items"]] == ids_of(3, 1)
    seqs = [item["seq"] for item in body["items"]]
    assert seqs == sorted(seqs) and all(item["seq"] == item["id"] for item in body["items"])
    assert body["next_after"] == seqs[-1]


def test_a_late_cdr_with_an_old_start_time_appears_after_the_mark(changes, add_cdrs):
    add_cdrs(cdr(1), cdr(2))
    mark = changes()["next_after"]
    assert changes(after=str(mark)) == {"items": [], "next_after": mark, "last_seq": mark}
    add_cdrs(cdr_at(3, "2026-04-01 08:00:00"))
    body = changes(after=str(mark))
    assert [item["callid"] for item in body["items"]] == ids_of(3)
    assert body["items"][0]["timestart"] == "2026-04-01 08:00:00"


def test_following_next_after_reads_everything_once(changes, add_cdrs):
    add_cdrs(*(cdr(n) for n in range(1, 8)))
    seen, after = [], 0
    while batch := changes(after=str(after), limit="3"):
        if not batch["items"]:
            break
        seen += [item["callid"] for item in batch["items"]]
        after = batch["next_after"]
    assert sorted(seen) == sorted(ids_of(*range(1, 8))) and len(seen) == 7


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"after": "-1"}, "after"), ({"limit": "0"}, "limit"), ({"number": "1000"}, "number")],
)
def test_bad_parameters_are_400_problems(client, flow, params, parameter):
    response = client.get("/v1/cdrs/changes", params={"token": flow.token(), **params})
    assert response.status_code == 400 and response.json()["parameter"] == parameter


def test_changes_need_a_token(client):
    assert client.get("/v1/cdrs/changes").status_code == 401
