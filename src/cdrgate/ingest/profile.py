"""What a CSV source does not say itself: its serial (``sn``), which numbers are ours, and
which channel peers are trunks.

Asterisk and FreeSWITCH records carry no call direction; it is derived per party:

* a party whose channel names a peer is *external* when the peer is a trunk: listed in
  ``trunks`` (``--trunks``), or a peer whose name is not an extension number (phones are
  named by their extension, trunks by their provider). ``Local/`` channels name no peer.
* a party without a peer is external when its number does not match the extension pattern
  and could be dialled out (feature codes such as ``*97`` stay inside the PBX).

External caller = Inbound, else external callee = Outbound, neither = Internal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_EXTENSIONS = r"\d{2,6}"
# What a number dialled out through a trunk may hold; anything else is a feature code.
_DIALLABLE = re.compile(r"\+?[0-9]+")


class AccountcodeAs(StrEnum):
    """Where an Asterisk ``accountcode`` goes (``--accountcode-as``)."""

    none = "none"
    pincode = "pincode"


@dataclass(frozen=True)
class SourceProfile:
    sn: str
    extensions: re.Pattern[str] = re.compile(DEFAULT_EXTENSIONS)
    trunks: frozenset[str] = field(default_factory=frozenset)
    trunk_name: str = ""  # used when a trunk party's channel does not name its trunk
    accountcode_as: AccountcodeAs = AccountcodeAs.none

    @classmethod
    def build(
        cls, sn: str, extensions: str = DEFAULT_EXTENSIONS, trunks: str | None = None,
        trunk_name: str = "", accountcode_as: AccountcodeAs = AccountcodeAs.none,
    ) -> SourceProfile:  # fmt: skip
        """From the command-line strings (``trunks``: comma-separated peer names);
        ValueError for a bad regular expression."""
        try:
            ext = re.compile(extensions)
        except re.error as exc:
            raise ValueError(f"bad pattern: {exc}") from None
        names = frozenset(name.strip() for name in (trunks or "").split(",") if name.strip())
        return cls(sn, ext, names, trunk_name, accountcode_as)

    def is_extension(self, number: str) -> bool:
        return self.extensions.fullmatch(number.strip()) is not None

    def is_external(self, number: str, peer: str = "") -> bool:
        if peer:
            return peer in self.trunks or not self.is_extension(peer)
        number = number.strip()
        return not self.is_extension(number) and _DIALLABLE.fullmatch(number) is not None

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
