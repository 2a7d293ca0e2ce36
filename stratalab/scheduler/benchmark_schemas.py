"""Request bodies of ``POST /benchmarks``: one model per mode, chosen by ``mode``.

The DCP seed (``001``) has two routes, ``POST /dashboard/benchmark`` (``mode``
``inference``, ``training`` or ``gpu-training``, with ``epochs`` and
``batch_size``) and ``POST /dashboard/benchmark/perf`` (``rps_steps``,
``duration``, ``max_concurrency``). Here they are one route whose ``mode``
picks the body, so a field that belongs to another mode is a 422 naming it.
One deliberate difference: ``duration`` is seconds *per step* (the seed's is
the total), so a run's length is ``len(rps_steps) * duration`` and each step
is long enough to mean something whatever the number of steps.

The limits keep one run bounded: at most 10 steps of at most 60 s, at most
256 requests in flight, at most 100 epochs of training.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, RootModel, field_validator, model_validator

from stratalab.scheduler.model_schemas import ID_PATTERN
from stratalab.scheduler.schemas import JOB_NAME_PATTERN, Strict, TimelineEntry
from stratalab.scheduler.training_schemas import ModelConfig

#: the seed's default load steps (requests per second).
DEFAULT_RPS_STEPS = [2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0]
#: most requests one perf run may plan (sum of rps x duration over the steps).
MAX_PLANNED_REQUESTS = 500_000


class _Base(Strict):
    name: str = Field("benchmark", pattern=JOB_NAME_PATTERN, description="A label for the run.")


class _Served(_Base):
    """What inference and perf runs share: the model and the input sent to it."""

    model_id: str = Field(pattern=ID_PATTERN, description="The model every request calls.")
    input: Any = Field(
        None,
        description="The input of every request, as POST /inference takes it. Default: "
        "random values of the model's input shape (batch_size rows); a model with a "
        "preprocessing adapter needs one.",
    )
    batch_size: int = Field(1, ge=1, le=1024, description="Rows of the default input.")
    timeout_ms: float | None = Field(
        None, gt=0, le=60_000, description="Per-request timeout (default: the server's)."
    )


class InferenceBenchmark(_Served):
    """``mode: inference``: N sync requests, ``concurrency`` at a time."""

    mode: Literal["inference"]
    requests: int = Field(100, ge=1, le=100_000, description="Sync requests sent in all.")
    concurrency: int = Field(1, ge=1, le=256, description="Requests in flight at once.")


class PerfBenchmark(_Served):
    """``mode: perf``: a step load, ``duration`` seconds at each rate of ``rps_steps``."""

    mode: Literal["perf"]
    rps_steps: list[float] = Field(
        default_factory=lambda: list(DEFAULT_RPS_STEPS),
        min_length=1,
        max_length=10,
        description="Offered requests per second of each step (at most 10 steps).",
    )
    duration: float = Field(5.0, gt=0, le=60, description="Seconds per step (at most 60).")
    max_concurrency: int = Field(
        5, ge=1, le=256, description="Most requests in flight; above it the offered rate slips."
    )

    @field_validator("rps_steps")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        if any(not 0 < r <= 5000 for r in value):
            raise ValueError("every rate must be above 0 and at most 5000 requests per second")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> PerfBenchmark:
        planned = sum(r * self.duration for r in self.rps_steps)
        if planned > MAX_PLANNED_REQUESTS:
            raise ValueError(
                f"the steps plan {planned:.0f} requests; at most {MAX_PLANNED_REQUESTS} per run"
            )
        return self


class TrainingBenchmark(_Base):
    """``mode: training`` / ``gpu-training``: one short real training job, measured."""

    mode: Literal["training", "gpu-training"]
    dataset_id: str = Field(pattern=ID_PATTERN, description="A registered dataset.")
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig.model_validate({"architecture": "mlp"}),
        description="What is trained (default: an MLP sized from the dataset).",
    )
    epochs: int = Field(2, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=65_536)
    learning_rate: float = Field(0.01, gt=0, le=10)
    optimizer: Literal["sgd", "adam"] = "sgd"
    sync_mode: Literal["full_sync", "semi_sync", "async"] = "full_sync"
    target_accuracy: float = Field(
        0.9, gt=0, le=1, description="Time to accuracy is the time until this is first reached."
    )
    min_devices: int = Field(1, ge=1, le=10_000)
    max_devices: int | None = Field(None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _range(self) -> TrainingBenchmark:
        if self.max_devices is not None and self.max_devices < self.min_devices:
            raise ValueError("max_devices must be at least min_devices")
        return self


#: the modes, in the order error messages name them.
MODES = ("inference", "training", "gpu-training", "perf")
AnyBenchmark = Annotated[
    InferenceBenchmark | PerfBenchmark | TrainingBenchmark, Field(discriminator="mode")
]


class BenchmarkCreate(RootModel[AnyBenchmark]):
    """``POST /benchmarks``; ``mode`` (inference, training, gpu-training, perf) picks the body."""

    @model_validator(mode="before")
    @classmethod
    def _has_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and "mode" not in data:
            raise ValueError(f"'mode' is required: one of {', '.join(MODES)}")
        return data


class BenchmarkOut(BaseModel):
    """A run as ``GET /benchmarks/{id}`` shows it (``status`` is the job state)."""

    id: str
    name: str
    mode: str
    status: str
    user_id: str
    created_at: str | None
    started_at: str | None = None
    ended_at: str | None = None
    request: dict[str, Any] = Field(description="The request as accepted, defaults filled in.")
    progress: dict[str, Any] | None = Field(
        None, description="percent_complete; step and steps; training_job_id for training."
    )
    summary: dict[str, Any] | None = Field(
        None,
        description="inference: latency_ms and compute_ms percentiles, achieved_rps, "
        "overhead_ms_p50; perf: max_achieved_rps, saturated_at_rps, p99_ms_by_step; "
        "training: samples_per_s, time_to_accuracy_s, barrier_ms, final_accuracy.",
    )
    steps: list[dict[str, Any]] = Field(
        default_factory=list,
        description="perf: one entry per rate (offered_rps, achieved_rps, latency_ms p50/p99, "
        "errors, unsent); inference: the one step; training: one entry per round.",
    )
    training_job_id: str | None = None
    project_id: str | None = Field(None, description="The benchmark project of the requests.")
    model_id: str | None = None
    error: str | None = None
    poll_url: str
    timeline: list[TimelineEntry] | None = None
