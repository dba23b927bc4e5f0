"""How one X-Forwarded-For hop is read: the forms proxies send, and what is no address."""

from __future__ import annotations

import pytest

from cdrgate.iprules import hop_ip

HOPS = {
    "203.0.113.7": "203.0.113.7",
    "203.0.113.7:51234": "203.0.113.7",
    "2001:db8::7": "2001:db8::7",
    "[2001:db8::7]:51234": "2001:db8::7",
    "[2001:db8::7]": "2001:db8::7",  # RFC 7239's form of a v6 node, without a port
    " [::ffff:10.1.1.1] ": "10.1.1.1",
}


@pytest.mark.parametrize(("hop", "address"), HOPS.items())
def test_a_hop_names_its_address(hop, address):
    assert hop_ip(hop) == address


@pytest.mark.parametrize(
    "hop", ["[2001:db8::7", "[2001:db8::7]x", "[2001:db8::7]:", "[2001:db8::7]:8a", "unknown"]
)
def test_a_hop_that_is_no_address_is_refused(hop):
    # The caller then takes the proxy's own address: a malformed hop names no client.
    with pytest.raises(ValueError):
        hop_ip(hop)
