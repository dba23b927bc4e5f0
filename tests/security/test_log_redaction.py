"""The log masking (``logredact``) hides every token, random and password a client sends, as
it sends it or percent-encoded, and leaves other text alone.

Its patterns are written for speed (a character class first, the boundary tested after it);
the plain forms below say what they must match, and a property holds the two together."""

from __future__ import annotations

import re
import secrets
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cdrgate import logredact

# What is a secret, written the obvious way: a name at a word boundary (any case) and its value
# up to a separator; a run of exactly 32 hex digits with no letter or digit on either side.
PLAIN_PARAM = re.compile(r"(?i)\b(token|random|refreshtoken|password)=([^&\s\"']*)")
PLAIN_BARE = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32}(?![0-9A-Za-z])")


def plainly_masked(text: str) -> str:
    return PLAIN_BARE.sub("<redacted>", PLAIN_PARAM.sub(r"\1=<redacted>", text))


HEX32 = "0123456789abcdef0123456789ABCDEF"
# Pieces a query string, a path or a log line is made of, secrets' near misses included.
PIECES = st.sampled_from([
    "token", "Token", "TOKEN", "random", "rAndom", "refreshtoken", "password", "Passw0rd",
    "xtoken", "_token", "étoken", "tok", "t", "R", "p", "oken", "andom", "assword", "=", "&", "?", "/", " ", "\t", '"', "'", "%", "%3D",
    "%74", "_", "-", "é", "x", "0", "a", "F", "\n", HEX32, HEX32[:31], HEX32 + "0", "<redacted>",
])  # fmt: skip


@settings(max_examples=600, deadline=None)
@example("étoken=1&_token=2&xrandom=3&Password=4&token=5")  # word characters before a name
@example("tandom=1&Roken=2&pefreshtoken=3&rassword=4")  # one name's first letter, another's rest
@example(f"é{HEX32} _{HEX32} {HEX32}é {HEX32}")  # letters around a run are not digits
@example(f"{HEX32}0 0{HEX32} {HEX32[:31]}")  # 33 and 31 digits are not a secret
@given(st.lists(PIECES, max_size=12).map("".join))
def test_the_fast_patterns_mask_exactly_what_the_plain_ones_do(text):
    assert logredact._redact(text) == plainly_masked(text)


def test_a_download_line_keeps_everything_but_its_secrets():
    token, random = secrets.token_hex(16), secrets.token_hex(16)
    line = (
        "/api/v1.1.0/cdr/download?extid=1019&starttime=2026-12-23+00%3A00%3A00"
        f"&endtime=2026-12-23+23%3A59%3A59&token={token}&random={random}"
    )
    assert logredact.redact(line) == (
        "/api/v1.1.0/cdr/download?extid=1019&starttime=2026-12-23+00%3A00%3A00"
        "&endtime=2026-12-23+23%3A59%3A59&token=<redacted>&random=<redacted>"
    )


def encodings(secret: str) -> list[str]:
    """The ways wild clients were seen to send ``token=SECRET``."""
    every = "".join(f"%{ord(c):02X}" for c in secret)
    return [
        f"token={secret}",
        f"ToKeN={secret}",
        quote(f"token={secret}", safe=""),  # encodeURIComponent on the whole pair
        f"%74oken={every}",
        quote(quote(f"token={secret}", safe=""), safe=""),  # encoded twice
        f"/recording/{secret}/file.wav",
        f"password={secret[:7]}",
    ]


@pytest.mark.parametrize("index", range(7))
def test_no_form_of_a_secret_reaches_the_line(index):
    secret = secrets.token_hex(16)
    sent = encodings(secret)[index]
    line = f'127.0.0.1 "GET /api/v1.1.0/heartbeat?starttime=2026-12-23%2000:00:00&{sent}" 200'
    masked = logredact.redact(line)
    for form in (secret, secret[:7], "".join(f"%{ord(c):02X}" for c in secret)):
        assert form not in masked
    assert "<redacted>" in masked and masked.startswith('127.0.0.1 "GET /api/v1.1.0/heartbeat')
