"""What a CSV source does not say itself: its serial (``sn``) and which numbers are ours.

Asterisk and FreeSWITCH records carry no call direction. It is derived as follows: a party
is *external* when its channel's peer matches the trunk pattern (when one is given), or
otherwise when its number does not match the extension pattern. External caller = Inbound,
external callee = Outbound, neither = Internal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_EXTENSIONS = r"\d{2,6}"


@dataclass(frozen=True)
class SourceProfile:
    sn: str
    extensions: re.Pattern[str] = re.compile(DEFAULT_EXTENSIONS)
    trunks: re.Pattern[str] | None = None
    trunk_name: str = ""  # used when a trunk party's channel does not name its trunk

    @classmethod
    def build(
        cls, sn: str, extensions: str = DEFAULT_EXTENSIONS, trunks: str | None = None,
        trunk_name: str = "",
    ) -> SourceProfile:  # fmt: skip
        """From the command-line strings; ValueError for a bad regular expression."""
        try:
            ext = re.compile(extensions)
            trk = re.compile(trunks) if trunks else None
        except re.error as exc:
            raise ValueError(f"bad pattern: {exc}") from None
        return cls(sn=sn, extensions=ext, trunks=trk, trunk_name=trunk_name)

    def is_external(self, number: str, peer: str = "") -> bool:
        if self.trunks is not None and peer:
            return self.trunks.fullmatch(peer) is not None
        return self.extensions.fullmatch(number.strip()) is None

    def direction(
        self, caller: str, callee: str, caller_peer: str = "", callee_peer: str = ""
    ) -> tuple[str, str, str]:
        """``(type, srctrunkname, dsttrunkname)`` for a call between two parties."""
        src_external = self.is_external(caller, caller_peer)
        dst_external = self.is_external(callee, callee_peer)
        src_trunk = (caller_peer or self.trunk_name) if src_external else ""
        dst_trunk = (callee_peer or self.trunk_name) if dst_external else ""
        if src_external:
            return "Inbound", src_trunk, dst_trunk
        if dst_external:
            return "Outbound", "", dst_trunk
        return "Internal", "", ""
