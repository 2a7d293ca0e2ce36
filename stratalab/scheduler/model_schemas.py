"""Request and response models of the models, inference and projects routes.

Field names follow the Distributed Compute Platform seed (``001``): ``input``
for one tensor, ``inputs`` for a batch, ``options.timeout`` in milliseconds,
``checksum`` as ``sha256:<hex>``. The upload form is multipart, so its fields
are parsed by the handler and checked by :class:`ModelUploadFields`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from stratalab.scheduler.schemas import Strict

PreprocessingName = Literal["image_classification", "tabular", "text_tokens", "passthrough"]
PostprocessingName = Literal["top_k_labels", "binary_classification", "regression", "passthrough"]
ProjectType = Literal["realtime", "batch", "training", "benchmark"]
#: An id in a body: prefixed, short, no path characters.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class ModelUploadFields(Strict):
    """The text fields of the ``POST /models`` form (JSON ones already decoded)."""

    name: str | None = Field(None, min_length=1, max_length=128)
    format: Literal["onnx", "torchscript"] | None = None
    input_shape: list[int | None] | None = Field(None, max_length=32)
    output_shape: list[int | None] | None = Field(None, max_length=32)
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    labels: list[str] | None = Field(None, max_length=100_000)
    preprocessing: PreprocessingName | None = None
    postprocessing: PostprocessingName | None = None
    description: str = Field("", max_length=10_000)


class ModelSchemaPatch(Strict):
    """``PATCH /models/{id}/schema``: only the fields given change (``null`` clears)."""

    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    labels: list[str] | None = Field(None, max_length=100_000)
    preprocessing: PreprocessingName | None = None
    postprocessing: PostprocessingName | None = None

    @model_validator(mode="after")
    def _something(self) -> ModelSchemaPatch:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one of input_schema, output_schema, labels, "
                "preprocessing, postprocessing"
            )
        return self


class TensorSpecOut(BaseModel):
    """One input or output of a model (``null`` dims are dynamic)."""

    name: str
    shape: list[int | str | None] | None
    dtype: str | None


class ModelOut(BaseModel):
    """A registered model."""

    id: str
    name: str
    format: str
    size: int
    checksum: str = Field(description="sha256:<hex> of the artifact.")
    uploaded_at: str
    updated_at: str
    user_id: str
    inputs: list[TensorSpecOut]
    outputs: list[TensorSpecOut]
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
    loaded_on: list[str] = Field(description="Worker ids that hold the model in memory.")


class InferenceOptions(Strict):
    """``options`` of an inference request."""

    timeout: float | None = Field(
        None, gt=0, le=3_600_000, description="Milliseconds before a 504 (sync) or a failure."
    )
    prefer_gpu: bool = False


class InferenceRequest(Strict):
    """``POST /inference``: one input for one model, answered now or polled later."""

    model_id: str = Field(pattern=ID_PATTERN)
    input: Any = Field(
        description=(
            "A tensor {data, shape} (or nested lists); an object by input name for "
            "multi-input models; the adapter's format when the model has preprocessing."
        )
    )
    project_id: str | None = Field(None, pattern=ID_PATTERN)
    params: dict[str, Any] = Field(
        default_factory=dict, description="Adapter parameters (k, threshold, ...)."
    )
    options: InferenceOptions = Field(default_factory=lambda: InferenceOptions(timeout=None))
    async_: bool = Field(False, alias="async", description="Answer 202 and run in background.")

    @model_validator(mode="after")
    def _has_input(self) -> InferenceRequest:
        if self.input is None:
            raise ValueError("'input' is required")
        return self


class BatchRequest(Strict):
    """``POST /inference/batch``: many inputs, sharded across the workers."""

    model_id: str = Field(pattern=ID_PATTERN)
    inputs: list[Any] | None = Field(
        None, min_length=1, description="One item per result: tensors or adapter payloads."
    )
    input: Any = Field(
        None, description="One tensor {data, shape}; each row along axis 0 is an item."
    )
    name: str | None = Field(None, max_length=128)
    project_id: str | None = Field(None, pattern=ID_PATTERN)
    params: dict[str, Any] = Field(default_factory=dict)
    options: InferenceOptions = Field(default_factory=lambda: InferenceOptions(timeout=None))
    shard_size: int | None = Field(
        None, ge=1, le=1_000_000, description="Items per shard (default: spread over workers)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> BatchRequest:
        if (self.inputs is None) == (self.input is None):
            raise ValueError("give exactly one of 'inputs' (a list) or 'input' (one tensor)")
        return self


class InferenceSyncOut(BaseModel):
    """A sync answer."""

    job_id: str
    status: Literal["completed"]
    model_id: str
    result: Any
    latency_ms: float
    compute_ms: float
    worker_id: str | None
    device: str
    project_id: str | None


class InferenceAccepted(BaseModel):
    """An async or batch answer (202)."""

    job_id: str
    status: str
    message: str
    poll_url: str
    project_id: str | None = None
    total_tasks: int | None = Field(None, description="Items in a batch.")
    total_shards: int | None = None


class BatchProgress(BaseModel):
    """How far a batch is: tasks are items (the seed's meaning), shards are Dask tasks."""

    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    total_shards: int
    completed_shards: int
    failed_shards: int
    percent: float


class InferenceJobOut(BaseModel):
    """``GET /inference/{job_id}``."""

    job_id: str
    type: str
    status: str
    model_id: str | None
    project_id: str | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    error: Any = None
    result: Any = None
    latency_ms: float | None = None
    progress: BatchProgress | None = None
    results: dict[str, Any] | None = Field(
        None, description="Batch: {offset, limit, items: [...]}; null items have not run yet."
    )
    errors: list[dict[str, Any]] | None = None


class ProjectCreate(Strict):
    """``POST /projects``."""

    name: str = Field(min_length=1, max_length=128)
    type: ProjectType = "realtime"
    model_id: str | None = Field(None, pattern=ID_PATTERN)
    total_tasks: int | None = Field(None, ge=0, le=1_000_000_000)
    description: str = Field("", max_length=10_000)


class ProjectOut(BaseModel):
    """A project with its headline figures."""

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
