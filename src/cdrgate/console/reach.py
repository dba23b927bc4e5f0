"""What a page's header says a signed-in account may read, at no cost of its own.

The header names a scoped account's extensions, so its dashboard and lists are not taken for
the whole PBX's. The scope comes with the token (``AuthService.authenticate``), which the
page's query already reads: each page gets a query service whose authentication is done once
and kept, for the header and the page's further queries (the dashboard asks five), instead of a
token read per call plus one for the header.
"""

from __future__ import annotations

from cdrgate.services.auth import Session
from cdrgate.services.query import Authenticator, QueryService

# Past this many characters the header shows the start of an account's extension list.
SHOWN = 80


class _OnePageAuth:
    """The auth service as one page's query service sees it: the first call authenticates (and
    may refuse, as ever); the later ones, a few milliseconds on in the same page, reuse it."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth
        self.session: Session | None = None
        self._token: str | None = None

    def authenticate(self, token: str | None) -> Session:
        # Kept for the token it was made for only: a page passes one token to every call.
        if self.session is None or token != self._token:
            self.session = self._auth.authenticate(token)
            self._token = token
        return self.session


class PageQuery:
    """``query``: the app's query service for one page; ``reach()``: its header's line."""

    def __init__(self, shared: QueryService) -> None:
        self._auth = _OnePageAuth(shared.auth)
        self.query = QueryService(shared.db, shared.settings, self._auth, shared.slots)

    def reach(self) -> str | None:
        """The extensions the account may read (None: every one, or nothing was read)."""
        session = self._auth.session
        if session is None or session.scope is None:
            return None
        text = session.scope.render().replace(",", ", ")
        return text if len(text) <= SHOWN else text[:SHOWN].rsplit(", ", 1)[0] + ", ..."
