"""What every API handler receives: the services and what the dispatcher learnt of the call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from cdrgate.api.envelope import ProxyPolicy
from cdrgate.ingest.push import PushReceiver
from cdrgate.services.auth import AuthService
from cdrgate.services.downloads import DownloadService
from cdrgate.services.query import QueryService
from cdrgate.services.recordings import RecordingService
from cdrgate.settings import Settings
from cdrgate.versions import SELECTOR_FIELD


@dataclass(frozen=True)
class Services:
    settings: Settings
    auth: AuthService
    downloads: DownloadService
    push: PushReceiver
    proxies: ProxyPolicy
    recordings: RecordingService
    query: QueryService


@dataclass(frozen=True)
class ApiVersion:
    path: str  # e.g. "v1.1.0"
    selector: str  # the version's name for the extensions field: "extid" or "number"

    @property
    def other_selector(self) -> str:
        return "number" if self.selector == "extid" else "extid"


# Every version, made once (the dispatcher looks one up per request); None: no such version.
API_VERSIONS: dict[str, ApiVersion] = {
    path: ApiVersion(path, selector) for path, selector in SELECTOR_FIELD.items()
}


class ApiCall(NamedTuple):
    """One API request as the dispatcher resolved it: which version, and from which client
    (the socket peer, or the X-Forwarded-For of a trusted proxy), worked out once.

    Built per request: a NamedTuple is made at about half the cost of a frozen dataclass,
    whose ``__init__`` sets each field through ``object.__setattr__``."""

    services: Services
    version: ApiVersion
    client_ip: str

    @property
    def settings(self) -> Settings:
        return self.services.settings
