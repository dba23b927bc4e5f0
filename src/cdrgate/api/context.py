"""What every API handler receives: the services, settings and the version's field names."""

from __future__ import annotations

from dataclasses import dataclass

from cdrgate.api.envelope import ProxyPolicy
from cdrgate.services.audit import DownloadAudit
from cdrgate.services.auth import AuthService
from cdrgate.services.downloads import DownloadService
from cdrgate.settings import Settings

# API path versions and the name each gives the extension selector.
# "v1.10" is the English docs' typo for v1.1.0; clients copied from those docs send it.
SELECTOR_FIELD = {"v1.1.0": "extid", "v1.10": "extid", "v2.0.0": "number"}


@dataclass(frozen=True)
class Services:
    settings: Settings
    auth: AuthService
    downloads: DownloadService
    proxies: ProxyPolicy
    audit: DownloadAudit


@dataclass(frozen=True)
class ApiVersion:
    path: str  # e.g. "v1.1.0"

    @property
    def selector(self) -> str:
        return SELECTOR_FIELD[self.path]

    @property
    def other_selector(self) -> str:
        return "number" if self.selector == "extid" else "extid"
