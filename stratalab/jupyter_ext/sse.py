"""Server-Sent Events for tornado: headers, framing, keep-alive, disconnects.

A client that stops reading fills its socket; the handler's write then waits,
its bus subscription (bounded) drops the oldest events, and after
:attr:`SSEHandler.stall_timeout_s` the connection is closed. Other streams and
requests never wait for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tornado.iostream import StreamClosedError

from stratalab.jupyter_ext.base import ApiHandler

logger = logging.getLogger(__name__)

#: seconds of silence after which a comment line keeps proxies from closing the stream.
KEEPALIVE_S = 15.0


class SSEHandler(ApiHandler):
    """A route that answers with ``text/event-stream``."""

    _closed = False
    streaming = True
    #: seconds a write may wait for a client that does not read before it is disconnected.
    stall_timeout_s = 60.0

    def start_stream(self) -> None:
        """Send the event-stream headers."""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def send(self, event: str, data: Any, event_id: int | str | None = None) -> bool:
        """Send one event; False when the client has gone."""
        return await self.send_raw(event, json.dumps(data, default=str), event_id)

    async def send_raw(self, event: str, text: str, event_id: int | str | None = None) -> bool:
        """Send one event whose data is already JSON text (shared by many streams)."""
        if self._closed:
            return False
        frame = f"event: {event}\n"
        if event_id is not None:
            frame += f"id: {event_id}\n"
        return await self._write_frame(f"{frame}data: {text}\n\n")

    async def keepalive(self) -> bool:
        """A comment line; False when the client has gone."""
        if self._closed:
            return False
        return await self._write_frame(": keep-alive\n\n")

    async def _write_frame(self, frame: str) -> bool:
        """Write and flush; a client that does not take the bytes in time is dropped."""
        try:
            self.write(frame)
            flushed = self.flush()
            done, _ = await asyncio.wait({flushed}, timeout=self.stall_timeout_s)
            if not done:
                flushed.add_done_callback(_consume)
                logger.warning(
                    "closing %s: the client read nothing for %.0f s",
                    self.request.path,
                    self.stall_timeout_s,
                )
                self._closed = True
                if self.request.connection is not None:
                    self.request.connection.close()  # type: ignore[attr-defined]
                return False
            flushed.result()
        except StreamClosedError:
            self._closed = True
            return False
        return True

    def on_connection_close(self) -> None:
        """Remember that the client left so loops stop."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether the client disconnected."""
        return self._closed


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve the error of a write abandoned on a stalled connection (no log noise)."""
    if not future.cancelled():
        future.exception()
