"""SQLAlchemy 2 table definitions: the one source of the store's schema.

Alembic migrations under ``migrations/versions`` create exactly these tables;
``tests/scheduler/test_store.py`` checks that the migrated schema and this
module agree, so neither can drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stratalab.ids import utcnow


class Base(DeclarativeBase):
    """Declarative base for every StrataLab table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ApiKey(Base):
    """An API key, stored as its sha256 hash only."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    #: sha256 hex of the secret; the secret itself is shown once, never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: the first characters of the secret, so a user can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    #: "user" or "admin".
    scope: Mapped[str] = mapped_column(String(16), default="user")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Job(Base):
    """One unit of accepted work: a task, a training run, a batch inference."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: when the job last entered the queue; aging counts from here.
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: type-specific request (entrypoint, script, args, env, ...).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: cpu, memory_gb, gpu.
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    max_retries: Mapped[int] = mapped_column(Integer, default=1)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    #: attempt number of the current or last run (1-based; 0 before the first).
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    parent_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: the model a job serves or produced (deleting it answers 409 while the job runs).
    model_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    #: live progress of a training job (round, epoch, loss, ...), for ``GET /jobs/{id}``.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class JobEvent(Base):
    """One row of a job's timeline: a state transition with its reason."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)


class JobLog(Base):
    """One line of a job's output or of the coordinator's notes about it."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    ts: Mapped[float] = mapped_column(Float)
    #: "stdout", "stderr" or "system".
    stream: Mapped[str] = mapped_column(String(8))
    #: logging level number (10 DEBUG, 20 INFO, 30 WARNING, 40 ERROR).
    level: Mapped[int] = mapped_column(Integer, default=20)
    message: Mapped[str] = mapped_column(Text)


class WorkerFlag(Base):
    """An operator's decision about a worker (drained), kept across restarts."""

    __tablename__ = "worker_flags"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Setting(Base):
    """A runtime-tunable setting changed through ``PUT /config``."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class Model(Base):
    """A registered model: its verified artifact (by sha256), signature and adapters."""

    __tablename__ = "models"
    __table_args__ = (
        Index("ix_models_user_created", "user_id", "created_at"),
        Index("ix_models_sha256", "sha256"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    #: "onnx" or "torchscript", detected from the content.
    format: Mapped[str] = mapped_column(String(16))
    #: hex digest of the artifact; the file lives at ``artifacts/<sha[:2]>/<sha>``.
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    #: input and output tensor specs (name, shape, dtype) read from the model.
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    outputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    labels: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    preprocessing: Mapped[str | None] = mapped_column(String(32), nullable=True)
    postprocessing: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: the job that produced it (training), if any.
    source_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: set on delete; the row stays so request records keep their model.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Project(Base):
    """A group of inference or training work, tracked together for analytics."""

    __tablename__ = "projects"
    __table_args__ = (Index("ix_projects_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    #: realtime, batch, training or benchmark.
    type: Mapped[str] = mapped_column(String(16))
    #: active, completed or cancelled.
    status: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    total_tasks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class InferenceRecord(Base):
    """One served request (sync, async) or batch shard: what it cost and where it ran."""

    __tablename__ = "inference_records"
    __table_args__ = (
        Index("ix_inference_records_project_ts", "project_id", "ts"),
        Index("ix_inference_records_user_ts", "user_id", "ts"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    #: unix seconds when the request arrived.
    ts: Mapped[float] = mapped_column(Float)
    user_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_id: Mapped[str] = mapped_column(String(32))
    #: the ``infer_``/``batch_`` id the request answered with.
    request_id: Mapped[str] = mapped_column(String(32))
    #: sync, async or batch.
    kind: Mapped[str] = mapped_column(String(8))
    #: None when it succeeded, else the error code.
    error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    compute_ms: Mapped[float] = mapped_column(Float, default=0.0)
    items: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: "cpu" or "cuda": the device the forward pass ran on.
    device: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: the worker pool (GPU or CPU workers) for per-pool comparisons.
    pool: Mapped[str | None] = mapped_column(String(32), nullable=True)


class BatchShard(Base):
    """One shard of a batch inference job; finished shards survive restarts."""

    __tablename__ = "batch_shards"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: first item of the shard in the job, and how many items it holds.
    start: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    #: pending, done or failed.
    state: Mapped[str] = mapped_column(String(16), default="pending")
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    compute_ms: Mapped[float] = mapped_column(Float, default=0.0)
    #: per-item errors ``[{"index", "code", "message"}]``.
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    """A registered dataset: where it is, what ``inspect`` found, and its shards' places."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    #: reader format: csv, parquet, npz, webdataset, builtin, stream.
    format: Mapped[str] = mapped_column(String(16))
    #: fsspec URL, built-in name, or the artifact path of an uploaded file.
    source: Mapped[str] = mapped_column(Text)
    #: reader options (label column, feature columns, array keys, ...).
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: ``DatasetInfo.to_dict()`` of the source, read once at registration.
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    num_rows: Mapped[int] = mapped_column(Integer)
    num_shards: Mapped[int] = mapped_column(Integer)
    #: rows held out at the end of the source for validation.
    validation_rows: Mapped[int] = mapped_column(Integer, default=0)
    #: sha256 of an uploaded file (None for URLs and built-in data).
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: worker address of each shard, by shard index (as text).
    placement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: milliseconds the last full shard assignment took.
    shard_assignment_ms: Mapped[float] = mapped_column(Float, default=0.0)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Checkpoint(Base):
    """A saved training state, content-addressed; ``status`` says whether it verified."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        Index("ix_checkpoints_job_round", "job_id", "round"),
        Index("ix_checkpoints_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    round: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    #: seconds the atomic write took, and its rate (``checkpoint_throughput``).
    write_s: Mapped[float] = mapped_column(Float)
    mb_per_s: Mapped[float] = mapped_column(Float)
    #: ok, or corrupt once a read failed verification.
    status: Mapped[str] = mapped_column(String(16), default="ok")
    #: why it was written: round, pause, preempt, final.
    reason: Mapped[str] = mapped_column(String(16), default="round")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingMetric(Base):
    """One metrics point of a training job: global per round, or one worker's per step."""

    __tablename__ = "training_metrics"
    __table_args__ = (Index("ix_training_metrics_job_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[float] = mapped_column(Float)
    round: Mapped[int] = mapped_column(Integer)
    #: global step (round-level points) or the worker's local step.
    step: Mapped[int] = mapped_column(Integer)
    #: None for the global (aggregated) point, else the worker's address.
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: name -> number (loss, accuracy, val_loss, val_accuracy, samples_per_s, ...).
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Evaluation(Base):
    """A model state (a job's latest or a checkpoint) measured on benchmarks."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    checkpoint_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: QUEUED, RUNNING, COMPLETED or FAILED.
    status: Mapped[str] = mapped_column(String(16))
    benchmarks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: per benchmark: loss, accuracy, per_class, latency_ms.
    results: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Reservation(Base):
    """Capacity held for a user until a job claims it or it expires."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_status", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    gpu_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: workers held.
    node_count: Mapped[int] = mapped_column(Integer, default=1)
    #: active, claimed, expired or cancelled.
    status: Mapped[str] = mapped_column(String(16))
    #: the job that used it.
    claimed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: worker addresses the reservation holds.
    workers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Alert(Base):
    """An alert a rule raised over live metrics; a person acknowledges it, the rule resolves it."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_status_started", "status", "started_at"),
        Index("ix_alerts_started_at", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: the rule that raised it (worker_lost, memory_high, queue_wait, job_failed, ...).
    rule: Mapped[str] = mapped_column(String(64))
    #: info, warning or critical.
    severity: Mapped[str] = mapped_column(String(16))
    #: active, acknowledged or resolved.
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    #: the metric the rule watches, its value when raised, and the rule's threshold.
    metric: Mapped[str | None] = mapped_column(String(64), nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: what it is about (a worker id, a job id), so one rule raises one alert per subject.
    subject: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: the user whose work it concerns (None: the whole platform, admins only).
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)


class UsageRecord(Base):
    """Work done for a user, measured on the workers: the ground truth of usage and billing."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_ts", "user_id", "ts"),
        Index("ix_usage_records_project_ts", "project_id", "ts"),
        Index("ix_usage_records_ts", "ts"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    #: unix seconds when the work ended.
    ts: Mapped[float] = mapped_column(Float)
    user_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: task, training, evaluation, inference or batch.
    kind: Mapped[str] = mapped_column(String(16))
    #: CPU and GPU milliseconds measured on the worker.
    cpu_ms: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_ms: Mapped[float] = mapped_column(Float, default=0.0)
    #: tasks run, items processed, and how many of the tasks failed.
    tasks: Mapped[int] = mapped_column(Integer, default=1)
    items: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: gpu or cpu: the worker pool, for per-pool comparisons.
    pool: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: energy in joules where NVML or RAPL measured it; None where nothing could.
    energy_j: Mapped[float | None] = mapped_column(Float, nullable=True)
