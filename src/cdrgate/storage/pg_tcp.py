"""How a PostgreSQL connection finds out that its server went silent (docs/storage.md).

A server that is gone without a word (a firewall dropping the packets, a host that vanished:
no FIN, no RST) leaves a statement waiting for an answer that never comes. Without these
settings TCP sends nothing on a socket that waits for a reply, so the wait had no end; a
statement sent into the silence was retransmitted for ~15 minutes (``tcp_retries2``).

- Keepalive probes run on an idle socket, which is what a socket waiting for a reply is: the
  first after ``keepalives_idle`` s of silence, then every ``keepalives_interval`` s.
- ``tcp_user_timeout`` (ms) bounds how long data sent may stay unacknowledged (a statement
  sent into the silence), and with keepalives on, how long probes may go unanswered.

A healthy server, however busy (a long index build, an export's slow query), is not cut: its
kernel acknowledges our data and answers the probes whatever the backend is doing. What is cut
is a server that neither acknowledges nor answers for ``tcp_user_timeout``, and one that
takes none of the data we send for as long (a zero window: its backend reads nothing of a COPY
for 30 s; Linux counts that as unacknowledged too).

The names are libpq's connection parameters: psycopg takes them as they are; asyncpg knows
none of them, so ``pg_loop`` sets them on its sockets itself. A URL's query parameter of the
same name wins (``?keepalives_idle=30&tcp_user_timeout=60000``).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any, Final

TCP_DEFAULTS: Final[Mapping[str, int]] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    # With keepalives on, Linux ends the connection by this bound rather than by the count:
    # kept just past idle + interval x count (25 s), so the probes all get their turn.
    "tcp_user_timeout": 30_000,
}


def tcp_settings(query: Mapping[str, str | Sequence[str]]) -> dict[str, int]:
    """The TCP settings for a URL's ``query``: its own where it sets them, else the defaults."""
    settings: dict[str, int] = {}
    for name, default in TCP_DEFAULTS.items():
        value = query_value(query, name)
        if value is None:
            settings[name] = default
            continue
        try:
            settings[name] = int(value)
        except ValueError:
            raise ValueError(f"the database URL's {name} is no whole number: {value!r}") from None
    return settings


def query_value(query: Mapping[str, str | Sequence[str]], name: str) -> str | None:
    """A URL query parameter's value, the last where it is given more than once (as libpq
    reads a connection string); None where it is not given."""
    given = query.get(name)
    if given is None or isinstance(given, str):
        return given
    return given[-1]


def unset_defaults(query: Mapping[str, Any]) -> dict[str, int]:
    """The defaults a URL's ``query`` does not set (psycopg's ``connect_args``, which would
    otherwise override the URL's own)."""
    return {name: value for name, value in TCP_DEFAULTS.items() if name not in query}


def apply_to_socket(sock: Any, settings: Mapping[str, int]) -> None:
    """Set ``settings`` (``tcp_settings``) on a connected TCP socket, as libpq does on its own.
    A Unix socket has no TCP to set: as libpq, it is left alone."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    keepalives = settings["keepalives"] != 0
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(keepalives))
    if keepalives:
        # 0 is libpq's "the system's default": left alone, as libpq does.
        for name, option in (
            ("keepalives_idle", socket.TCP_KEEPIDLE),
            ("keepalives_interval", socket.TCP_KEEPINTVL),
            ("keepalives_count", socket.TCP_KEEPCNT),
        ):
            if settings[name] > 0:
                sock.setsockopt(socket.IPPROTO_TCP, option, settings[name])
    if settings["tcp_user_timeout"] > 0:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, settings["tcp_user_timeout"])
