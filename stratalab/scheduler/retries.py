"""Retries: which jobs may be re-run, and the child job that re-runs one.

A retry never edits the job that ended: it creates a child with
``parent_job_id``, so the first attempt's record and timeline stay as they
were. Each job type then queues the child its own way.
"""

from __future__ import annotations

from stratalab.errors import Conflict
from stratalab.ids import new_id, utcnow
from stratalab.scheduler.db import Job
from stratalab.scheduler.schemas import RetryRequest
from stratalab.scheduler.states import JobState

_S = JobState


def retry_child(parent: Job, req: RetryRequest, *, serving: bool) -> Job:
    """The child job of a retry; :class:`Conflict` when the parent may not be retried."""
    if serving:
        raise Conflict(
            f"{parent.id} is an inference request; submit it again to /inference",
            details={"type": parent.type},
        )
    if parent.state not in (_S.FAILED.value, _S.CANCELLED.value):
        raise Conflict(
            f"only FAILED or CANCELLED jobs can be retried; {parent.id} is {parent.state}",
            details={"status": parent.state},
        )
    now = utcnow()
    res = dict(parent.resources or {})
    for field in ("cpu", "memory_gb", "gpu"):
        if getattr(req, field) is not None:
            res[field] = getattr(req, field)
    return Job(
        id=new_id("job"),
        user_id=parent.user_id,
        name=parent.name,
        type=parent.type,
        state=_S.QUEUED.value,
        priority=req.priority or parent.priority,
        created_at=now,
        queued_at=now,
        updated_at=now,
        spec=dict(parent.spec or {}),
        resources=res,
        metadata_=dict(parent.metadata_ or {}),
        max_retries=parent.max_retries,
        retry_count=0,
        attempt=0,
        parent_job_id=parent.id,
        project_id=parent.project_id,
    )
