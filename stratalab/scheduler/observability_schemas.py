"""Response models of the dashboard, metrics and logs routes (for the OpenAPI document).

Field names follow the Strata dashboard seed (``checkpoint_throughput``,
``coordinator_rps``, ``barrier_latency_p99``, ``shard_assignment_time``) and
FLOPY-NET's live metrics (``cpu_usage``, ``memory_usage``, ``queue_size``).
Where the Strata seed says ``tasks`` the dashboard says ``jobs``, as the
rest of this API does. Objects allow extra fields: figures are added over
time without breaking clients.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class MetricsOut(_Open):
    """``GET /metrics``: system-wide figures (cached about a second)."""

    timestamp: str
    checkpoint_throughput: float | None = Field(
        description="MB/s over the newest 20 checkpoints (total bytes / total write time)."
    )
    coordinator_rps: float = Field(description="API requests per second over the last 10 s.")
    active_workers: int = Field(description="Workers taking work (not drained, running).")
    total_workers: int = Field(description="Workers connected to the Dask scheduler.")
    barrier_latency_p99: float | None = Field(
        description="p99 of the full-sync round barrier (ms) over the newest rounds."
    )
    shard_assignment_time: float | None = Field(
        description="Time the newest dataset's shard placement took (ms)."
    )
    queued_jobs: int
    running_jobs: int
    jobs_by_state: dict[str, int]
    inference_rps: float | None = Field(description="Inference requests/s over the last minute.")
    requests_total: int
    request_latency_ms: dict[str, float | None] = Field(
        description="p50/p90/p95/p99/mean/max of the newest 2,048 API requests (streams excluded)."
    )
    units: dict[str, str]


class LogEntry(_Open):
    """One log line: a job's output or note (``source: job``) or the coordinator's."""

    id: int | str
    ts: str | None
    source: str = Field(description="job or coordinator")
    job_id: str | None = None
    level: str
    message: str


class LogsOut(BaseModel):
    """``GET /logs``: the newest ``limit`` entries, oldest first."""

    items: list[LogEntry]
    limit: int
    job_id: str | None = None


class WorkerLogLine(BaseModel):
    """One line of a Dask worker's own log."""

    ts: str | None
    logger: str | None
    level: str
    message: str


class WorkerLogsOut(BaseModel):
    """``GET /workers/{id}/logs``: pulled from the worker, oldest first."""

    worker_id: str
    address: str
    items: list[WorkerLogLine]


class WorkersStatsOut(_Open):
    """``GET /workers/stats``."""

    total: int
    active: int
    by_status: dict[str, int]
    hosts: int
    nthreads: int
    gpus: int
    memory_limit_bytes: int
    memory_used_bytes: int
    cpu_percent: dict[str, float | None]
    tasks: dict[str, int] = Field(description="Dask tasks on the workers, by state.")
    running_jobs: int
    allocated: dict[str, int]
    utilization: dict[str, float]


class ThroughputPoint(BaseModel):
    """One time bucket."""

    t: str
    requests: int
    items: int
    errors: int
    requests_per_second: float


class ThroughputOut(_Open):
    """``GET /dashboard/throughput``: inference requests per bucket over a window."""

    window_s: float
    project_id: str | None
    bucket_size: float | None
    points: list[ThroughputPoint]
    summary: dict[str, Any]


class LiveMetricsOut(BaseModel):
    """``GET /metrics/live``: per service (coordinator, scheduler, workers, database)."""

    timestamp: str | None
    interval: float
    services: dict[str, dict[str, Any]]


class DashboardJobs(BaseModel):
    """The jobs part of the dashboard (the Strata seed's ``tasks``)."""

    by_state: dict[str, int]
    queued: int
    running: list[dict[str, Any]]
    recent: list[dict[str, Any]]


class DashboardOut(BaseModel):
    """``GET /dashboard``: the whole system in one answer (cached about a second)."""

    generated_at: str | None
    cache_ttl_s: float
    build_ms: float = Field(description="Time this snapshot took to build (server side).")
    coordinator: dict[str, Any]
    workers: list[dict[str, Any]] = Field(
        description="Worker views plus assigned_shards and current_step."
    )
    datasets: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    barriers: list[dict[str, Any]] = Field(
        description="Newest full-sync round barriers: job_id, round, barrier_ms, ts."
    )
    metrics: MetricsOut
    jobs: DashboardJobs
    logs: list[LogEntry]
