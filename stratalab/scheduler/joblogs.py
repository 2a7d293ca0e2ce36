"""Job log lines: from Dask events to subscribers at once, to the store in batches.

Workers publish each output line as a Dask event; the sink hands it to live
subscribers (SSE followers) immediately and writes lines in one transaction
per flush interval, so a chatty job costs a commit every 200 ms, not one per
line. A database that refuses a batch gets it again later, within a bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from stratalab.scheduler.events import EventBus
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

#: most log lines held in memory while the database refuses them.
MAX_LOG_BACKLOG = 100_000
STDOUT, STDERR, INFO, ERROR = 20, 30, 20, 40


def clean_text(text: str) -> str:
    """Text a database can store: NUL (which PostgreSQL refuses) becomes U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class LogSink:
    """Buffers job log lines and writes them in batches."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        db: Callable[..., Awaitable[Any]],
        flush_interval_s: float = 0.2,
    ) -> None:
        self.store = store
        self.bus = bus
        self._db = db
        self.flush_interval_s = flush_interval_s
        #: log lines dropped because the database refused them for too long.
        self.dropped = 0
        self._rows: list[dict[str, Any]] = []
        #: one flush at a time, so a reader's flush returns only once earlier lines are stored.
        self._flushing = asyncio.Lock()

    def add(self, row: dict[str, Any]) -> None:
        """Publish a line now and keep it for the next flush."""
        self._rows.append(row)
        self.bus.publish("logs", row)

    def system(self, job_id: str, attempt: int, message: str, level: int = INFO) -> None:
        """A coordinator note in a job's log (placed, lost worker, exit code)."""
        self.add(
            {
                "job_id": job_id,
                "attempt": attempt,
                "seq": 0,
                "ts": time.time(),
                "stream": "system",
                "level": level,
                "message": message,
            }
        )

    def on_worker_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Handler for the workers' log topic (one line per event)."""
        _, msg = event
        stream = str(msg.get("stream", "stdout"))
        self.add(
            {
                "job_id": str(msg.get("job_id")),
                "attempt": int(msg.get("attempt", 0)),
                "seq": int(msg.get("seq", 0)),
                "ts": float(msg.get("ts") or time.time()),
                "stream": stream,
                "level": STDERR if stream == "stderr" else STDOUT,
                "message": clean_text(str(msg.get("line", ""))),
            }
        )

    @property
    def backlog(self) -> int:
        """Lines waiting for the next flush."""
        return len(self._rows)

    async def flush(self) -> None:
        """Write buffered lines in one transaction; keep them (bounded) on refusal."""
        async with self._flushing:
            rows, self._rows = self._rows, []
            if not rows:
                return
            try:
                await self._db(self.store.add_logs, rows)
            except sa.exc.SQLAlchemyError:
                logger.exception("could not store %d log lines; will retry", len(rows))
                kept = (rows + self._rows)[-MAX_LOG_BACKLOG:]
                self.dropped += len(rows) + len(self._rows) - len(kept)
                self._rows = kept

    async def run(self, closing: Callable[[], bool]) -> None:
        """Flush every interval until ``closing()``."""
        while not closing():
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()
