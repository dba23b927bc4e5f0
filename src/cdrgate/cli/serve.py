"""cdrgate serve: run the API server."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn

from cdrgate import logredact
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
) -> None:
    """Serve the Yeastar-compatible CDR API."""
    settings = Settings.from_env(database=database, host=host, port=port)
    configure_logging(log_level)
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
        http=LenientHttpToolsProtocol,  # raw spaces in links, as the device accepts
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logredact.install()
