"""Logging for ``serve``: plain lines or one JSON object per line, and the start-up line."""

from __future__ import annotations

import json
import logging
import re
from asyncio import CancelledError
from datetime import UTC, datetime

from cdrgate import __version__, logredact
from cdrgate.settings import LogFormat, Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("cdrgate")
# uvicorn's line when the drain deadline (timeout_graceful_shutdown) cancels requests.
_DRAIN_CANCEL = re.compile(r"Cancel (\d+) running task\(s\), timeout graceful shutdown exceeded$")
# A password given in the URL's query (``?password=``, libpq's and psycopg's own keyword, used
# for one with characters awkward in the user part); SQLAlchemy hides only the user part's.
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; the message is already redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log to stderr in ``log_format``; like ``logging.basicConfig``, nothing changes when the
    root logger already has handlers (an embedding program or a test runner owns them)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logredact.install()
    logging.getLogger("uvicorn.error").addFilter(_deliberate_cuts_are_not_errors)
    # Alembic reports every start's schema check at INFO (four lines of no news).
    logging.getLogger("alembic").setLevel(
        logging.DEBUG if level.lower() == "debug" else logging.WARNING
    )


def _deliberate_cuts_are_not_errors(record: logging.LogRecord) -> bool:
    """Returning without the final chunk is ASGI's only way to abort a transfer, which cdrgate
    does on purpose (a download cut, already logged as a warning with its reason); uvicorn
    logs that as an error, so its line is demoted to debug.

    The drain deadline (docs/operations.md) cancels the requests still running, which is what
    SIGTERM promises, and their audit records say `cut`: uvicorn's ERROR line for it becomes
    one WARNING, and each cancelled request's "Exception in ASGI application" traceback is
    demoted to debug like the cut above."""
    if cancelled := _DRAIN_CANCEL.match(record.getMessage()):
        record.msg = "%s request(s) still running at the drain deadline are cut"
        record.args = (cancelled.group(1),)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
    deliberate = record.getMessage() == "ASGI callable returned without completing response."
    if not deliberate and record.exc_info and isinstance(record.exc_info[1], CancelledError):
        deliberate = record.getMessage() == "Exception in ASGI application\n"
    if deliberate:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("uvicorn.error").isEnabledFor(logging.DEBUG)
    return True


def redacted_url(url: str) -> str:
    """A database URL fit for a log line: the password replaced by ***."""
    # Imported here: `cdrgate config show` and every command's help need this module, and
    # not SQLAlchemy (~0.3 s of a start-up; bench/RESULTS.md, eighteenth round).
    from sqlalchemy.engine import make_url

    try:
        return _masked_query(make_url(url).render_as_string(hide_password=True))
    except Exception:  # an unparseable URL is refused later: shown with its password masked
        return masked_url(url)


def masked_url(url: str) -> str:
    """A URL SQLAlchemy cannot parse (a port that is no number, ``postgres//`` without its
    colon), with whatever lies between its user's colon and its last ``@`` replaced by ***:
    the usage error that refuses it names it, and a password must never reach the output."""
    at = url.rfind("@")
    slashes = url.find("//", 0, max(at, 0))
    colon = url.find(":", slashes + 2 if slashes >= 0 else 0, max(at, 0))
    if at < 0 or colon < 0:
        return _masked_query(url)  # no credentials before the host
    return _masked_query(f"{url[: colon + 1]}***{url[at:]}")


def _masked_query(url: str) -> str:
    return _QUERY_PASSWORD.sub(r"\1***", url)


def startup_line(settings: Settings, workers: int, tls: str) -> str:
    permit = ",".join(settings.permitted_networks) or "everyone"
    proxies = ",".join(settings.trusted_proxies) or "none"
    return (
        f"cdrgate {__version__} starting: database={redacted_url(settings.database)} "
        f"workers={workers} tls={tls} permit={permit} trusted_proxies={proxies} "
        f"metrics={'on' if settings.metrics else 'off'} drain_seconds={settings.drain_seconds} "
        f"recordings={settings.recordings or 'none'}"
    )
