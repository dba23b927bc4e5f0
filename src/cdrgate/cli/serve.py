"""cdrgate serve: run the API server."""

from __future__ import annotations

import ctypes
import errno
import gc
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cdrgate.cli.common import cli_errors, err, open_database, say
from cdrgate.cli.exits import EXIT_PORT
from cdrgate.cli.ops import ConfigOption
from cdrgate.config import load_settings, parse_option, value_source
from cdrgate.errors import UsageError
from cdrgate.iprules import parse_networks
from cdrgate.logsetup import configure_logging, startup_line
from cdrgate.settings import SETTINGS, Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from cdrgate import faults as fault_files

# The server's stack (uvicorn, Starlette, the app, TLS, faults: ~0.2 s of imports) is
# imported by the functions that serve, not here: every other command registers this module
# to show `serve` in the help, and should not pay for it.

# How `--workers N` hands the log level to its worker processes (settings go as CDRGATE_*).
LOG_LEVEL_ENV = "CDRGATE_SERVE_LOG_LEVEL"
# --log-level's values as the help names them. Any name the logging module knows, in any
# case, is taken (its aliases warn and fatal too, which a unit file may hold).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@cli_errors
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default 127.0.0.1, or CDRGATE_HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, metavar="PORT", help="TCP port (default 8088, or CDRGATE_PORT)."
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(help="Database URL (default sqlite:///cdrgate.db, or CDRGATE_DATABASE)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option(help=f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}.")
    ] = "info",
    tls_cert: Annotated[str | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    self_signed: Annotated[
        bool,
        typer.Option("--self-signed", help="HTTPS with a self-signed cert kept next to the DB."),
    ] = False,
    csv_safe: Annotated[
        bool, typer.Option("--csv-safe", help="Neutralise =,+,-,@ cells for spreadsheets.")
    ] = False,
    permit: Annotated[
        list[str] | None,
        typer.Option(metavar="NETWORK", help="Allow only these client IPs/networks (repeat)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes; they share state through the database.")
    ] = 1,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NETWORK",
            help="Reverse proxy whose X-Forwarded-For names the client (repeat); none by default.",
        ),
    ] = None,
    idle_timeout: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help=(
                "Close connections silent this long before a request or within its body "
                f"(default {Settings.idle_timeout_seconds}, or CDRGATE_IDLE_TIMEOUT_SECONDS)."
            ),
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=(
                "Answer 503 past this many open connections per process "
                f"(default {Settings.max_connections}, or CDRGATE_MAX_CONNECTIONS)."
            ),
        ),
    ] = None,
    recordings: Annotated[
        str | None,
        typer.Option(metavar="DIR", help="Serve call recordings from DIR (sub-folders too)."),
    ] = None,
    config: ConfigOption = None,
    metrics: Annotated[
        str | None, typer.Option(metavar="on|off", help="Serve /metrics (default on).")
    ] = None,
    drain_seconds: Annotated[
        int | None,
        typer.Option(min=0, help="On SIGTERM, let running requests finish this long (30)."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(metavar="text|json", help="Log lines as text or JSON.")
    ] = None,
    faults: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Inject the failures scripted in FILE (a test bench; docs/faults.md).",
        ),
    ] = None,
    i_know: Annotated[
        bool, typer.Option("--i-know", help="Allow --faults on an address other than loopback.")
    ] = False,
    replica: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="PostgreSQL streaming replica that serves CDR exports (repeat).",
        ),
    ] = None,
    max_replica_lag: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="MS",
            help=(
                "Skip a replica that has not replayed a download's position within MS "
                f"(default {Settings.max_replica_lag_ms})."
            ),
        ),
    ] = None,
) -> None:
    """Serve the Yeastar-compatible CDR API."""
    if log_level.upper() not in logging.getLevelNamesMapping():
        # Checked first: logging would refuse it only after the database is opened, as a
        # traceback.
        raise typer.BadParameter(
            f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}", param_hint="'--log-level'"
        )
    import uvicorn

    from cdrgate import sqlite_interrupts, tls

    # The server's signals are uvicorn's (a drain, not a stop mid-statement), and its
    # statements are not the CLI's to watch.
    sqlite_interrupts.disarm()
    from cdrgate.app import create_app, serving_database
    from cdrgate.drain import exit_zero_on_sigterm, ignore_sighup
    from cdrgate.http_protocol import LenientHttpToolsProtocol
    from cdrgate.metrics import worker_metrics
    from cdrgate.serve_loop import loop_factory
    from cdrgate.services import accounts

    settings = load_settings(
        config,
        database=database, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
        self_signed=self_signed or None, csv_safe=csv_safe or None,
        permitted_networks=tuple(permit) if permit else None,
        trusted_proxies=tuple(trusted_proxy) if trusted_proxy else None,
        idle_timeout_seconds=idle_timeout, max_connections=max_connections,
        recordings=recordings,
        metrics=parse_option("--metrics", metrics), drain_seconds=drain_seconds,
        log_format=parse_option("--log-format", log_format),
        replicas=parse_option("--replica", ",".join(replica), "replicas") if replica else None,
        max_replica_lag_ms=max_replica_lag,
    )  # fmt: skip
    plan = None
    if faults is not None:
        plan = load_faults(faults, settings.host, workers, i_know)
        settings = plan.tighten(settings)
    check_networks(
        settings.trusted_proxies,
        value_source("--trusted-proxy", bool(trusted_proxy), "trusted_proxies", config, os.environ),
    )
    check_networks(
        settings.permitted_networks,
        value_source("--permit", bool(permit), "permitted_networks", config, os.environ),
    )
    check_port_free(settings.host, settings.port)
    configure_logging(log_level, settings.log_format)
    limit_malloc_arenas()
    certificate = tls.server_files(settings)
    if certificate is not None:
        start_note(
            settings,
            "",
            f"TLS certificate {certificate.cert} (SHA-256 {tls.fingerprint(certificate.cert)})",
        )
        if tls.readable_by_others(certificate.key):
            start_note(
                settings,
                "warning:",
                f"TLS key {certificate.key} is readable by every local user: chmod o-r it",
            )
    db = open_database(
        settings.database,
        lambda line: start_note(settings, "note:", line),
    )
    if plan is not None:
        start_note(
            settings,
            "warning:",
            f"{len(plan.faults)} fault(s) from {plan.source} will fail requests on purpose",
        )
    # The server's own handle (its replicas, its SQLite memory map), once the store exists:
    # open_database's is any command's. Refuses replicas of a SQLite primary before any worker
    # starts.
    db.dispose()
    db = serving_database(settings)
    if settings.recordings and not Path(settings.recordings).is_dir():
        start_note(
            settings,
            "warning:",
            f"recordings folder {settings.recordings} is not a folder: "
            "every recording answers 20014",
        )
    if not accounts.names(db):
        start_note(
            settings,
            "warning:",
            "no API user yet; create one with 'cdrgate api-user set NAME --password-stdin'",
        )
    logging.getLogger("cdrgate").info(
        startup_line(settings, workers, str(certificate.cert) if certificate else "off")
    )
    with worker_metrics(workers, settings.metrics):
        if workers > 1:
            # Each worker process builds its own app (and pool) from the environment.
            db.dispose()
            os.environ.update(settings_environ(settings))
            os.environ[LOG_LEVEL_ENV] = log_level
            app: Starlette | str = f"{__name__}:app_from_env"
        else:
            app = create_app(settings, database=db, faults=plan)
            freeze_startup_heap()
            ignore_sighup()
        exit_zero_on_sigterm()
        uvicorn.run(
            app,
            factory=workers > 1,
            workers=workers,
            host=settings.host,
            port=settings.port,
            access_log=False,  # cdrgate's own access log redacts tokens
            log_config=None,
            server_header=False,
            ssl_certfile=certificate.cert if certificate else None,
            ssl_keyfile=certificate.key if certificate else None,
            http=LenientHttpToolsProtocol,  # raw spaces in links; the request-head timeout
            # Only --trusted-proxy decides whose X-Forwarded-For is believed (services.proxies);
            # uvicorn's own handling would trust any loopback client's header.
            proxy_headers=False,
            forwarded_allow_ips="",
            # The protocol uses this as its request-head timeout too: one bound on silence.
            timeout_keep_alive=settings.idle_timeout_seconds,
            limit_concurrency=settings.max_connections,  # past it uvicorn answers 503
            # uvicorn's loop with the TLS handshake bounded by the same timeout, not 60 s.
            # uvicorn types `loop` as a name but takes a factory as well (passed through).
            loop=loop_factory(settings.idle_timeout_seconds),  # type: ignore[arg-type]
            timeout_graceful_shutdown=settings.drain_seconds,
        )


def load_faults(path: Path, host: str, workers: int, i_know: bool) -> fault_files.FaultPlan:
    """The fault plan, refused where it could reach real clients by accident."""
    from cdrgate import faults as fault_files

    if not _loopback(host) and not i_know:
        raise UsageError(
            f"--faults fails requests on purpose: refused on --host {host} (not loopback) "
            "unless --i-know is given too"
        )
    if workers > 1:
        raise UsageError("--faults counts calls in one process: use it without --workers")
    return fault_files.load(path)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_from_env() -> Starlette:
    """The app of one `--workers N` process: settings from the CDRGATE_* its parent set."""
    from cdrgate.app import create_app

    settings = Settings.from_env()
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"), settings.log_format)
    limit_malloc_arenas()
    app = create_app(settings)
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Exempt what start-up built (modules, the app, SQLAlchemy's tables and compiled
    statements) from the cyclic garbage collector's full passes. They live as long as the
    process, yet each full pass walked all of them (~90k objects, ~40 ms on the event loop:
    a stall of every request in flight; bench/RESULTS.md, thirteenth round)."""
    gc.collect()
    gc.freeze()


def settings_environ(settings: Settings) -> dict[str, str]:
    """``settings`` as the CDRGATE_* variables that ``Settings.from_env`` reads back."""
    environ = {}
    for setting in SETTINGS:
        value = getattr(settings, setting.name)
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, tuple):
            value = ",".join(value)
        environ[setting.env] = str(value)
    return environ


def check_port_free(host: str, port: int) -> None:
    """Exit with one line (and EXIT_PORT) when the port is taken, before anything is touched.

    uvicorn would log a multi-line startup failure and exit 3, which the README's table says
    means "database unavailable"."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port in TIME_WAIT after a restart counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            say(
                "error:",
                f"port {port} on {host} is in use: choose another with --port or CDRGATE_PORT",
            )
            raise typer.Exit(EXIT_PORT) from None


def start_note(settings: Settings, label: str, message: str) -> None:
    """A line of the start, after logging is set up: a log line under ``--log-format json``,
    which log shippers read one JSON object a line; else the CLI's own (``warning:`` in
    yellow), as before."""
    if settings.log_format == "json":
        level = logging.WARNING if label == "warning:" else logging.INFO
        logging.getLogger("cdrgate").log(level, "%s", message)
    elif label:
        say(label, message, "yellow")  # warning: and note: alike, as before
    else:
        err.print(message, highlight=False, markup=False, soft_wrap=True)


def check_networks(specs: tuple[str, ...], option: str) -> None:
    parse_networks(specs, option)


def limit_malloc_arenas() -> None:
    """Two glibc malloc arenas instead of one per thread (up to 8 per core).

    Downloads build their pages in worker threads; with an arena per thread, freed page
    memory stays scattered over many arenas. Measured with 60 concurrent slow downloads
    (bench/slow_readers.py): +252 MB RSS with the default, +123 MB with two. The same as
    MALLOC_ARENA_MAX=2, which the environment still overrides. No-op off glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


M_ARENA_MAX = -8  # glibc's mallopt parameter number
