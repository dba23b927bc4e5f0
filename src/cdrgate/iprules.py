"""IP addresses and networks: canonical forms and membership, for every IP rule in cdrgate
(allowedip, IP binding of randoms, lockouts, trusted proxies, permitted networks)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from cdrgate.errors import UsageError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# Every request normalises its peer's address (and an allowedip's): the same few addresses,
# each parse ~10 us through ipaddress. A bad one raises, and is never kept.
@lru_cache(maxsize=4096)
def normalise_ip(text: str) -> str:
    """Canonical text of an IP address (IPv4-mapped IPv6 becomes IPv4); ValueError if not one.
    An IPv6 address may come in one pair of brackets (``[2001:db8::7]``, as URLs write it);
    a bracket left open, doubled or around an IPv4 address is no address."""
    text = text.strip()
    address = ipaddress.ip_address(unbracketed(text) if ":" in text else text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def unbracketed(text: str) -> str:
    """``text`` without one pair of brackets around it, as URLs write an IPv6 address
    (``[2001:db8::7]``)."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def hop_ip(hop: str) -> str:
    """``normalise_ip`` of one X-Forwarded-For hop, its port dropped where the proxy named one
    (``203.0.113.7:51234``, ``[2001:db8::7]:51234``: some cloud load balancers send those),
    and an IPv6 address in brackets without a port (``[2001:db8::7]``, as RFC 7239 writes
    one) read as the address. Read strictly, such a hop was not an address, and every client
    behind the proxy was taken for the proxy itself: one lockout and one random's IP rule for
    all of them. A bracket left open, or text after it other than a port, is no address."""
    hop = hop.strip()
    if hop.startswith("["):
        address, closed, port = hop[1:].partition("]")
        if not closed or (port and not (port[0] == ":" and port[1:].isdigit())):
            raise ValueError(f"not an address, or [address]:port: {hop!r}")
        hop = address
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    return normalise_ip(hop)


def parse_networks(specs: tuple[str, ...], what: str = "") -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``192.0.2.7`` or ``::1``; a bad entry is a usage error, not a crash."""
    networks = []
    for spec in specs:
        try:
            networks.append(_unmapped(ipaddress.ip_network(spec.strip(), strict=False)))
        except ValueError:
            prefix = f"{what}: " if what else ""
            raise UsageError(f"{prefix}not an IP address or network: {spec!r}") from None
    return tuple(networks)


# IPv4-mapped IPv6 (::ffff:0:0/96): how a dual-stack socket shows an IPv4 peer.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(network: Network) -> Network:
    """An IPv4-mapped network as the IPv4 network it names (``::ffff:10.0.0.0/104`` is
    ``10.0.0.0/8``): a client's address is compared as ``normalise_ip`` writes it, IPv4, and
    an IPv6 network never holds an IPv4 address, so a mapped entry matched no one."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        return ipaddress.IPv4Network((mapped, network.prefixlen - _MAPPED.prefixlen))
    return network


def in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
