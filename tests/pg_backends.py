"""Ending PostgreSQL server sessions in a test, as a restart or a failover does."""

from __future__ import annotations

import os

import psycopg

from tests.conftest import POSTGRES_ENV
from tests.waiting import wait_until


def terminate_backends(*pids: int) -> None:
    """Terminate backends ``pids`` and return once they are gone, their last message sent:
    the signal is not the exit, and a COMMIT sent in between could still land, or a checkout
    in between find the connection looking alive (it is pinged only when its socket has
    something to read) and then meet AdminShutdown."""
    with psycopg.connect(os.environ[POSTGRES_ENV], autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(
            lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
            ).fetchone() == (0,),
            f"backends {pids} to exit",
        )  # fmt: skip
