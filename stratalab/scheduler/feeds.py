"""One consumer's live feed of bus events: chosen topics, a job filter, and tenancy.

The WebSocket (``/ws``) holds one :class:`EventFeed` per connection. The feed
reads from a bounded bus subscription, so a consumer that falls behind loses
its oldest events (counted, see :meth:`EventFeed.take_lagged`) and never slows
the publishers or the other consumers. A user receives only events about
their own jobs and alerts, plus the worker events everyone may see; an admin
receives everything. Events that carry no user id (training metrics, log
lines) are checked against the job's owner in the store, once per job.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import sqlalchemy as sa

from stratalab.errors import BadRequest, NotFound
from stratalab.scheduler.db import Job
from stratalab.scheduler.events import Event, EventBus, Subscription
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.store import Store

DbCall = Callable[..., Awaitable[Any]]
#: topics a feed may subscribe to.
FEED_TOPICS = ("workers", "jobs", "metrics", "logs", "alerts")
#: topics whose events name a job but no user: their owner is looked up.
_JOB_SCOPED = frozenset({"metrics", "logs"})
#: most job ids one subscription may name.
MAX_JOB_IDS = 1000
#: job owners remembered per feed (a job's owner never changes).
_OWNER_CACHE = 4096


class EventFeed:
    """Bus events for one consumer, filtered by topic, job and what the caller may see."""

    def __init__(
        self,
        *,
        bus: EventBus,
        store: Store,
        db: DbCall,
        principal: Principal,
        maxsize: int = 256,
    ) -> None:
        self._store = store
        self._db = db
        self._owner = principal.owner_filter()
        #: topics the consumer receives now (none until it subscribes).
        self.topics: set[str] = set()
        #: when set, events about a job are only those of these jobs.
        self.job_ids: frozenset[str] | None = None
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._sub: Subscription = bus.subscribe(FEED_TOPICS, maxsize=maxsize, accept=self._accept)

    # ---------------------------------------------------------- subscription
    async def subscribe(
        self, topics: Iterable[str], job_ids: list[str] | None, *, replace_jobs: bool
    ) -> dict[str, Any]:
        """Add ``topics``; with ``replace_jobs``, narrow to ``job_ids`` (None: every job).

        Raises :class:`BadRequest` for an unknown topic and :class:`NotFound`
        for a job the caller may not see; the subscription is then unchanged.
        """
        wanted = list(topics)
        unknown = sorted(set(wanted) - set(FEED_TOPICS))
        if not wanted or unknown:
            raise BadRequest(
                f"unknown topic {', '.join(unknown)}" if unknown else "name at least one topic",
                details={"field": "topics", "unknown": unknown, "allowed": list(FEED_TOPICS)},
            )
        if replace_jobs and job_ids is not None:
            if len(job_ids) > MAX_JOB_IDS:
                raise BadRequest(f"at most {MAX_JOB_IDS} job_ids", details={"field": "job_ids"})
            owners = await self._db(_job_owners, self._store, sorted(set(job_ids)))
            for job_id in job_ids:
                owner = owners.get(job_id)
                if owner is None or (self._owner is not None and owner != self._owner):
                    raise NotFound(f"no job {job_id}", details={"field": "job_ids"})
            for job_id, owner in owners.items():
                self._remember(job_id, owner)
        self.topics.update(wanted)
        if replace_jobs:
            self.job_ids = None if job_ids is None else frozenset(job_ids)
        return self.state()

    def unsubscribe(self, topics: Iterable[str] | None) -> dict[str, Any]:
        """Stop receiving ``topics`` (None: all of them)."""
        if topics is None:
            self.topics.clear()
        else:
            self.topics.difference_update(topics)
        return self.state()

    def state(self) -> dict[str, Any]:
        """What the consumer receives now."""
        jobs = None if self.job_ids is None else sorted(self.job_ids)
        return {"topics": sorted(self.topics), "job_ids": jobs}

    # ----------------------------------------------------------------- read
    def _accept(self, event: Event) -> bool:
        """Cheap filter on the publisher's path (the owner of a new job is checked on read)."""
        if event.topic not in self.topics:
            return False
        data = event.data
        job_id = data.get("job_id")
        if self.job_ids is not None and job_id is not None and job_id not in self.job_ids:
            return False
        if self._owner is None or event.topic == "workers":
            return True
        if "user_id" in data:
            return bool(data["user_id"] == self._owner)
        if job_id is None:
            return False
        known = self._owners.get(str(job_id))
        return known is None or known == self._owner

    async def next(self, timeout: float) -> Event | None:
        """The next event the consumer may see, or None after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self._sub.get(timeout=max(0.001, deadline - loop.time()))
            if event is None:
                return None
            if not self._accept(event):
                continue  # unsubscribed since it was queued
            if self._owner is None or event.topic not in _JOB_SCOPED:
                return event
            if await self.owner_of(str(event.data.get("job_id"))) == self._owner:
                return event

    async def owner_of(self, job_id: str) -> str | None:
        """The user who owns ``job_id`` (None: no such job), cached."""
        owner = self._owners.get(job_id)
        if owner is not None:
            self._owners.move_to_end(job_id)
            return owner
        owner = (await self._db(_job_owners, self._store, [job_id])).get(job_id)
        if owner is not None:
            self._remember(job_id, owner)
        return owner

    def _remember(self, job_id: str, owner: str) -> None:
        self._owners[job_id] = owner
        self._owners.move_to_end(job_id)
        if len(self._owners) > _OWNER_CACHE:
            self._owners.popitem(last=False)

    def take_lagged(self) -> int:
        """Events dropped since the last call because the consumer was too slow."""
        return self._sub.take_lagged()

    @property
    def subscription(self) -> Subscription:
        """The bounded bus subscription underneath (its ``pending`` never exceeds ``maxsize``)."""
        return self._sub

    def close(self) -> None:
        """Detach from the bus."""
        self._sub.close()


def _job_owners(store: Store, job_ids: list[str]) -> dict[str, str]:
    """The owners of the jobs that exist among ``job_ids`` (one query)."""
    with store.session() as s:
        rows = s.execute(sa.select(Job.id, Job.user_id).where(Job.id.in_(job_ids))).all()
    return {job_id: user_id for job_id, user_id in rows}
