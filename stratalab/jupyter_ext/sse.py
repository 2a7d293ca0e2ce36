"""Server-Sent Events for tornado: headers, framing, keep-alive, disconnects."""

from __future__ import annotations

import json
from typing import Any

from tornado.iostream import StreamClosedError

from stratalab.jupyter_ext.base import ApiHandler

#: seconds of silence after which a comment line keeps proxies from closing the stream.
KEEPALIVE_S = 15.0


class SSEHandler(ApiHandler):
    """A route that answers with ``text/event-stream``."""

    _closed = False

    def start_stream(self) -> None:
        """Send the event-stream headers."""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def send(self, event: str, data: Any, event_id: int | str | None = None) -> bool:
        """Send one event; False when the client has gone."""
        if self._closed:
            return False
        frame = f"event: {event}\n"
        if event_id is not None:
            frame += f"id: {event_id}\n"
        frame += f"data: {json.dumps(data, default=str)}\n\n"
        try:
            self.write(frame)
            await self.flush()
        except StreamClosedError:
            self._closed = True
            return False
        return True

    async def keepalive(self) -> bool:
        """A comment line; False when the client has gone."""
        if self._closed:
            return False
        try:
            self.write(": keep-alive\n\n")
            await self.flush()
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
