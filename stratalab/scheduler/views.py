"""Turn store rows into the dictionaries the API returns.

One function per object, used by every route and stream that shows it, so a
job looks the same in ``GET /jobs/{id}``, in a list, and in an SSE event.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from stratalab.ids import isoformat
from stratalab.scheduler.db import ApiKey, Job, JobEvent, JobLog

_LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def level_name(level: int) -> str:
    """``20`` -> ``"INFO"``."""
    return _LEVEL_NAMES.get(level, logging.getLevelName(level))


def level_number(name: str) -> int | None:
    """``"info"`` -> ``20``; None when the name is not a level."""
    upper = name.upper()
    for number, known in _LEVEL_NAMES.items():
        if known == upper:
            return number
    return None


def timeline_entry(ev: JobEvent) -> dict[str, Any]:
    """One timeline row."""
    return {
        "id": ev.id,
        "ts": isoformat(ev.ts),
        "from_state": ev.from_state,
        "to_state": ev.to_state,
        "reason": ev.reason,
        "worker": ev.worker,
    }


def job_out(
    job: Job,
    *,
    priority_aged: float | None = None,
    why_pending: str | None = None,
    worker_id: str | None = None,
    timeline: list[JobEvent] | None = None,
) -> dict[str, Any]:
    """A job as every route shows it."""
    spec, res = job.spec or {}, job.resources or {}
    out: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "type": job.type,
        "status": job.state,
        "priority": job.priority,
        "priority_aged": priority_aged,
        "why_pending": why_pending,
        "user_id": job.user_id,
        "created_at": isoformat(job.created_at),
        "queued_at": isoformat(job.queued_at),
        "started_at": isoformat(job.started_at),
        "ended_at": isoformat(job.ended_at),
        "worker": job.worker,
        "worker_id": worker_id,
        "attempt": job.attempt,
        "retry_count": job.retry_count,
        "max_retries": job.max_retries,
        "exit_code": job.exit_code,
        "error": job.error,
        "output": job.output,
        "entrypoint": spec.get("entrypoint"),
        "script": spec.get("script"),
        "args": spec.get("args", []),
        "cpu": res.get("cpu", 1),
        "memory_gb": res.get("memory_gb", 0.0),
        "gpu": res.get("gpu", 0),
        "metadata": job.metadata_ or {},
        "parent_job_id": job.parent_job_id,
        "project_id": job.project_id,
        "model_id": job.model_id,
        "result": job.result,
        "progress": job.progress,
    }
    if timeline is not None:
        out["timeline"] = [timeline_entry(ev) for ev in timeline]
    return out


def log_out(row: JobLog | dict[str, Any]) -> dict[str, Any]:
    """One log line (a stored row or a live event)."""
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    ts = get("ts")
    when = datetime.fromtimestamp(float(ts or 0), tz=timezone.utc)
    return {
        "id": get("id"),
        "ts": isoformat(when),
        "attempt": get("attempt"),
        "seq": get("seq"),
        "stream": get("stream"),
        "level": level_name(int(get("level") or 20)),
        "message": get("message"),
    }


def key_out(key: ApiKey) -> dict[str, Any]:
    """An API key without its secret."""
    return {
        "id": key.id,
        "user_id": key.user_id,
        "name": key.name,
        "prefix": key.prefix,
        "scope": key.scope,
        "created_at": isoformat(key.created_at),
        "revoked_at": isoformat(key.revoked_at),
    }
