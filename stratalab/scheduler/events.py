"""An in-process publish/subscribe bus for job, log, worker and alert events.

Publishing never blocks and never waits for a consumer: each subscriber has a
bounded queue, and when a slow consumer (an SSE client on a bad link) falls
behind, its oldest events are dropped and counted, so one slow reader can
never stall the coordinator or the other readers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Topics the coordinator publishes ("dashboard" carries periodic dashboard snapshots).
TOPICS = frozenset({"jobs", "logs", "workers", "metrics", "alerts", "dashboard"})


@dataclass(frozen=True)
class Event:
    """One published fact."""

    topic: str  #: one of :data:`TOPICS`
    data: dict[str, Any]  #: JSON-serialisable payload
    ts: float = field(default_factory=time.time)  #: publication time (epoch seconds)


class Subscription:
    """A bounded queue of events for one consumer."""

    def __init__(
        self,
        bus: EventBus,
        topics: frozenset[str],
        maxsize: int,
        accept: Callable[[Event], bool] | None,
    ) -> None:
        self._bus = bus
        #: topics this consumer receives.
        self.topics = topics
        self._accept = accept
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        #: most events this consumer may have waiting.
        self.maxsize = maxsize
        #: events dropped because this consumer was too slow.
        self.dropped = 0
        self._reported = 0

    def offer(self, event: Event) -> None:
        """Queue ``event`` if it matches, dropping the oldest when full."""
        if event.topic not in self.topics or (self._accept and not self._accept(event)):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            self._bus.dropped += 1
        self._queue.put_nowait(event)

    @property
    def pending(self) -> int:
        """Events waiting for this consumer (never more than :attr:`maxsize`)."""
        return self._queue.qsize()

    def take_lagged(self) -> int:
        """Events dropped since the last call: non-zero means the consumer lagged.

        A stream tells its client (a ``lagged`` event) or re-reads the state
        it missed from the store.
        """
        lagged, self._reported = self.dropped - self._reported, self.dropped
        return lagged

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when ``timeout`` seconds pass first."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving events."""
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to subscribers; call it from the event loop only."""

    def __init__(self, default_maxsize: int = 1000) -> None:
        self._subscribers: set[Subscription] = set()
        #: queue bound for subscribers that do not choose one.
        self.default_maxsize = default_maxsize
        #: events published since start, by topic.
        self.published: dict[str, int] = dict.fromkeys(TOPICS, 0)
        #: events dropped for slow consumers since start (all subscriptions).
        self.dropped = 0

    def publish(self, topic: str, data: dict[str, Any]) -> Event:
        """Deliver an event to every matching subscriber without waiting."""
        event = Event(topic, data)
        self.published[topic] = self.published.get(topic, 0) + 1
        for sub in list(self._subscribers):
            sub.offer(event)
        return event

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        maxsize: int | None = None,
        accept: Callable[[Event], bool] | None = None,
    ) -> Subscription:
        """A new subscription to ``topics``, optionally filtered by ``accept``."""
        sub = Subscription(self, frozenset(topics), maxsize or self.default_maxsize, accept)
        self._subscribers.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        """How many consumers are attached."""
        return len(self._subscribers)
