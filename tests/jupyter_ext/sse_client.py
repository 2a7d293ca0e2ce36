"""A small Server-Sent Events reader for the API tests (httpx underneath)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SSEEvent:
    """One event of a stream."""

    event: str
    data: Any
    id: str | None = None


class SSEStream:
    """Events of one open stream, read with a deadline each."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> SSEEvent:
        """The next event (comments skipped); TimeoutError after ``timeout`` seconds."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> SSEEvent:
        event, data, ident = "message", [], None
        async for line in self._lines:
            if not line:
                if data:
                    return SSEEvent(event, json.loads("\n".join(data)), ident)
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                ident = value
        raise EOFError("the stream ended")

    async def until(
        self, match: Callable[[SSEEvent], bool], *, timeout: float = 20.0
    ) -> list[SSEEvent]:
        """Events up to and including the first that ``match`` accepts."""
        seen: list[SSEEvent] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ev = await self.next(max(0.01, deadline - loop.time()))
            seen.append(ev)
            if match(ev):
                return seen


@asynccontextmanager
async def open_stream(
    port: int, base_url: str, path: str, *, key: str, params: dict[str, Any] | None = None
) -> AsyncIterator[SSEStream]:
    """``GET /stratalab/api/v1/<path>`` as an event stream."""
    url = f"http://127.0.0.1:{port}{base_url}stratalab/api/v1/{path.strip('/')}"
    headers = {"X-API-Key": key, "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0)) as client,
        client.stream("GET", url, headers=headers, params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SSEStream(response)
