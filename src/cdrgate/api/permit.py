"""The permitted-networks allow-list (the device's "permitted IP" setting).

Clients outside the list get the S-Series envelope with errno 20015 (the device's only
IP-related code) for every request, before any handler, password check or database work.
The client address honours ``trusted_proxies`` exactly as the handlers do.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cdrgate.api.envelope import ProxyPolicy, failure
from cdrgate.errors import Errno, UsageError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``192.0.2.7`` or ``::1``; a bad entry is a usage error, not a crash."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise UsageError(f"not an IP address or network: {spec!r}") from None
    return tuple(networks)


class PermittedNetworks:
    """ASGI middleware: refuse every request from a client outside ``networks``."""

    def __init__(self, app: ASGIApp, networks: tuple[Network, ...], proxies: ProxyPolicy) -> None:
        self.app = app
        self.networks = networks
        self.proxies = proxies

    def permits(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.permits(self.proxies.client_ip(Request(scope))):
            await failure(Errno.ALLOWEDIP_ERROR)(scope, receive, send)
            return
        await self.app(scope, receive, send)
