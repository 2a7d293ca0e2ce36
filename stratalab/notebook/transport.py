"""Requests built once, sent by either a blocking or an asyncio transport.

The client's logic is written "sans I/O": an endpoint is a :class:`Request`,
and anything longer (following page tokens, polling until a job ends) is an
:data:`Op`, a generator that yields requests (or a :class:`Sleep`) and gets
the decoded answers back. :func:`run` drives an op with a blocking
:class:`SyncTransport` and :func:`arun` with an :class:`AsyncTransport`, so
``Client`` and ``AsyncClient`` share every rule and differ only in how bytes
move. Server-Sent Events are parsed by one :class:`SSEParser` for both.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from stratalab.notebook.errors import decode, unreachable

T = TypeVar("T")

#: SSE streams stay open while the server sends; it sends a keep-alive every 15 s, so a
#: minute of silence means the connection is dead.
_STREAM_TIMEOUT = httpx.Timeout(30.0, read=60.0)


@dataclass(frozen=True)
class Request:
    """One HTTP call to the API, relative to its base URL."""

    method: str
    path: str
    #: query parameters; a list repeats the parameter, None values are dropped.
    params: Mapping[str, Any] | None = None
    #: a JSON body (None: no body).
    json: Any = None
    #: multipart text fields (with ``files``) or form fields.
    data: Mapping[str, str] | None = None
    #: multipart files: field -> (filename, content, content type).
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    headers: Mapping[str, str] | None = None

    def httpx_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` / ``.stream``."""
        kwargs: dict[str, Any] = {"method": self.method, "url": self.path}
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.data is not None:
            kwargs["data"] = dict(self.data)
        if self.files is not None:
            kwargs["files"] = dict(self.files)
        if self.headers:
            kwargs["headers"] = dict(self.headers)
        return kwargs


@dataclass(frozen=True)
class Sleep:
    """An op's request to pause between polls."""

    seconds: float


#: A multi-request operation: yields requests or sleeps, receives answers, returns T.
Op = Generator["Request | Sleep", Any, T]


@dataclass(frozen=True)
class SSEEvent:
    """One Server-Sent Event with its JSON payload decoded."""

    event: str
    data: Any
    id: str | None = None


@dataclass
class SSEParser:
    """Turn ``text/event-stream`` lines into :class:`SSEEvent` objects."""

    _event: str = "message"
    _id: str | None = None
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SSEEvent | None:
        """Take one line; return an event when a blank line completes one."""
        if not line:
            event = None
            if self._data:
                raw = "\n".join(self._data)
                try:
                    payload: Any = json.loads(raw)
                except ValueError:
                    payload = raw
                event = SSEEvent(self._event, payload, self._id)
            self._event, self._id, self._data = "message", None, []
            return event
        if line.startswith(":"):
            return None  # a keep-alive comment
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


@dataclass(frozen=True)
class Connection:
    """Where the API is and how to authenticate: enough to open another client."""

    #: the API base URL (``http://host:port/stratalab/api/v1``).
    url: str
    #: an ``X-API-Key`` secret (preferred when both are set).
    api_key: str | None = None
    #: a Jupyter server token.
    token: str | None = None
    #: seconds for each ordinary request.
    timeout: float = 30.0

    def headers(self) -> dict[str, str]:
        """The authentication header for this connection."""
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.token:
            return {"Authorization": f"token {self.token}"}
        return {}


class SyncTransport:
    """Send requests with a blocking ``httpx.Client``."""

    def __init__(self, conn: Connection) -> None:
        self.url = conn.url
        self._http = httpx.Client(base_url=conn.url, headers=conn.headers(), timeout=conn.timeout)

    def send(self, req: Request) -> Any:
        """One call; the decoded JSON answer or an :class:`ApiError`."""
        try:
            resp = self._http.request(**req.httpx_kwargs())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise unreachable(self.url, exc) from None
        return decode(resp)

    def stream(self, req: Request) -> Generator[SSEEvent, None, None]:
        """The events of an SSE route until the server closes the stream."""
        parser = SSEParser()
        try:
            with self._http.stream(**req.httpx_kwargs(), timeout=_STREAM_TIMEOUT) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    decode(resp)
                for line in resp.iter_lines():
                    if (event := parser.feed(line)) is not None:
                        yield event
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise unreachable(self.url, exc) from None

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class AsyncTransport:
    """Send requests with an ``httpx.AsyncClient`` (inside a running event loop)."""

    def __init__(self, conn: Connection) -> None:
        self.url = conn.url
        self._http = httpx.AsyncClient(
            base_url=conn.url, headers=conn.headers(), timeout=conn.timeout
        )

    async def send(self, req: Request) -> Any:
        """One call; the decoded JSON answer or an :class:`ApiError`."""
        try:
            resp = await self._http.request(**req.httpx_kwargs())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise unreachable(self.url, exc) from None
        return decode(resp)

    async def stream(self, req: Request) -> AsyncGenerator[SSEEvent, None]:
        """The events of an SSE route until the server closes the stream."""
        parser = SSEParser()
        try:
            async with self._http.stream(**req.httpx_kwargs(), timeout=_STREAM_TIMEOUT) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    decode(resp)
                async for line in resp.aiter_lines():
                    if (event := parser.feed(line)) is not None:
                        yield event
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise unreachable(self.url, exc) from None

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def run(step: Request | Op[T], transport: SyncTransport) -> Any:
    """Send a request, or drive an op to its result, blocking."""
    if isinstance(step, Request):
        return transport.send(step)
    op, answer = step, None
    try:
        while True:
            nxt = op.send(answer)
            if isinstance(nxt, Sleep):
                time.sleep(nxt.seconds)
                answer = None
            else:
                answer = transport.send(nxt)
    except StopIteration as stop:
        return stop.value
    finally:
        op.close()


async def arun(step: Request | Op[T], transport: AsyncTransport) -> Any:
    """Send a request, or drive an op to its result, without blocking the loop."""
    if isinstance(step, Request):
        return await transport.send(step)
    op, answer = step, None
    try:
        while True:
            nxt = op.send(answer)
            if isinstance(nxt, Sleep):
                await asyncio.sleep(nxt.seconds)
                answer = None
            else:
                answer = await transport.send(nxt)
    except StopIteration as stop:
        return stop.value
    finally:
        op.close()
