"""The permitted-networks allow-list (the device's "permitted IP" setting).

Clients outside the list get the S-Series envelope with errno 20015 (the device's only
IP-related code) for every request, before any handler, password check or database work.
The client address is the one ``ClientAddress`` resolved (``trusted_proxies`` honoured).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cdrgate.api.envelope import client_ip, failure
from cdrgate.errors import Errno
from cdrgate.iprules import Network, in_networks


class PermittedNetworks:
    """ASGI middleware: refuse every request from a client outside ``networks``."""

    def __init__(self, app: ASGIApp, networks: tuple[Network, ...]) -> None:
        self.app = app
        self.networks = networks

    def permits(self, address: str) -> bool:
        return in_networks(address, self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.permits(client_ip(Request(scope))):
            await failure(Errno.ALLOWEDIP_ERROR)(scope, receive, send)
            return
        await self.app(scope, receive, send)
