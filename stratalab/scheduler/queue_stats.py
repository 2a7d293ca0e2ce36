"""``GET /queue``: what waits, what runs, and how the last day went."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from stratalab.ids import as_utc, utcnow
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.states import ACTIVE, JobState

if TYPE_CHECKING:
    from stratalab.scheduler.coordinator import Coordinator

_S = JobState


async def queue_stats(c: Coordinator, principal: Principal) -> dict[str, Any]:
    """Depth by priority, running work, waits, and the last day's outcomes."""
    owner = principal.owner_filter()
    counts = await c.db(c.store.state_counts, user_id=owner)
    ended = await c.db(c.store.ended_since, utcnow() - timedelta(hours=24))
    now = time.time()
    by_priority: dict[str, int] = {}
    queued = [q for q in c.runner.queue.values() if owner is None or q.user_id == owner]
    waits = [q.queued_at for q in queued]
    for job in c.training.queue.values():  # training jobs wait in their own queue
        if owner is None or job.user_id == owner:
            by_priority[str(job.priority)] = by_priority.get(str(job.priority), 0) + 1
            waits.append(as_utc(job.queued_at or job.created_at).timestamp())
    for q in queued:
        by_priority[str(q.priority)] = by_priority.get(str(q.priority), 0) + 1
    rows, _ = await c.db(
        c.store.list_jobs,
        user_id=owner,
        states=[_S.QUEUED.value],
        order_by="created_at",
        offset=0,
        limit=1000,
    )
    jobs = sorted(
        (c.view(j) for j in rows),
        key=lambda j: (-(j["priority_aged"] or j["priority"]), j["queued_at"]),
    )
    return {
        "depth": counts.get(_S.QUEUED.value, 0) + counts.get(_S.PENDING.value, 0),
        "running": sum(counts.get(s.value, 0) for s in ACTIVE),
        "by_priority": by_priority,
        "by_state": counts,
        "oldest_wait_seconds": round(now - min(waits), 3) if waits else None,
        "estimated_wait_seconds": c.runner.estimated_wait(),
        "completed_24h": ended.get(_S.COMPLETED.value, 0),
        "failed_24h": ended.get(_S.FAILED.value, 0),
        "jobs": jobs,
    }
