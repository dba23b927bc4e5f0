"""How ``--help`` shows options: no type label after a flag.

Typer (0.2x) prints a ``<bool>`` type after every on/off flag (``--generate <bool>``), which
reads as if the flag took a value. Flags show no type; options that take a value keep theirs.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_type_label = TyperOption.display_type_rich


def _label_unless_flag(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _type_label(self, ctx)


def install() -> None:
    TyperOption.display_type_rich = _label_unless_flag  # type: ignore[method-assign]
