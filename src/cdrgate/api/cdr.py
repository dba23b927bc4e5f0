"""cdr/get_random and cdr/download: parse the request, call the download service, answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache, partial
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from cdrgate.api.context import ApiCall, ApiVersion
from cdrgate.api.envelope import (
    CORS_HEADERS,
    PRIVATE_HEADERS,
    encoded_headers,
    query_fields,
    read_json_fields,
    success,
)
from cdrgate.api.streaming import CANCELLED, ExportResponse, finish_unsent
from cdrgate.api.threads import Abandoned, in_thread, to_completion
from cdrgate.errors import StorageUnavailable
from cdrgate.services.downloads import DownloadRequest, DownloadService, RandomRequest
from cdrgate.services.export import Export
from cdrgate.storage.db import Database, WriterBusy

A = TypeVar("A")
R = TypeVar("R")


def _selector(params: Mapping[str, str], version: ApiVersion) -> str | None:
    value = params.get(version.selector)
    return value if value is not None else params.get(version.other_selector)


async def _on_loop(
    db: Database, work: Callable[[A], R], ask: A, if_cancelled: Abandoned[R] | None = None,
    if_lost: Callable[[R | None], Awaitable[None]] | None = None,
) -> R:  # fmt: skip
    """``work(ask)`` on the event loop when its write can start at once, else in a thread.

    A worker thread costs a request more than its small SQLite transaction: the hand-over,
    and the GIL passed back and forth with the loop (bench/RESULTS.md, fifth round).
    ``if_cancelled``: see ``in_thread``; ``if_lost``: see ``Database.run_on_loop`` (a thread's
    writes are committed, or raised, by ``work`` itself).
    """
    if db.writes_on_loop:
        try:
            # ``partial``: called from C, no frame of its own.
            return await db.run_on_loop(
                partial(work, ask), if_cancelled=if_cancelled, if_lost=if_lost
            )
        except WriterBusy:
            pass
    return await in_thread(work, ask, if_cancelled=if_cancelled)


async def get_random(request: Request, call: ApiCall) -> Response:
    fields = await read_json_fields(request, call.settings.max_body_bytes)
    ask = RandomRequest(
        token=query_fields(request).get("token"),
        selector=_selector(fields, call.version),
        starttime=fields.get("starttime"),
        endtime=fields.get("endtime"),
        allowedip=fields.get("allowedip"),
        client_ip=call.client_ip,
    )
    downloads = call.services.downloads
    random = None
    if downloads.db.loop_statements is not None:  # PostgreSQL: its statement on the loop
        random = await to_completion(downloads.issue_random_on_loop(ask))
    if random is None:
        random = await _on_loop(downloads.db, downloads.issue_random, ask)
    # Echo the inputs exactly as sent: some clients build the link from the echo.
    return success(
        **{call.version.selector: ask.selector or ""},
        starttime=ask.starttime or "",
        endtime=ask.endtime or "",
        random=random,
    )


async def download(request: Request, call: ApiCall) -> Response:
    # Any request body (axios/Guzzle POST the link) is ignored; parameters are in the query.
    params = query_fields(request)
    ask = DownloadRequest(
        token=params.get("token"),
        selector=_selector(params, call.version),
        starttime=params.get("starttime"),
        endtime=params.get("endtime"),
        random=params.get("random"),
        client_ip=call.client_ip,
        api_version=call.version.path,
    )
    downloads = call.services.downloads
    export = await _small_on_loop(downloads, ask)
    if export is not None:
        return ExportResponse(export, _download_headers(export.filename), call.settings)
    # Cancelled while it ran (the drain's deadline), its export is never sent: ``finish_unsent``.
    if downloads.runs_on_loop(ask):
        # Its group commit failed (it hears 30003, or was cancelled meanwhile): audited again.
        lost = partial(_commit_failed, downloads, ask)
        export = await _on_loop(
            downloads.db, downloads.open_download, ask, if_cancelled=finish_unsent, if_lost=lost
        )
    else:
        export = await in_thread(downloads.open_download, ask, if_cancelled=finish_unsent)
    return ExportResponse(export, _download_headers(export.filename), call.settings)


async def _commit_failed(
    downloads: DownloadService, ask: DownloadRequest, export: Export | None
) -> None:
    """``Database.run_on_loop``'s ``if_lost`` for ``open_download``: the group commit holding
    its writes failed; ``commit_failed`` audits the attempt once more, in a thread."""
    await in_thread(partial(downloads.commit_failed, ask), export)


async def _small_on_loop(downloads: DownloadService, ask: DownloadRequest) -> Export | None:
    """A small download's statements on the loop (PostgreSQL, ``storage/pg_loop.py``); None
    when it is not one (then the thread's path answers it)."""
    if downloads.db.loop_autocommit() is None:
        return None
    # Cancelled after its spend (the drain's deadline): its export is never sent; cancelled
    # where it decided nothing, it is audited as cut there (``_cut_undecided``).
    cut = partial(_cut_undecided, downloads, ask)
    return await to_completion(_small_audited(downloads, ask), if_cancelled=cut)


async def _cut_undecided(
    downloads: DownloadService, ask: DownloadRequest, export: Export | None
) -> None:
    """``to_completion``'s ``if_cancelled`` for ``_small_audited``: its export, never sent,
    finished as the cancel cut it (``finish_unsent``); or, where it spent and audited nothing
    (None: the thread's path would have decided the answer, a refusal most often, and the
    cancel came first), the attempt audited once, ``cut`` with nothing sent, as every other
    download the drain cuts is. A refusal or failure it raised is audited already: this is
    not called then."""
    if export is not None:
        await finish_unsent(export)
    else:
        await in_thread(partial(downloads.cut_undecided, ask), CANCELLED)


async def _small_audited(downloads: DownloadService, ask: DownloadRequest) -> Export | None:
    """``small_download_on_loop(ask)``, and when its statements fail, the attempt audited as
    failed (30003) before the failure is raised: once, a spend that committed though its
    answer was lost included (``spend_failed``). Part of the work ``to_completion`` runs to its
    end, so a request cancelled meanwhile (the drain's deadline) is audited too: it hears no
    exception."""
    try:
        return await downloads.small_download_on_loop(ask)
    except StorageUnavailable as failure:
        await in_thread(partial(downloads.spend_failed, ask), failure)
        raise


# A download's headers, encoded as Starlette would encode them, once: only the file name
# varies, and a poller asks for the same range again and again.
_BEFORE_NAME = encoded_headers({**CORS_HEADERS, "Content-Type": "text/csv; charset=utf-8"})
_AFTER_NAME = encoded_headers(
    {"Access-Control-Expose-Headers": "Content-Disposition", **PRIVATE_HEADERS}
)


@lru_cache(maxsize=256)
def _download_headers(filename: str) -> tuple[tuple[bytes, bytes], ...]:
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return (*_BEFORE_NAME, *encoded_headers(disposition), *_AFTER_NAME)
