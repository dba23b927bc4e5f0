"""The API versions cdrgate speaks, shared by the server and the client SDK."""

from __future__ import annotations

# API path versions and the name each gives the extension selector.
# "v1.10" is the English docs' typo for v1.1.0; clients copied from those docs send it.
SELECTOR_FIELD: dict[str, str] = {"v1.1.0": "extid", "v1.10": "extid", "v2.0.0": "number"}
