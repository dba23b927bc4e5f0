"""How long the client waits for a PBX: the defaults the SDK and the CLI share.

Light on purpose (no httpx): the CLI's option defaults come from here, and every command's
help loads the CLI module.
"""

from __future__ import annotations

# How long the PBX may stay silent: connecting, or between two reads of an answer.
DEFAULT_TIMEOUT = 30.0
# How long one request's whole answer may take, however steadily it trickles in. A year of a
# busy PBX's CDRs in one window (~1M rows, ~130 MB) crosses a 1 Mbit/s link in ~18 minutes,
# as does an hour-long WAV recording in ~8: an hour leaves room for both and still ends a
# far end that sends one byte per timeout, which the timeout alone never ends.
DEFAULT_DEADLINE = 3600.0
