"""The shapes of what the API returns, as ``TypedDict``.

Results stay the plain JSON dicts the server sends (they print, serialise
and index like the REST examples, and a field the server adds later is not
lost), while editors and type checkers know every key. The names mirror the
server's pydantic response models in ``stratalab.scheduler.schemas``.
"""

from __future__ import annotations

from typing import Any, TypedDict


class TimelineEntry(TypedDict):
    """One state transition of a job."""

    id: int
    ts: str
    from_state: str | None
    to_state: str
    reason: str
    worker: str | None


class Job(TypedDict, total=False):
    """A job (``GET /jobs/{id}``; ``timeline`` only there, not in lists)."""

    id: str
    name: str
    type: str
    status: str
    priority: int
    priority_aged: float | None
    why_pending: str | None
    user_id: str
    created_at: str
    queued_at: str | None
    started_at: str | None
    ended_at: str | None
    worker: str | None
    worker_id: str | None
    attempt: int
    retry_count: int
    max_retries: int
    exit_code: int | None
    error: str | None
    output: str | None
    entrypoint: str | None
    script: str | None
    args: list[str]
    cpu: int
    memory_gb: float
    gpu: int
    metadata: dict[str, Any]
    parent_job_id: str | None
    project_id: str | None
    #: the model a job serves or produced.
    model_id: str | None
    #: training: rounds, samples_seen, evaluation, model ids.
    result: dict[str, Any] | None
    #: training: current_round, percent_complete, current_loss, val_accuracy, ...
    progress: dict[str, Any] | None
    timeline: list[TimelineEntry]


class SubmitResult(TypedDict):
    """``POST /jobs`` and ``POST /jobs/{id}/retry``."""

    job_id: str
    status: str
    message: str
    estimated_wait_seconds: float | None
    job: Job


class LogLine(TypedDict):
    """One line of a job's output."""

    id: int | None
    ts: str
    attempt: int
    seq: int | None
    stream: str
    level: str
    message: str


class JobUpdate(TypedDict):
    """One item of :meth:`Jobs.monitor`: a state change (or another update) of a job."""

    job_id: str
    #: ``state`` for a transition, ``update`` for other changes (priority, ...).
    event: str
    status: str
    from_state: str | None
    reason: str | None
    ts: str | None
    worker: str | None
    #: the raw event payload.
    data: dict[str, Any]


class Worker(TypedDict):
    """A Dask worker as the platform sees it."""

    id: str
    address: str
    name: str
    host: str
    status: str
    nthreads: int
    memory_limit_bytes: int
    gpus: int
    resources: dict[str, float]
    cpu_percent: float | None
    memory_bytes: int | None
    running_jobs: list[str]
    used_cpu: int
    used_gpus: int


class Key(TypedDict):
    """An API key without its secret."""

    id: str
    user_id: str
    name: str
    prefix: str
    scope: str
    created_at: str
    revoked_at: str | None


class KeyCreated(Key):
    """A new key; ``key`` is the secret, shown this once."""

    key: str


class Queue(TypedDict):
    """``GET /queue``: depth, running work and waits."""

    depth: int
    running: int
    by_priority: dict[str, int]
    by_state: dict[str, int]
    oldest_wait_seconds: float | None
    estimated_wait_seconds: float | None
    completed_24h: int
    failed_24h: int
    jobs: list[Job]


class Cluster(TypedDict):
    """``GET /cluster``: capacity, allocation and utilisation."""

    scheduler_address: str
    dashboard_link: str | None
    embedded: bool
    workers: dict[str, int]
    capacity: dict[str, int]
    allocated: dict[str, int]
    utilization: dict[str, float]
    running_jobs: int
    queued_jobs: int


class Health(TypedDict):
    """``GET /health``."""

    status: str
    version: str
    uptime_s: float


class Status(TypedDict):
    """``GET /status``."""

    version: str
    uptime_s: float
    dask_address: str
    dask_dashboard: str | None
    embedded_cluster: bool
    database: str
    workers: int
    queued_jobs: int
    running_jobs: int


class TensorSpec(TypedDict):
    """One input or output of a model (``None`` dims are dynamic)."""

    name: str
    shape: list[int | str | None] | None
    dtype: str | None


class Model(TypedDict, total=False):
    """A registered model (``POST /models``, ``GET /models/{id}``)."""

    id: str
    name: str
    format: str
    size: int
    #: ``sha256:<hex>`` of the artifact.
    checksum: str
    uploaded_at: str
    updated_at: str
    user_id: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    input_shape: list[int | str | None] | None
    output_shape: list[int | str | None] | None
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    labels: list[str] | None
    preprocessing: str | None
    postprocessing: str | None
    batch_dynamic: bool
    source_job_id: str | None
    description: str
    #: worker ids that hold the model in memory.
    loaded_on: list[str]


class InferenceResult(TypedDict, total=False):
    """``POST /inference`` (sync): the answer and what it cost."""

    job_id: str
    status: str
    model_id: str
    result: Any
    latency_ms: float
    compute_ms: float
    worker_id: str | None
    device: str
    project_id: str | None


class InferenceAccepted(TypedDict, total=False):
    """``POST /inference`` with ``async`` and ``POST /inference/batch`` (202): poll ``poll_url``."""

    job_id: str
    status: str
    message: str
    poll_url: str
    project_id: str | None
    #: items in a batch.
    total_tasks: int | None
    total_shards: int | None


#: ``POST /inference/batch`` answers like an async request.
BatchAccepted = InferenceAccepted


class InferenceProgress(TypedDict):
    """How far a batch is: tasks are items, shards are the Dask tasks that run them."""

    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    total_shards: int
    completed_shards: int
    failed_shards: int
    percent: float


class InferenceJob(TypedDict, total=False):
    """``GET /inference/{job_id}``: status (lower case), result or progress and results."""

    job_id: str
    type: str
    status: str
    #: the job state in capitals (``COMPLETED``).
    state: str
    model_id: str | None
    project_id: str | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    error: Any
    result: Any
    latency_ms: float | None
    compute_ms: float | None
    worker_id: str | None
    device: str | None
    progress: InferenceProgress | None
    #: a batch's page of results: ``{offset, limit, items}`` (None items have not run yet).
    results: dict[str, Any] | None
    errors: list[dict[str, Any]] | None


class Project(TypedDict, total=False):
    """A group of inference or training work, tracked together."""

    id: str
    name: str
    type: str
    status: str
    model_id: str | None
    total_tasks: int | None
    completed_tasks: int
    failed_tasks: int
    description: str
    user_id: str
    created_at: str
    ended_at: str | None
    progress_percent: float | None


class Dataset(TypedDict, total=False):
    """A registered dataset (route in progress; keys as the server sends them)."""

    id: str
    name: str
    format: str
    created_at: str
