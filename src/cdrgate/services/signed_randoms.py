"""cdr/get_random's common random, signed instead of stored: issuing it writes nothing.

It has the shape of every random (``storage/randoms.py``): 32 lower-case hex, the expiry in
epoch ms (11 hex) first, so ``randoms.key_of`` names its row; then 21 hex (84 bits):

    expiry (11 hex) | nonce (6 hex, 24 bits from the CSPRNG) | tag (15 hex, 60 bits)

The tag is a keyed BLAKE2b (the database's key, ``storage/server_keys.py``, shared by every
worker and host) over the expiry, the nonce, the token's hash and the normalised filter. So a
download proves with the key alone that this token asked get_random for this filter, and
until when; forging a tag is a 2^-60 guess per try, and each try is an authenticated download.

It is issued only when the random names no ``allowedip`` and get_random's caller is the
token's login address, so the address a download must come from is the token's, read with the
token: nothing about the random needs storing. Single use is the database's: the download
spends it by inserting its ``cdr_random`` row, whose primary key lets one insert win.

Two signed randoms are equal only when the same token asked for the same filter in the same
millisecond of expiry and drew the same 24-bit nonce (1 in 16.7 million for such a pair); the
second then counts as used once the first is.
"""

from __future__ import annotations

import hashlib
import hmac

from cdrgate.storage import randoms

_EXPIRY_HEX = 11  # as randoms.key_of reads it
_NONCE_BYTES = 3
_TAG_HEX = randoms.RANDOM_CHARS - _EXPIRY_HEX - 2 * _NONCE_BYTES
# BLAKE2b's personalisation: the domain, so this key's tags mean nothing anywhere else.
_DOMAIN = b"cdrgate cdr-rnd1"


class RandomSigner:
    """Issues and checks signed randoms under one key."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        # BLAKE2b hashes its key as a first block of its own: a copy of this state, taken
        # for each tag, starts after it (half a tag's hashing, ~1 us a tag).
        self._keyed = hashlib.blake2b(key=key, digest_size=8, person=_DOMAIN)

    def issue(
        self, expires_ms: int, token_hash: str, selector: str, start_ts: int, end_ts: int
    ) -> str:
        head = f"{expires_ms:0{_EXPIRY_HEX}x}{randoms.entropy(_NONCE_BYTES).hex()}"
        return head + self._tag(head, token_hash, selector, start_ts, end_ts)

    def signed(
        self, random: str, token_hash: str, selector: str, start_ts: int, end_ts: int
    ) -> bool:
        """Whether ``random`` (well-formed: ``randoms.key_of`` took it) was issued under this
        key to this token for this exact filter."""
        head, tag = random[:-_TAG_HEX], random[-_TAG_HEX:]
        return hmac.compare_digest(tag, self._tag(head, token_hash, selector, start_ts, end_ts))

    def _tag(self, head: str, token_hash: str, selector: str, start_ts: int, end_ts: int) -> str:
        # Fixed-width fields first and the free-form selector last: one message per request.
        hashed = self._keyed.copy()
        hashed.update(f"{head}|{token_hash}|{start_ts}|{end_ts}|{selector}".encode())
        # The tag is the digest's top 60 bits: its first 15 hex digits (big-endian).
        return hashed.hexdigest()[:_TAG_HEX]
