"""Prometheus metrics: every metric object lives here, and the rest of cdrgate records through
the small ``record_*`` functions below.

Under ``serve --workers N`` each worker process writes its samples to files in the directory
named by ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), which ``serve``
creates afresh at each start (:func:`prepare_multiprocess_dir`); a scrape of any worker then
adds up all of them. Labels are small closed sets only: no paths, extensions, files or IPs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, Literal, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as mp
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cdrgate.clock import Clock
from cdrgate.errors import Errno, StorageUnavailable
from cdrgate.pids import alive
from cdrgate.storage import login_guard
from cdrgate.storage.db import Database

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DownloadKind = Literal["cdr", "recording"]
DownloadOutcome = Literal["ok", "failed", "aborted", "cut"]
LoginOutcome = Literal["ok", "bad_credentials", "locked_out"]
IngestSource = Literal["import", "push", "follow", "sync"]

# The *_created series double every counter for no use in dashboards or alerts.
disable_created_metrics()  # type: ignore[no-untyped-call]

# In multiprocess mode prometheus-client opens a sample file as each metric below is created,
# so the directory must exist before this module's import, not only once `serve` prepares it
# (worker_metrics): the unit's /run/cdrgate/metrics is inside a RuntimeDirectory systemd makes
# empty at each start.
if _configured_dir := os.environ.get(MULTIPROC_ENV):
    Path(_configured_dir).mkdir(parents=True, exist_ok=True)

# Our own registry: the process/platform collectors of the default one are per process and
# meaningless once samples from several workers are summed.
REGISTRY = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "cdrgate_http_requests_total",
    "HTTP requests answered, by endpoint template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "cdrgate_http_request_duration_seconds",
    "Time from request to the last byte of the answer (a whole download for cdr/download).",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "cdrgate_api_errors_total",
    "API answers carrying an S-Series errno (status Failed), by endpoint and errno.",
    ["route", "errno"],
    registry=REGISTRY,
)
LOGINS = Counter(
    "cdrgate_logins_total", "Login attempts by outcome.", ["outcome"], registry=REGISTRY
)
DOWNLOADS = Counter(
    "cdrgate_downloads_total",
    "Download attempts by kind and outcome (ok; failed; aborted by the client; cut by the server).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
EXPORT_ROWS = Counter("cdrgate_export_rows_total", "CDR rows sent in downloads.", registry=REGISTRY)
EXPORT_BYTES = Counter(
    "cdrgate_export_bytes_total",
    "Bytes sent in downloads: CDR CSV and recording files.",
    registry=REGISTRY,
)
INGESTED = Counter(
    "cdrgate_ingested_cdrs_total",
    "New CDRs stored (duplicates not counted), by source.",
    ["source"],
    registry=REGISTRY,
)
EXPORTS_IN_PROGRESS = Gauge(
    "cdrgate_exports_in_progress",
    "Transfers streaming now: CDR downloads, recordings and CSV answers.",
    registry=REGISTRY,
    multiprocess_mode="livesum",  # a dead worker's streams are gone with it
)
LOCKOUTS_NAME = "cdrgate_lockouts_active"
LOCKOUTS_HELP = "Client IPs locked out of login right now (read from the database at scrape)."

# Every label value known up front, so a series exists at 0 before its first event and
# rate() and absent() behave from the first scrape.
for _outcome in ("ok", "bad_credentials", "locked_out"):
    LOGINS.labels(_outcome)
for _kind in ("cdr", "recording"):
    for _result in ("ok", "failed", "aborted", "cut"):
        DOWNLOADS.labels(_kind, _result)
for _source in ("import", "push", "follow", "sync"):
    INGESTED.labels(_source)

KNOWN_ERRNOS = frozenset(e.value for e in Errno)

_Key = TypeVar("_Key", bound=tuple[object, ...])
_Child = TypeVar("_Child")


class _Children(Generic[_Key, _Child]):
    """A metric's labelled children, each made once and kept by its label values.

    labels() builds a key and takes a lock on every call; on the hot paths it was most of the
    time a record took. Only for closed label sets: the cache never shrinks."""

    def __init__(self, make: Callable[[_Key], _Child]) -> None:
        self._make = make
        self._made: dict[_Key, _Child] = {}

    def __call__(self, key: _Key) -> _Child:
        child = self._made.get(key)
        if child is None:
            child = self._made[key] = self._make(key)
        return child


def record_login(outcome: LoginOutcome) -> None:
    LOGINS.labels(outcome).inc()


# A download's counter (kinds and outcomes are closed sets): every small flow recorded one,
# and its labels() call was most of the time it took.
_download_child = _Children[tuple[str, str], Counter](lambda key: DOWNLOADS.labels(*key))


def record_download(kind: DownloadKind, outcome: DownloadOutcome, rows: int, size: int) -> None:
    _download_child((kind, outcome)).inc()
    # A recording's audit record says 1 row (the file): not a CDR row.
    if rows and kind == "cdr":
        EXPORT_ROWS.inc(rows)
    if size:
        EXPORT_BYTES.inc(size)


def record_ingested(source: IngestSource, count: int) -> None:
    if count > 0:
        INGESTED.labels(source).inc(count)


# Every request asked for two children: each (route, method, status)'s pair is kept. Bounded:
# routes and methods are closed sets (httpmetrics.route_of, METHODS), and statuses are the
# app's own.
_request_children = _Children[tuple[str, str, int], tuple[Counter, Histogram]](
    lambda key: (HTTP_REQUESTS.labels(key[0], key[1], str(key[2])), HTTP_DURATION.labels(key[0]))
)


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    counter, histogram = _request_children((route, method, status))
    counter.inc()
    histogram.observe(seconds)


def record_api_error(route: str, errno: str) -> None:
    API_ERRORS.labels(route, errno if errno in KNOWN_ERRNOS else "other").inc()


class _LockoutsCollector(Collector):
    """Lockouts are database state shared by all workers: counted once, at scrape."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            with self.db.read() as conn:
                count = login_guard.count_locked(conn, int(self.clock() * 1000))
        except StorageUnavailable:
            return  # the rest of the scrape (error counters above all) matters most then
        yield GaugeMetricFamily(LOCKOUTS_NAME, LOCKOUTS_HELP, value=count)


def exposition(db: Database, clock: Clock) -> bytes:
    """The text a scrape gets: this process's metrics, or all workers' in multiprocess mode."""
    directory = os.environ.get(MULTIPROC_ENV)
    registry = CollectorRegistry()
    if directory:
        mark_dead_workers(Path(directory))
        mp.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(_LockoutsCollector(db, clock))
    return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def mark_dead_workers(directory: Path) -> None:
    """Drop the live-gauge files of worker processes that have exited (crashed or replaced).

    Counters of a dead worker stay (they are history); its in-progress gauge must not."""
    for path in directory.glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not alive(int(pid_text)):
            mp.mark_process_dead(int(pid_text), str(directory))  # type: ignore[no-untyped-call]


@contextmanager
def worker_metrics(workers: int, enabled: bool) -> Iterator[Path | None]:
    """Multiprocess mode for ``serve --workers N``: a directory for this start only, emptied
    of an earlier run's samples (they would add to this run's counters) and removed at exit
    if we made it. One worker keeps its samples in memory unless the operator named one."""
    configured = os.environ.get(MULTIPROC_ENV)
    if not enabled or (workers == 1 and not configured):
        yield None
        return
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        own = f"_{os.getpid()}.db"  # this process may have opened its files already
        for stale in directory.glob("*.db"):
            if not stale.name.endswith(own):
                stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="cdrgate-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)  # the worker processes inherit it
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
