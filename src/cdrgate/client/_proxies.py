"""The proxies the environment names, as httpx takes them for a client without a transport.

httpx reads HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY only when it builds the network
itself. The client brings its own (the deadline's), so it reads them here, with the standard
library's ``getproxies()`` as httpx does, into the same mount patterns httpx documents:
``http://``, ``https://`` and ``all://`` to a proxy, and each NO_PROXY entry to None, which
httpx answers with the client's own (direct) transport.

A NO_PROXY entry that is a range (``10.0.0.0/8``, ``fd00::/8``) is read as curl and
``requests`` read it: a PBX URL whose host is an address in it goes direct. httpx's patterns
name hosts, not ranges (it would read ``10.0.0.0`` alone), so each proxy's transport is
wrapped instead: a request to an address in a range goes to the direct transport. A host
name is not resolved to find its address (neither curl nor ``requests`` does).
"""

from __future__ import annotations

import ipaddress
import ssl
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

import httpx

from cdrgate.client._deadline import DeadlineTransport
from cdrgate.client._errors import ClientError
from cdrgate.iprules import unbracketed

# What each mount pattern's proxy is called in the environment, for error messages.
VARIABLES = {"http://": "HTTP_PROXY", "https://": "HTTPS_PROXY", "all://": "ALL_PROXY"}


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def environment_proxies() -> dict[str, str | None]:
    """httpx mount pattern -> proxy URL, or None to go direct; {} when nothing is proxied.
    NO_PROXY's ranges are not here (``direct_networks``)."""
    found = getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        url = found.get(scheme)
        if url:
            # A bare host:port is an HTTP proxy (curl and httpx read it so).
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in _no_proxy(found):
        if host == "*":
            return {}
        if "://" in host or "/" not in host:
            mounts[_direct_pattern(host)] = None
    return mounts


def direct_networks() -> tuple[Network, ...]:
    """NO_PROXY's ranges (``10.0.0.0/8``): addresses in them go direct. ValueError names an
    entry that is no range."""
    networks = []
    for host in _no_proxy(getproxies()):
        if "://" in host or "/" not in host:
            continue
        address, _, length = host.partition("/")
        try:
            networks.append(ipaddress.ip_network(f"{unbracketed(address)}/{length}", strict=False))
        except ValueError:
            raise ValueError(f"{host!r} is not an address range such as 10.0.0.0/8") from None
    return tuple(networks)


def _no_proxy(found: dict[str, str]) -> list[str]:
    return [host for entry in found.get("no", "").split(",") if (host := entry.strip())]


def _direct_pattern(host: str) -> str:
    """The mount pattern of one NO_PROXY entry that is no range, as httpx reads it:
    ``example.com`` covers it and its subdomains, ``.example.com`` its subdomains only, an
    IP address or ``localhost`` itself, and an entry with a scheme exactly what it says."""
    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(unbracketed(host))
    except ValueError:
        return "all://" + (host if host.lower() == "localhost" else f"*{host}")
    return f"all://{address}" if address.version == 4 else f"all://[{address}]"


class _UnlessInRange(httpx.BaseTransport):
    """A proxy's transport, but a request to an address in one of ``networks`` goes to
    ``direct`` (the client's own transport, which the client closes)."""

    def __init__(
        self,
        proxied: httpx.BaseTransport,
        direct: httpx.BaseTransport,
        networks: tuple[Network, ...],
    ) -> None:
        self._proxied = proxied
        self._direct = direct
        self._networks = networks

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            address = ipaddress.ip_address(request.url.host)
        except ValueError:  # a host name
            return self._proxied.handle_request(request)
        if any(address in network for network in self._networks):
            return self._direct.handle_request(request)
        return self._proxied.handle_request(request)

    def close(self) -> None:
        self._proxied.close()


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
    environment names, each bounded by the same deadline; None for NO_PROXY's hosts (its
    ranges go direct through each proxy's transport: ``_UnlessInRange``)."""
    try:
        networks = direct_networks()
    except ValueError as exc:
        raise ClientError(f"cannot read NO_PROXY from the environment: {exc}") from None
    direct = DeadlineTransport(deadline, verify)
    by_url: dict[str, httpx.BaseTransport] = {}
    try:
        mounts = _proxy_mounts(deadline, verify, direct, networks, by_url)
    except BaseException:
        for transport in (direct, *by_url.values()):
            transport.close()
        raise
    return direct, mounts


def _proxy_mounts(
    deadline: float | None,
    verify: ssl.SSLContext | bool,
    direct: httpx.BaseTransport,
    networks: tuple[Network, ...],
    by_url: dict[str, httpx.BaseTransport],
) -> dict[str, httpx.BaseTransport | None]:
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
            if networks:
                by_url[url] = _UnlessInRange(by_url[url], direct, networks)
        mounts[pattern] = by_url[url]
    return mounts


def _reason(exc: Exception) -> str:
    if str(exc).startswith("Unknown scheme"):
        return "a proxy URL starts with http://, https://, socks5:// or socks5h://"
    return str(exc)
