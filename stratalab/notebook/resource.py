"""What every resource namespace (``c.jobs``, ``c.workers``, ...) shares.

A namespace builds :class:`~stratalab.notebook.transport.Request` objects and
ops once; its sync and async flavours only pick the driver. Lists are read
page by page with :func:`collect` and shown as pandas DataFrames with
:func:`to_frame` (pandas is imported on first use, so importing the client
stays cheap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from stratalab.notebook.transport import Op, Request, arun, run

if TYPE_CHECKING:
    import pandas as pd

    from stratalab.notebook.transport import AsyncTransport, Connection, SyncTransport

#: the largest page the server hands out.
MAX_PAGE = 1000


def seg(value: str) -> str:
    """One URL path segment (an id), escaped so it cannot change the route."""
    return quote(str(value), safe="")


def collect(
    path: str, params: Mapping[str, Any] | None = None, limit: int | None = None
) -> Op[list[Any]]:
    """Every item of a list route (following ``next_page_token``), up to ``limit``."""
    items: list[Any] = []
    query = {**(params or {}), "page_size": min(MAX_PAGE, limit or MAX_PAGE)}
    while True:
        page = yield Request("GET", path, params=query)
        items.extend(page["items"])
        token = page.get("next_page_token")
        if not token or (limit is not None and len(items) >= limit):
            return items[:limit] if limit is not None else items
        query = {**query, "page_token": token}


def to_frame(rows: list[Any], columns: type | None = None) -> pd.DataFrame:
    """A DataFrame of API objects; ``*_at`` and ``ts`` columns become UTC timestamps.

    ``columns`` is the TypedDict of the rows: an empty list still gets its columns.
    """
    import pandas as pd

    names = list(getattr(columns, "__annotations__", {})) if columns is not None else None
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=names)
    if names and rows:
        ordered = [c for c in names if c in frame.columns]
        frame = frame[ordered + [c for c in frame.columns if c not in ordered]]
    for col in frame.columns:
        if str(col).endswith("_at") or col == "ts":
            frame[col] = pd.to_datetime(frame[col], utc=True, errors="coerce")
    return frame


class _Runs(Protocol):
    """What a sync namespace needs of its client."""

    connection: Connection
    _transport: SyncTransport


class _ARuns(Protocol):
    """What an async namespace needs of its client."""

    connection: Connection
    _transport: AsyncTransport


class SyncResource:
    """Base of the blocking namespaces."""

    def __init__(self, client: _Runs) -> None:
        self._client = client

    def _run(self, step: Request | Op[Any]) -> Any:
        return run(step, self._client._transport)


class AsyncResource:
    """Base of the asyncio namespaces."""

    def __init__(self, client: _ARuns) -> None:
        self._client = client

    async def _run(self, step: Request | Op[Any]) -> Any:
        return await arun(step, self._client._transport)
