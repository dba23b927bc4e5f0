"""The proxies the environment names, as httpx takes them for a client without a transport.

httpx reads HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY only when it builds the network
itself. The client brings its own (the deadline's), so it reads them here, with the standard
library's ``getproxies()`` as httpx does, into the same mount patterns httpx documents:
``http://``, ``https://`` and ``all://`` to a proxy, and each NO_PROXY entry to None, which
httpx answers with the client's own (direct) transport.
"""

from __future__ import annotations

import ipaddress
import ssl
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

import httpx

from cdrgate.client._deadline import DeadlineTransport
from cdrgate.client._errors import ClientError

# What each mount pattern's proxy is called in the environment, for error messages.
VARIABLES = {"http://": "HTTP_PROXY", "https://": "HTTPS_PROXY", "all://": "ALL_PROXY"}


def environment_proxies() -> dict[str, str | None]:
    """httpx mount pattern -> proxy URL, or None to go direct; {} when nothing is proxied."""
    found = getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        url = found.get(scheme)
        if url:
            # A bare host:port is an HTTP proxy (curl and httpx read it so).
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for entry in found.get("no", "").split(","):
        host = entry.strip()
        if host == "*":
            return {}
        if host:
            mounts[_direct_pattern(host)] = None
    return mounts


def _direct_pattern(host: str) -> str:
    """The mount pattern of one NO_PROXY entry, as httpx reads it:
    ``example.com`` covers it and its subdomains, ``.example.com`` its subdomains only, an
    IP address or ``localhost`` itself, and an entry with a scheme exactly what it says."""
    if "://" in host:
        return host
    try:
        # The address of a CIDR entry, as httpx takes it: a range is not a range to httpx.
        address = ipaddress.ip_address(host.split("/")[0].strip("[]"))
    except ValueError:
        return "all://" + (host if host.lower() == "localhost" else f"*{host}")
    return f"all://{address}" if address.version == 4 else f"all://[{address}]"


def shown(url: str) -> str:
    """A proxy URL fit for a message: without the password it may carry."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def transports(
    deadline: float | None, verify: ssl.SSLContext | bool
) -> tuple[httpx.BaseTransport, dict[str, httpx.BaseTransport | None]]:
    """The client's direct transport, and its mounts: one transport per proxy the
    environment names, each bounded by the same deadline; None for NO_PROXY's hosts."""
    by_url: dict[str, httpx.BaseTransport] = {}
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for pattern, url in environment_proxies().items():
        if url is None:
            mounts[pattern] = None
            continue
        if url not in by_url:
            try:
                by_url[url] = DeadlineTransport(deadline, verify, proxy=url)
            except ImportError:  # httpx's SOCKS transport needs socksio, an optional package
                raise ClientError(
                    f"{VARIABLES[pattern]} names a SOCKS proxy ({shown(url)}), which needs the "
                    "socksio package: pip install socksio"
                ) from None
            except (ValueError, httpx.InvalidURL) as exc:
                raise ClientError(
                    f"cannot use {VARIABLES[pattern]} from the environment ({shown(url)}): "
                    f"{_reason(exc)}"
                ) from None
        mounts[pattern] = by_url[url]
    return DeadlineTransport(deadline, verify), mounts


def _reason(exc: Exception) -> str:
    if str(exc).startswith("Unknown scheme"):
        return "a proxy URL starts with http://, https://, socks5:// or socks5h://"
    return str(exc)
