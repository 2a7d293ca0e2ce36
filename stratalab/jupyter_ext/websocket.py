"""``/ws``: live workers, jobs, metrics, logs and alerts over one WebSocket.

The upgrade request is authenticated like every route (:class:`ApiHandler`:
``X-API-Key``, or the Jupyter token or cookie). Browsers open WebSockets to
any host without CORS, and send the cookie along, so a WebSocket whose
``Origin`` is not the server's own (or one ``ServerApp.allow_origin`` /
``allow_origin_pat`` allows) is refused whatever its credentials.

The client sends JSON messages::

    {"action": "subscribe", "topics": ["jobs", "logs"], "job_ids": ["job_…"]}
    {"action": "unsubscribe", "topics": ["logs"]}        # no topics: all
    {"action": "ping"}

and receives ``{"type": "event", "topic", "data", "ts"}``, ``subscribed`` /
``unsubscribed`` (the subscription as it now stands), ``pong``,
``{"type": "lagged", "dropped": n}`` and ``{"type": "error", "code",
"message"}``; an ``id`` sent with a message comes back on its answer. A bad
message gets an error and the connection stays open. Each connection reads
from a bounded queue (:class:`~stratalab.scheduler.feeds.EventFeed`): a client
that reads too slowly loses the oldest events (and is told how many), and one
that reads nothing for :attr:`EventsWebSocket.stall_timeout_s` is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from jupyter_server.utils import origin_matches_pat
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from stratalab.errors import (
    BadRequest,
    Forbidden,
    RateLimited,
    StrataLabError,
    validation_details,
)
from stratalab.ids import isoformat
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.events import Event
from stratalab.scheduler.feeds import FEED_TOPICS, MAX_JOB_IDS, EventFeed

logger = logging.getLogger(__name__)

_Id = str | int | None


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    #: echoed on the answer, so a client can match answers to requests.
    id: _Id = Field(None, union_mode="left_to_right")


class Subscribe(_Message):
    """Receive ``topics`` (added to the current ones); ``job_ids`` narrows job events."""

    action: Literal["subscribe"]
    topics: list[str] = Field(max_length=len(FEED_TOPICS) * 2)
    job_ids: list[str] | None = Field(None, max_length=MAX_JOB_IDS)


class Unsubscribe(_Message):
    """Stop receiving ``topics`` (all of them when left out)."""

    action: Literal["unsubscribe"]
    topics: list[str] | None = Field(None, max_length=len(FEED_TOPICS) * 2)


class Ping(_Message):
    """Ask for a ``pong`` (an application-level keep-alive, besides WebSocket pings)."""

    action: Literal["ping"]


ClientMessage = Annotated[Subscribe | Unsubscribe | Ping, Field(discriminator="action")]
_MESSAGES: TypeAdapter[Subscribe | Unsubscribe | Ping] = TypeAdapter(ClientMessage)


class EventsWebSocket(WebSocketHandler, ApiHandler):
    """``/ws``."""

    streaming = True
    #: events one connection may have waiting before the oldest are dropped.
    queue_size = 256
    #: seconds a write may wait for a client that reads nothing before it is closed.
    stall_timeout_s = 60.0
    #: largest message a client may send, in bytes (subscriptions are small).
    max_message_bytes = 64 * 1024

    _feed: EventFeed | None = None
    _pump: asyncio.Future[None] | None = None

    def set_default_headers(self) -> None:
        """No page headers on an upgrade (as jupyter_server's own kernel WebSocket)."""

    @property
    def max_message_size(self) -> int:
        """Larger client messages close the connection (tornado answers 1009)."""
        return self.max_message_bytes

    @property
    def ping_interval(self) -> float:
        """Seconds between server pings: ``ServerApp.websocket_ping_interval``, else 30 s."""
        return float(self.settings.get("websocket_ping_interval") or 30.0)

    @property
    def ping_timeout(self) -> float:
        """Seconds a pong may take (``ServerApp.websocket_ping_timeout``, else the interval)."""
        timeout = float(self.settings.get("websocket_ping_timeout") or self.ping_interval)
        return min(timeout, self.ping_interval)

    # ------------------------------------------------------------------ auth
    async def prepare(self) -> None:  # type: ignore[override]
        """Refuse a foreign Origin, then authenticate as every route does."""
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise Forbidden(
                "a WebSocket from another origin is refused", details={"origin": origin[:200]}
            )
        await super().prepare()

    def check_origin(self, origin: str | None = None) -> bool:
        """The server's own origin, or one ``ServerApp.allow_origin(_pat)`` allows.

        Unlike jupyter_server's REST check, a token does not exempt a WebSocket:
        the browser attaches the cookie to a cross-site WebSocket on its own.
        """
        origin = origin if origin is not None else self.request.headers.get("Origin")
        if origin is None or self.allow_origin == "*":
            return True  # not a browser (scripts send no Origin), or every origin allowed
        host = (self.request.headers.get("Host") or "").lower()
        if urlparse(origin.lower()).netloc == host:
            return True
        if self.allow_origin:
            return bool(self.allow_origin == origin)
        if self.allow_origin_pat:
            return bool(origin_matches_pat(self.allow_origin_pat, origin))
        logger.warning("refused a WebSocket from origin %s (host %s)", origin[:200], host)
        return False

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Upgrade to a WebSocket (``prepare`` authenticated the caller)."""
        await super().get(*args, **kwargs)

    # ------------------------------------------------------------ connection
    def open(self, *args: Any, **kwargs: Any) -> None:
        """Attach a bounded feed to the bus and start forwarding it."""
        c = self.coordinator
        self._feed = EventFeed(
            bus=c.bus, store=c.store, db=c.db, principal=self.principal(), maxsize=self.queue_size
        )
        self._pump = asyncio.ensure_future(self._forward(self._feed))

    def on_close(self) -> None:
        """Detach from the bus."""
        if self._pump is not None:
            self._pump.cancel()
        if self._feed is not None:
            self._feed.close()

    async def on_message(self, message: str | bytes) -> None:
        """One client message: subscribe, unsubscribe or ping; anything else is an error."""
        if self._feed is None:
            return
        if isinstance(message, bytes):
            await self._error(BadRequest("send JSON text messages, not binary ones"), None)
            return
        try:
            raw = json.loads(message)
        except (ValueError, RecursionError):
            await self._error(BadRequest("the message is not valid JSON"), None)
            return
        ident = raw.get("id") if isinstance(raw, dict) else None
        ident = ident if isinstance(ident, str | int) else None
        try:
            self._spend_token()
            msg = _MESSAGES.validate_python(raw)
            reply = await self._act(self._feed, msg)
        except ValidationError as exc:
            await self._error(
                BadRequest("the message is not valid", details=validation_details(exc)), ident
            )
            return
        except StrataLabError as exc:
            await self._error(exc, ident)
            return
        except Exception:  # a store failure: logged with its traceback, never sent
            logger.exception("a WebSocket message failed")
            await self._error(StrataLabError("an internal error occurred"), ident)
            return
        if msg.id is not None:
            reply["id"] = msg.id
        await self._send(reply)

    def _spend_token(self) -> None:
        """Each message counts against the caller's request budget, as a request would."""
        p = self.principal()
        verdict = self.coordinator.limiter.check(p.key_id or f"user:{p.user_id}")
        if not verdict.allowed:
            raise RateLimited(
                f"rate limit of {verdict.limit} requests per minute exceeded",
                retry_after=verdict.retry_after_s,
                details={
                    "limit_per_minute": verdict.limit,
                    "retry_after_s": round(verdict.retry_after_s, 3),
                },
            )

    async def _act(self, feed: EventFeed, msg: Subscribe | Unsubscribe | Ping) -> dict[str, Any]:
        if isinstance(msg, Subscribe):
            replace = "job_ids" in msg.model_fields_set
            state = await feed.subscribe(msg.topics, msg.job_ids, replace_jobs=replace)
            return {"type": "subscribed", **state}
        if isinstance(msg, Unsubscribe):
            return {"type": "unsubscribed", **feed.unsubscribe(msg.topics)}
        return {"type": "pong"}

    async def _error(self, exc: StrataLabError, ident: str | int | None) -> None:
        out: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
        if exc.details:
            out["details"] = exc.details
        if ident is not None:
            out["id"] = ident
        await self._send(out)

    async def _forward(self, feed: EventFeed) -> None:
        """Send the feed's events until the connection closes."""
        try:
            while True:
                event = await feed.next(timeout=self.ping_interval or 30.0)
                lagged = feed.take_lagged()
                if lagged and not await self._send({"type": "lagged", "dropped": lagged}):
                    return
                if event is not None and not await self._send(_event_message(event)):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("WebSocket forwarding failed")
            self.close(1011, "internal error")

    async def _send(self, message: dict[str, Any]) -> bool:
        """Write one message; False when the client has gone or stopped reading."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return False
        try:
            written = self.write_message(json.dumps(message, default=str))
        except WebSocketClosedError:
            return False
        done, _ = await asyncio.wait({written}, timeout=self.stall_timeout_s)
        if not done:
            written.add_done_callback(_consume)
            logger.warning(
                "closing a WebSocket: the client read nothing for %.0f s", self.stall_timeout_s
            )
            self.close(1008, "the client does not read")
            return False
        try:
            written.result()
        except (WebSocketClosedError, StreamClosedError):
            return False
        return True


def _event_message(event: Event) -> dict[str, Any]:
    ts = isoformat(datetime.fromtimestamp(event.ts, tz=timezone.utc))
    return {"type": "event", "topic": event.topic, "data": event.data, "ts": ts}


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve the error of a write abandoned on a stalled connection (no log noise)."""
    if not future.cancelled():
        future.exception()


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The WebSocket route under ``prefix``."""
    return [(f"{prefix}/ws", EventsWebSocket)]
