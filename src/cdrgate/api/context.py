"""What every API handler receives: the services, settings and the version's field names."""

from __future__ import annotations

from dataclasses import dataclass

from cdrgate.api.envelope import ProxyPolicy
from cdrgate.services.audit import DownloadAudit
from cdrgate.services.auth import AuthService
from cdrgate.services.downloads import DownloadService
from cdrgate.settings import Settings
from cdrgate.versions import SELECTOR_FIELD


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
