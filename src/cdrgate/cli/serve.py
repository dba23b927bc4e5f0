"""cdrgate serve: run the API server."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn

from cdrgate import logredact, tls
from cdrgate.app import create_app
from cdrgate.cli.common import DEFAULT_DB, DatabaseOption, cli_errors, err, open_database
from cdrgate.http_lenient import LenientHttpToolsProtocol
from cdrgate.settings import Settings
from cdrgate.storage import accounts


@cli_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8088].")] = None,
    database: DatabaseOption = DEFAULT_DB,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
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
) -> None:
    """Serve the Yeastar-compatible CDR API."""
    settings = Settings.from_env(
        database=database, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
        self_signed=self_signed or None, csv_safe=csv_safe or None,
        permitted_networks=tuple(permit) if permit else None,
    )  # fmt: skip
    configure_logging(log_level)
    certificate = tls.server_files(settings)
    if certificate is not None:
        err.print(
            f"TLS certificate {certificate.cert} (SHA-256 {tls.fingerprint(certificate.cert)})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    db = open_database(settings.database)
    with db.read() as conn:
        if not accounts.names(conn):
            err.print(
                "[yellow]warning:[/] no API user yet; create one with "
                "'cdrgate api-user set NAME --password-stdin'"
            )
    app = create_app(settings, database=db)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,  # cdrgate's own access log redacts tokens
        log_config=None,
        server_header=False,
        ssl_certfile=certificate.cert if certificate else None,
        ssl_keyfile=certificate.key if certificate else None,
        http=LenientHttpToolsProtocol,  # raw spaces in links, as the device accepts
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logredact.install()
