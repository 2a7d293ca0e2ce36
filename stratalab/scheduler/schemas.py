"""Request and response models: validation and the OpenAPI document in one.

Requests are strict (no unknown fields, no silent type coercion) so a typo in
a script fails loudly instead of being ignored. Field names follow the seeds
where they agree (FetchML's task fields, ScaiMind's states and pagination).
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Job names: FetchML's ``job_name`` pattern.
JOB_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"

T = TypeVar("T")


class Strict(BaseModel):
    """Base of request bodies: unknown fields and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class JobSubmit(Strict):
    """``POST /jobs`` for ``type: task``: run a script or command on a worker."""

    name: str = Field(pattern=JOB_NAME_PATTERN, description="Label; letters, digits, - and _.")
    type: Literal["task"] = "task"
    priority: int = Field(5, ge=1, le=10, description="1 (lowest) to 10 (most urgent).")
    entrypoint: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A .py file run with the worker's Python, or a command line.",
    )
    script: str | None = Field(
        None,
        min_length=1,
        max_length=1_000_000,
        description="Inline Python source, written to main.py in the job's workdir.",
    )
    args: list[str] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(default_factory=dict, max_length=128)
    cpu: int = Field(1, ge=1, le=1024, description="Worker threads the job occupies.")
    memory_gb: float = Field(0.0, ge=0, le=65536)
    gpu: int = Field(0, ge=0, le=64, description="Whole GPUs (Dask GPU resource).")
    max_retries: int | None = Field(
        None, ge=0, le=20, description="Retries after a failure; default from config."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    project_id: str | None = Field(None, max_length=32)

    @model_validator(mode="after")
    def _one_program(self) -> JobSubmit:
        if (self.entrypoint is None) == (self.script is None):
            raise ValueError("give exactly one of 'entrypoint' or 'script'")
        return self


class PriorityUpdate(Strict):
    """``PATCH /jobs/{id}/priority``."""

    priority: int = Field(ge=1, le=10)


class CancelRequest(Strict):
    """``POST /jobs/{id}/cancel`` (body optional)."""

    reason: str = Field("cancelled by user", max_length=1000)


class RetryRequest(Strict):
    """``POST /jobs/{id}/retry`` (body optional): a child job re-runs the work."""

    priority: int | None = Field(None, ge=1, le=10)
    cpu: int | None = Field(None, ge=1, le=1024)
    memory_gb: float | None = Field(None, ge=0, le=65536)
    gpu: int | None = Field(None, ge=0, le=64)
    new_resource_config: dict[str, Any] | None = Field(
        None,
        description="Training jobs: a new resource_config (min_devices, max_devices, gpu, ...).",
    )
    modify_resources: bool = Field(False, description="ScaiMind's flag; implied by the config.")


class DrainRequest(Strict):
    """``POST /workers/{id}/drain``: ``force`` re-queues the jobs running there."""

    force: bool = False


class KeyCreate(Strict):
    """``POST /keys``: admins create keys for any user, users for themselves."""

    user_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    name: str = Field("", max_length=128)
    scope: Literal["user", "admin"] = "user"


class ConfigUpdate(Strict):
    """``PUT /config``: the runtime-tunable settings (admin only)."""

    rate_limit_per_minute: int | None = Field(None, ge=0, le=10_000_000)
    aging_interval_s: float | None = Field(None, gt=0, le=86400)
    default_max_retries: int | None = Field(None, ge=0, le=20)
    max_upload_mb: int | None = Field(None, ge=1, le=1_000_000)
    inference_timeout_s: float | None = Field(None, gt=0, le=3600)
    max_batch_json_mb: int | None = Field(None, ge=1, le=100_000)


# ---------------------------------------------------------------- responses
class TimelineEntry(BaseModel):
    """One state transition of a job."""

    id: int
    ts: str
    from_state: str | None
    to_state: str
    reason: str
    worker: str | None = None


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    name: str
    type: str
    status: str
    priority: int
    priority_aged: float | None = Field(None, description="Priority with aging applied (queued).")
    why_pending: str | None = None
    user_id: str
    created_at: str
    queued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    worker: str | None = None
    worker_id: str | None = None
    attempt: int
    retry_count: int
    max_retries: int
    exit_code: int | None = None
    error: str | None = None
    output: str | None = None
    entrypoint: str | None = None
    script: str | None = None
    args: list[str] = []
    cpu: int
    memory_gb: float
    gpu: int
    metadata: dict[str, Any] = {}
    parent_job_id: str | None = None
    project_id: str | None = None
    model_id: str | None = Field(None, description="The model a job serves or produced.")
    result: dict[str, Any] | None = Field(
        None, description="Training: rounds, samples_seen, evaluation, model ids."
    )
    progress: dict[str, Any] | None = Field(
        None,
        description="Training: current_epoch, total_epochs, batches_completed, "
        "percent_complete, current_loss, best_loss, val_accuracy, assigned_devices, ...",
    )
    timeline: list[TimelineEntry] | None = None


class Page(BaseModel, Generic[T]):
    """A page of a list; pass ``next_page_token`` back to get the next one."""

    items: list[T]
    total: int
    next_page_token: str | None = None


class SubmitOut(BaseModel):
    """``POST /jobs`` answer."""

    job_id: str
    status: str
    message: str
    estimated_wait_seconds: float | None = None
    job: JobOut


class LogLine(BaseModel):
    """One line of a job's output."""

    id: int | None = None
    ts: str
    attempt: int
    stream: str
    level: str
    message: str


class KeyOut(BaseModel):
    """An API key without its secret."""

    id: str
    user_id: str
    name: str
    prefix: str
    scope: str
    created_at: str
    revoked_at: str | None = None


class KeyCreated(KeyOut):
    """A new key; ``key`` is shown this once and never again."""

    key: str


class WorkerOut(BaseModel):
    """A Dask worker as the platform sees it."""

    id: str
    address: str
    name: str
    host: str
    status: str = Field(description="active, draining, drained")
    nthreads: int
    memory_limit_bytes: int
    gpus: int
    resources: dict[str, float]
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    running_jobs: list[str]
    used_cpu: int
    used_gpus: int


class QueueOut(BaseModel):
    """Queue depth, running work, and waits."""

    depth: int
    running: int
    by_priority: dict[str, int]
    by_state: dict[str, int]
    oldest_wait_seconds: float | None
    estimated_wait_seconds: float | None
    completed_24h: int
    failed_24h: int
    jobs: list[JobOut]


class ErrorBody(BaseModel):
    """What went wrong, safe to show."""

    code: str
    message: str
    details: dict[str, Any] | None = None
    trace_id: str


class ErrorEnvelope(BaseModel):
    """Every error response."""

    error: ErrorBody
