"""Bounded reads of the store for the dashboard, metrics and logs (blocking; run in a thread).

Every query here is indexed and bounded, so its cost does not grow with the
age of the installation: latest-N by an indexed column with ``LIMIT``, or a
window of the newest ids of an append-only table (``id > max(id) - window``,
``max(id)`` being one primary-key lookup). Nothing loads a whole table. The
pure reducers (:func:`barrier_points`, :func:`worker_steps`, ...) turn rows
into API objects and are tested on plain lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stratalab.ids import isoformat
from stratalab.scheduler import analytics
from stratalab.scheduler.db import (
    Checkpoint,
    Dataset,
    InferenceRecord,
    Job,
    JobLog,
    TrainingMetric,
)
from stratalab.scheduler.metrics import checkpoint_throughput, p99
from stratalab.scheduler.store import Store
from stratalab.scheduler.views import level_name

#: newest training-metric rows a dashboard read looks at (barriers, worker steps).
METRIC_WINDOW = 5_000
#: newest log lines a global log read scans for ``level`` and owner matches.
LOG_WINDOW = 100_000
#: newest request records a throughput read looks at.
RECORD_WINDOW = 100_000
#: longest error text a job summary carries.
_ERROR_CHARS = 500


@dataclass
class StoreView:
    """What one dashboard rebuild reads from the store (one transaction)."""

    jobs_by_state: dict[str, int] = field(default_factory=dict)
    recent_jobs: list[dict[str, Any]] = field(default_factory=list)
    running_jobs: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    #: shards held per worker address, over the datasets read.
    shards_by_worker: dict[str, int] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    barriers: list[dict[str, Any]] = field(default_factory=list)
    #: latest local step per worker address, from the newest metric rows.
    worker_steps: dict[str, int] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SystemFigures:
    """The store's part of ``GET /metrics`` (all users)."""

    jobs_by_state: dict[str, int]
    checkpoint_throughput: float | None
    checkpoints_measured: int
    barrier_latency_p99: float | None
    barriers_measured: int
    shard_assignment_time: float | None


# ------------------------------------------------------------------ pure parts
def job_summary(job: Job) -> dict[str, Any]:
    """A job as the dashboard lists it: no script, no output, a short error."""
    error = job.error
    if error and len(error) > _ERROR_CHARS:
        error = error[:_ERROR_CHARS] + "…"
    return {
        "id": job.id,
        "name": job.name,
        "type": job.type,
        "status": job.state,
        "priority": job.priority,
        "user_id": job.user_id,
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "ended_at": isoformat(job.ended_at),
        "worker": job.worker,
        "attempt": job.attempt,
        "exit_code": job.exit_code,
        "error": error,
        "progress": job.progress,
        "project_id": job.project_id,
        "model_id": job.model_id,
    }


def barrier_points(rows: Iterable[tuple[str, float, int, Any]]) -> list[dict[str, Any]]:
    """Round barriers from global metric points ``(job_id, ts, round, values)``, newest first."""
    out = []
    for job_id, ts, rnd, values in rows:
        ms = (values or {}).get("barrier_ms") if isinstance(values, dict) else None
        if isinstance(ms, int | float):
            out.append({"job_id": job_id, "round": rnd, "barrier_ms": float(ms), "ts": _iso(ts)})
    return out


def worker_steps(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Highest step per worker from ``(worker, step)`` rows."""
    steps: dict[str, int] = {}
    for worker, step in rows:
        if step > steps.get(worker, -1):
            steps[worker] = step
    return steps


def shards_by_worker(placements: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many shards each worker address holds over dataset placements."""
    counts: dict[str, int] = {}
    for placement in placements:
        for address in (placement or {}).values():
            if address:
                counts[str(address)] = counts.get(str(address), 0) + 1
    return counts


def log_entry(row: Any) -> dict[str, Any]:
    """A stored job log line as ``GET /logs`` shows it."""
    return {
        "id": row.id,
        "ts": _iso(row.ts),
        "source": "job",
        "job_id": row.job_id,
        "attempt": row.attempt,
        "stream": row.stream,
        "level": level_name(int(row.level)),
        "message": row.message,
    }


def _iso(ts: float) -> str | None:
    return isoformat(datetime.fromtimestamp(float(ts), tz=timezone.utc))


# ---------------------------------------------------------------- store reads
def _floor(s: Session, column: Any, window: int) -> int:
    """The id below the newest ``window`` rows of an append-only table."""
    top = s.scalar(sa.select(sa.func.max(column)))
    return int(top or 0) - window


def _owned_jobs(owner: str) -> Any:
    return sa.select(Job.id).where(Job.user_id == owner)


def job_counts(s: Session, owner: str | None) -> dict[str, int]:
    """Jobs by state (an index-only scan of ``ix_jobs_state`` for admins)."""
    q = sa.select(Job.state, sa.func.count()).group_by(Job.state)
    if owner is not None:
        q = q.where(Job.user_id == owner)
    return {state: int(n) for state, n in s.execute(q).all()}


def recent_jobs(s: Session, owner: str | None, limit: int) -> list[Job]:
    """The newest ``limit`` jobs (``ix_jobs_created_at`` / ``ix_jobs_user_created``)."""
    q = sa.select(Job).order_by(Job.created_at.desc()).limit(limit)
    if owner is not None:
        q = q.where(Job.user_id == owner)
    return list(s.scalars(q))


def jobs_by_id(s: Session, ids: Sequence[str]) -> list[Job]:
    """Jobs by primary key."""
    if not ids:
        return []
    return list(s.scalars(sa.select(Job).where(Job.id.in_(list(ids)))))


def recent_datasets(s: Session, owner: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest live datasets with their placement and shard-assignment time."""
    d = Dataset
    q = (
        sa.select(
            d.id,
            d.name,
            d.format,
            d.num_rows,
            d.num_shards,
            d.shard_assignment_ms,
            d.placement,
            d.created_at,
        )
        .where(d.deleted_at.is_(None))
        .order_by(d.created_at.desc())
        .limit(limit)
    )
    if owner is not None:
        q = q.where(d.user_id == owner)
    return [
        {
            "id": r.id,
            "name": r.name,
            "format": r.format,
            "num_rows": r.num_rows,
            "num_shards": r.num_shards,
            "shard_assignment_ms": round(float(r.shard_assignment_ms or 0.0), 3),
            "created_at": isoformat(r.created_at),
            "placement": r.placement or {},
        }
        for r in s.execute(q).all()
    ]


def recent_checkpoints(s: Session, owner: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest checkpoints (``ix_checkpoints_created_at``)."""
    c = Checkpoint
    q = (
        sa.select(
            c.id, c.job_id, c.round, c.size, c.write_s, c.mb_per_s, c.status, c.reason, c.created_at
        )
        .order_by(c.created_at.desc())
        .limit(limit)
    )
    if owner is not None:
        q = q.where(c.user_id == owner)
    return [
        {
            "id": r.id,
            "job_id": r.job_id,
            "round": r.round,
            "size": r.size,
            "write_seconds": round(float(r.write_s), 6),
            "checkpoint_throughput": round(float(r.mb_per_s), 3),
            "status": r.status,
            "reason": r.reason,
            "created_at": isoformat(r.created_at),
        }
        for r in s.execute(q).all()
    ]


def metric_window(
    s: Session, owner: str | None, *, window: int = METRIC_WINDOW
) -> tuple[list[tuple[str, float, int, Any]], list[tuple[str, int]]]:
    """Global points ``(job_id, ts, round, values)`` newest first, and ``(worker, step)`` rows.

    Both come from the newest ``window`` rows of ``training_metrics``.
    """
    t = TrainingMetric
    floor = _floor(s, t.id, window)
    where: list[Any] = [t.id > floor]
    if owner is not None:
        where.append(t.job_id.in_(_owned_jobs(owner)))
    global_rows = s.execute(
        sa.select(t.job_id, t.ts, t.round, t.values)
        .where(*where, t.worker.is_(None))
        .order_by(t.id.desc())
    ).all()
    steps = s.execute(
        sa.select(t.worker, sa.func.max(t.step))
        .where(*where, t.worker.is_not(None))
        .group_by(t.worker)
    ).all()
    return (
        [(r[0], float(r[1]), int(r[2]), r[3]) for r in global_rows],
        [(str(w), int(step)) for w, step in steps],
    )


def recent_logs(
    s: Session,
    owner: str | None,
    *,
    limit: int,
    min_level: int = 0,
    job_id: str | None = None,
) -> list[dict[str, Any]]:
    """The newest ``limit`` job log lines at ``min_level`` or above, oldest first.

    With ``job_id`` the read uses ``ix_job_logs_job_id_id``; without, it scans
    at most the newest :data:`LOG_WINDOW` lines (primary key).
    """
    where: list[Any] = [JobLog.level >= min_level]
    if job_id is not None:
        where.append(JobLog.job_id == job_id)
    else:
        where.append(JobLog.id > _floor(s, JobLog.id, LOG_WINDOW))
        if owner is not None:
            where.append(JobLog.job_id.in_(_owned_jobs(owner)))
    rows = s.execute(
        sa.select(
            JobLog.id,
            JobLog.job_id,
            JobLog.attempt,
            JobLog.ts,
            JobLog.stream,
            JobLog.level,
            JobLog.message,
        )
        .where(*where)
        .order_by(JobLog.id.desc())
        .limit(limit)
    ).all()
    return [log_entry(r) for r in reversed(rows)]


def inference_rows(
    s: Session,
    *,
    owner: str | None,
    project_id: str | None,
    since: float,
    limit: int = RECORD_WINDOW,
) -> list[analytics.Row]:
    """Request records newer than ``since`` (at most ``limit``, the newest).

    By project or user the composite ``(…, ts)`` indexes serve the range;
    across all users the newest ``limit`` ids (primary key) are read.
    """
    r = InferenceRecord
    cols = (r.ts, r.latency_ms, r.compute_ms, r.error_code, r.items, r.kind, r.worker, r.pool)
    q = sa.select(*cols).where(r.ts >= since)
    if project_id is not None:
        q = q.where(r.project_id == project_id).order_by(r.ts.desc())
    elif owner is not None:
        q = q.where(r.user_id == owner).order_by(r.ts.desc())
    else:
        q = q.where(r.id > _floor(s, r.id, limit)).order_by(r.id.desc())
    return [analytics.Row(*row) for row in s.execute(q.limit(limit)).all()]


# --------------------------------------------------------------- whole reads
def read_view(
    store: Store,
    owner: str | None,
    *,
    running_ids: Sequence[str],
    jobs: int = 20,
    datasets: int = 20,
    checkpoints: int = 20,
    barriers: int = 20,
    logs: int = 50,
) -> StoreView:
    """Everything the dashboard shows from the store, for one owner (None: all)."""
    with store.session() as s:
        points, steps = metric_window(s, owner)
        data = recent_datasets(s, owner, datasets)
        running = [j for j in jobs_by_id(s, running_ids) if owner is None or j.user_id == owner]
        return StoreView(
            jobs_by_state=job_counts(s, owner),
            recent_jobs=[job_summary(j) for j in recent_jobs(s, owner, jobs)],
            running_jobs=[job_summary(j) for j in running],
            datasets=[{k: v for k, v in d.items() if k != "placement"} for d in data],
            shards_by_worker=shards_by_worker(d["placement"] for d in data),
            checkpoints=recent_checkpoints(s, owner, checkpoints),
            barriers=barrier_points(points)[:barriers],
            worker_steps=worker_steps(steps),
            logs=recent_logs(s, owner, limit=logs),
        )


def read_figures(store: Store) -> SystemFigures:
    """The store's figures for ``GET /metrics`` across all users."""
    with store.session() as s:
        ckpts = s.execute(
            sa.select(Checkpoint.size, Checkpoint.write_s)
            .order_by(Checkpoint.created_at.desc())
            .limit(20)
        ).all()
        points, _ = metric_window(s, None)
        latest = s.execute(
            sa.select(Dataset.shard_assignment_ms)
            .where(Dataset.deleted_at.is_(None))
            .order_by(Dataset.created_at.desc())
            .limit(1)
        ).scalar()
        counts = job_counts(s, None)
    barrier_ms = [b["barrier_ms"] for b in barrier_points(points)]
    return SystemFigures(
        jobs_by_state=counts,
        checkpoint_throughput=checkpoint_throughput([(int(a), float(b)) for a, b in ckpts]),
        checkpoints_measured=len(ckpts),
        barrier_latency_p99=p99(barrier_ms),
        barriers_measured=len(barrier_ms),
        shard_assignment_time=None if latest is None else round(float(latest), 3),
    )
