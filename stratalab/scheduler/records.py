"""Request records (latency, worker, device, compute time), written in batches.

Every served request leaves a record for analytics, usage and billing. A
commit per request would cost the sync path more than the forward pass, so
records queue in memory and one transaction per interval writes them all.
``flush`` is awaited before anything reads them (analytics, shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from stratalab.scheduler.db import Base, InferenceRecord
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
#: most records kept while the database is unreachable (the oldest go first).
MAX_BUFFERED = 200_000


class RecordSink:
    """Buffers rows (request records by default) and writes them in one transaction per interval."""

    def __init__(
        self,
        store: Store,
        db: DbCall,
        *,
        flush_interval_s: float = 0.5,
        table: type[Base] = InferenceRecord,
    ) -> None:
        self.store = store
        self._db = db
        #: the table the rows go to (training metrics reuse this sink).
        self.table = table
        self.flush_interval_s = flush_interval_s
        self._buffer: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        #: records written since start, and records dropped on overflow.
        self.written = 0
        self.dropped = 0
        #: callbacks shown every record as it is queued (usage rolls up request records).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    @property
    def backlog(self) -> int:
        """Records waiting for the next flush."""
        return len(self._buffer)

    def add(self, **record: Any) -> None:
        """Queue one record (columns of :class:`InferenceRecord`)."""
        self._buffer.append(record)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # a listener's bug must not fail the request being recorded
                logger.exception("a record listener failed")
        if len(self._buffer) > MAX_BUFFERED:
            del self._buffer[: len(self._buffer) - MAX_BUFFERED]
            self.dropped += 1

    async def flush(self) -> None:
        """Write everything queued so far."""
        async with self._lock:
            if not self._buffer:
                return
            rows, self._buffer = self._buffer, []
            try:
                await self._db(self._insert, rows)
            except Exception:
                logger.exception("could not write %d request records; will retry", len(rows))
                self._buffer[:0] = rows
                return
            self.written += len(rows)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self.store.session() as s:
            s.execute(sa.insert(self.table), rows)

    async def run(self, closing: Callable[[], bool]) -> None:
        """Flush every interval until ``closing()``; then once more."""
        while not closing():
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()
        await self.flush()
