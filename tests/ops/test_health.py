"""/healthz and /readyz: cheap, unauthenticated, and honest about the database."""

from __future__ import annotations

import os
import shutil

import pytest
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.settings import Settings
from cdrgate.storage.db import Database


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_with_a_reachable_current_database(client):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_readyz_names_a_schema_that_is_not_current(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(Settings(database=db.url, access_log=False), database=db)) as http:
        response = http.get("/readyz")
    db.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "cdrgate db upgrade" in response.json()["reason"]


def test_readyz_fails_when_postgresql_is_unreachable():
    url = "postgresql://cdrgate@127.0.0.1:9/none"  # port 9 (discard): nothing listens
    db = Database(url, pool_pre_ping=False)
    with TestClient(create_app(Settings(database=url, access_log=False), database=db)) as http:
        response = http.get("/readyz")
    db.dispose()
    assert response.status_code == 503
    assert response.json()["reason"].startswith("database unavailable")


def sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a file database only")


def test_readyz_fails_when_the_sqlite_file_is_deleted_under_the_server(client, db, database_url):
    sqlite_only(database_url)
    path = database_url.removeprefix("sqlite:///")
    os.unlink(path)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "deleted" in response.json()["reason"]


def test_readyz_fails_when_the_sqlite_file_is_replaced_under_the_server(
    client, db, database_url, tmp_path
):
    sqlite_only(database_url)
    path = database_url.removeprefix("sqlite:///")
    shutil.copy(path, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", path)  # same content, another file
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "replaced" in response.json()["reason"]


def test_probes_answer_clients_outside_the_permit_list(make_client, api_account):
    outsider = make_client(ip="198.51.100.7", permitted_networks=("127.0.0.0/8",))
    assert outsider.get("/healthz").status_code == 200
    assert outsider.get("/readyz").json() == {"status": "ready"}
    assert outsider.post("/api/v1.1.0/login", json={}).json()["errno"] == "20015"
