"""Keep secrets out of logs (tokens and randoms travel in query strings), and keep client
text from writing lines of its own into them."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

# A secret parameter: the name at a word boundary, any case, then its value up to the next
# separator. The pattern starts with the names' first letters as a character class, and the
# boundary is tested just after it (the character before that letter is not a word
# character), instead of a leading \b: re skips ahead to a class quickly, but tries a leading
# \b or lookbehind at every position of the line, which made the scan ~2x slower on a
# download's ~200-character target (bench/log_redact.py). Each rest of a name checks the
# letter the class took (a lookbehind, tried only after a class match), so "tandom" or
# "poken", one name's first letter and another's rest, is not taken for a secret.
_SECRET_PARAM = re.compile(
    r"(?P<name>[tTrRpP](?<!\w.)"
    r"(?i:(?<=t)oken|(?<=r)andom|(?<=r)efreshtoken|(?<=p)assword))=[^&\s\"']*"
)
# Tokens and randoms are 32 hex digits; one misplaced by a client (a path segment, another
# parameter name) is masked too. Longer hex runs (sha256 digests) are left alone. The same
# shape: the first hex digit, then the test that no letter or digit comes before it.
_BARE_SECRET = re.compile(r"[0-9a-fA-F](?<![0-9A-Za-z].)[0-9a-fA-F]{31}(?![0-9A-Za-z])")


# C0 and C1 controls and DEL: a request path is logged decoded, so "%0a" wrote a line break
# (a forged log line after it), "%1b" a terminal escape and "%00" a NUL into the log.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _redact(text: str) -> str:
    return _BARE_SECRET.sub("<redacted>", _SECRET_PARAM.sub(r"\g<name>=<redacted>", text))


def _escape(control: re.Match[str]) -> str:
    return f"\\x{ord(control[0]):02x}"


def redact(text: str) -> str:
    """Client ``text`` (a path, a query, a name) as a log line may hold it: secrets masked
    (:func:`mask`), and control characters written as ``\\xNN``, so what a client sends stays
    within its line."""
    masked = mask(text)
    # isprintable() is one C pass, and true of nearly every line: the substitution is rare.
    return masked if masked.isprintable() else _CONTROL.sub(_escape, masked)


def mask(text: str) -> str:
    """``text`` with every token, random and password masked, also one percent-encoded.

    Query strings are logged as sent, and a client that encodes a whole ``token=...`` pair
    (``token%3D<hex>``, ``encodeURIComponent`` on the pair) or a name or value
    (``%74oken=``, ``token=%30%37...``) hid its live secret from both patterns. Such a line
    is logged decoded (as often as it was encoded, a few times at most), masked; a line
    whose decoding shows no secret the raw text did not is logged as sent.
    """
    cleaned = decoded = _redact(text)
    for _ in range(3):
        if "%" not in decoded or (once := unquote(decoded)) == decoded:
            break
        decoded = once
        if (masked := _redact(decoded)) != decoded:
            return masked
    return cleaned


class RedactingFilter(logging.Filter):
    """Rewrites every record's message so no handler can print a live secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = mask(message)  # whole messages: cdrgate's own may span lines
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install(*logger_names: str) -> None:
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "cdrgate", *logger_names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
