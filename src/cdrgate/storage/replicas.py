"""PostgreSQL streaming replicas that may serve reads which tolerate a bounded lag.

A read that must include everything committed before some moment names the primary's WAL
position at that moment (an LSN); a replica serves it once it has replayed that far. One that
cannot within ``max_lag_ms`` (lagging, disconnected from its primary, or down) is skipped for
``RETRY_AFTER_S`` and the read goes elsewhere: a replica is an optimisation, never a reason
to fail a request.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("cdrgate.storage")

RETRY_AFTER_S = 10.0
POLL_S = 0.01
# A replica host that does not answer must not hold a download for connect_timeout's default.
CONNECT_TIMEOUT_S = 2

_REPLAYED = text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)")


def wal_position(conn: Connection) -> str:
    """The primary's WAL insert position: every commit visible to ``conn`` lies before it.

    The insert position rather than ``pg_current_wal_lsn`` (the write position): under
    ``synchronous_commit=off`` a committed transaction's record may not be written out yet.
    """
    return str(conn.execute(text("SELECT pg_current_wal_insert_lsn()::text")).scalar_one())


@dataclass
class Replica:
    url: str
    engine: Engine
    down_until: float = 0.0
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = make_url(self.url).render_as_string(hide_password=True)


class ReplicaSet:
    """The configured replicas, tried in turn; each one's engine is made on first use."""

    def __init__(
        self,
        urls: Sequence[str],
        make: Callable[[str], Engine],
        max_lag_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = [Replica(url, make(url)) for url in urls]
        self.max_lag_s = max_lag_ms / 1000
        self._clock = clock
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def choose(self, lsn: str) -> Replica | None:
        """A healthy replica that has replayed ``lsn`` (waiting up to the lag bound), or None."""
        start = next(self._turn)
        count = len(self.replicas)
        for replica in (self.replicas[(start + i) % count] for i in range(count)):
            if not self.is_up(replica):
                continue
            try:
                caught_up = self._wait_for(replica, lsn)
            except (DBAPIError, PoolTimeout) as exc:
                self.skip(replica, f"unreachable ({_short(exc)})")
                continue
            if caught_up:
                return replica
            self.skip(replica, f"has not replayed {lsn} within {self.max_lag_s:g} s")
        return None

    def is_up(self, replica: Replica) -> bool:
        return replica.down_until <= self._clock()

    def skip(self, replica: Replica, why: str) -> None:
        with self._lock:
            was_up = self.is_up(replica)
            replica.down_until = self._clock() + RETRY_AFTER_S
        if was_up:
            log.warning(
                "replica %s skipped for %g s: %s; reads go to the primary",
                replica.name,
                RETRY_AFTER_S,
                why,
            )

    def _wait_for(self, replica: Replica, lsn: str) -> bool:
        deadline = self._clock() + self.max_lag_s
        with replica.engine.connect() as conn:
            while True:
                # NULL (not in recovery: a promoted replica) counts as not caught up.
                if conn.execute(_REPLAYED, {"lsn": lsn}).scalar():
                    return True
                conn.rollback()  # each poll in a fresh snapshot of the replay position
                if self._clock() >= deadline:
                    return False
                time.sleep(POLL_S)

    def dispose(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()


def replica_engine_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the replica's short connect timeout added."""
    connect_args = {**options.get("connect_args", {}), "connect_timeout": CONNECT_TIMEOUT_S}
    return {**options, "connect_args": connect_args}


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
