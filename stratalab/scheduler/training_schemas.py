"""Request bodies of training, its lifecycle, checkpoints, evaluations and reservations.

``POST /jobs`` with ``type: training`` takes ScaiMind's nested shape
(``training_config``, ``data_config``, ``resource_config``,
``output_config``); DCP's ``POST /training`` body is the same object without
``type`` and ``name``. Field names follow the DCP seed where it has them
(``learning_rate``, ``sync_mode``, ``local_steps``, ``target_accuracy``,
``min_devices``, ``max_devices``, ``prefer_gpu``, ``total_samples``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stratalab.scheduler.schemas import JOB_NAME_PATTERN, Strict


class ModelConfig(Strict):
    """What is trained: a built-in architecture with its arguments, or an uploaded model."""

    architecture: Literal["mlp", "small_cnn"] | None = Field(
        None, description="Built-in architecture; its size arguments come from the dataset."
    )
    hidden: list[int] = Field(
        default_factory=lambda: [64], max_length=16, description="MLP hidden layer widths."
    )
    dropout: float = Field(0.0, ge=0, lt=1)
    model_id: str | None = Field(
        None, max_length=32, description="A registered TorchScript model to train instead."
    )

    @model_validator(mode="after")
    def _one_model(self) -> ModelConfig:
        if (self.architecture is None) == (self.model_id is None):
            raise ValueError("give exactly one of 'architecture' or 'model_id'")
        if any(width < 1 for width in self.hidden):
            raise ValueError("hidden layer widths must be positive")
        return self


class DataConfig(Strict):
    """Which data: a registered dataset, or DCP's synthetic ``stream`` of ``total_samples``."""

    dataset_id: str | None = Field(None, max_length=32)
    type: Literal["dataset", "stream"] = "dataset"
    total_samples: int | None = Field(None, ge=10, le=100_000_000)
    n_features: int = Field(20, ge=1, le=100_000, description="Stream data only.")
    n_classes: int = Field(2, ge=2, le=10_000, description="Stream data only.")
    batch_size: int = Field(32, ge=1, le=65_536, description="Mini-batch size per worker.")

    @model_validator(mode="after")
    def _source(self) -> DataConfig:
        if self.type == "dataset" and self.dataset_id is None:
            raise ValueError("data_config needs 'dataset_id' (or type 'stream')")
        if self.type == "stream" and self.total_samples is None:
            raise ValueError("a stream data_config needs 'total_samples'")
        return self


class TrainingConfig(Strict):
    """How to train: the FedAvg loop's and the optimizer's settings."""

    epochs: int = Field(5, ge=1, le=10_000, description="Passes over the training rows.")
    learning_rate: float = Field(0.01, description="Must be > 0.")
    optimizer: Literal["sgd", "adam"] = "sgd"
    weight_decay: float = Field(0.0, ge=0, le=1)
    sync_mode: Literal["full_sync", "semi_sync", "async"] = "full_sync"
    local_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Batches per worker per round; default one epoch."
    )
    target_accuracy: float | None = Field(
        None, gt=0, le=1, description="Stop early once validation accuracy reaches it."
    )
    semi_sync_k: int | None = Field(
        None, ge=1, description="semi_sync: updates that close a round."
    )
    deadline_s: float = Field(30.0, gt=0, le=86_400, description="semi_sync round deadline.")
    staleness_alpha: float = Field(0.5, ge=0, le=10)
    mixing: float = Field(0.5, gt=0, le=1, description="semi_sync/async weight of late updates.")
    checkpoint_every: int = Field(1, ge=1, le=10_000, description="Rounds between checkpoints.")
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("learning_rate")
    @classmethod
    def _positive_lr(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("learning_rate must be a positive number")
        return value


class ResourceConfig(Strict):
    """How many workers, and which."""

    min_devices: int = Field(1, ge=1, le=10_000)
    max_devices: int | None = Field(None, ge=1, le=10_000)
    gpu: int = Field(0, ge=0, le=64, description="GPUs per worker task (Dask GPU resource).")
    prefer_gpu: bool = False
    reservation_id: str | None = Field(None, max_length=32)

    @model_validator(mode="after")
    def _range(self) -> ResourceConfig:
        if self.max_devices is not None and self.max_devices < self.min_devices:
            raise ValueError("max_devices must be at least min_devices")
        return self


class OutputConfig(Strict):
    """What happens to the result."""

    export: bool = Field(True, description="Register the trained model (ONNX + TorchScript).")
    model_name: str | None = Field(None, max_length=128)


class TrainingRequest(Strict):
    """DCP's ``POST /training`` body (and the core of ``POST /jobs`` type ``training``)."""

    name: str = Field("training", pattern=JOB_NAME_PATTERN)
    priority: int = Field(5, ge=1, le=10)
    model_id: str | None = Field(None, max_length=32, description="DCP: the model to train.")
    model: ModelConfig | None = None
    data_config: DataConfig
    training_config: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig.model_validate({})
    )
    resource_config: ResourceConfig = Field(
        default_factory=lambda: ResourceConfig.model_validate({})
    )
    output_config: OutputConfig = Field(default_factory=lambda: OutputConfig.model_validate({}))
    max_retries: int | None = Field(None, ge=0, le=20)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    project_id: str | None = Field(None, max_length=32)

    @model_validator(mode="after")
    def _what(self) -> TrainingRequest:
        if self.model is None:
            self.model = ModelConfig.model_validate(
                {"model_id": self.model_id}
                if self.model_id is not None
                else {"architecture": "mlp"}
            )
        elif self.model_id is not None:
            raise ValueError("give 'model_id' or 'model', not both")
        return self


class TrainingSubmit(TrainingRequest):
    """``POST /jobs`` with ``type: training``."""

    type: Literal["training"]


class PauseRequest(Strict):
    """``POST /jobs/{id}/pause``."""

    save_checkpoint: bool = True


class ResumeRequest(Strict):
    """``POST /jobs/{id}/resume``: empty ``checkpoint_id`` means the latest good one."""

    checkpoint_id: str = Field("", max_length=32)


class BenchmarkSpec(Strict):
    """One benchmark of an evaluation."""

    name: str = Field(min_length=1, max_length=128)
    dataset: str = Field(max_length=32, description="Dataset id.")
    num_samples: int | None = Field(None, ge=1, le=100_000_000)
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="split: validation (default) or train; batch_size."
    )

    @field_validator("parameters")
    @classmethod
    def _known(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - {"split", "batch_size"}
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; allowed: split, batch_size")
        if value.get("split", "validation") not in ("validation", "train"):
            raise ValueError("split must be 'validation' or 'train'")
        size = value.get("batch_size", 1024)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 65_536:
            raise ValueError("batch_size must be an integer in 1..65536")
        return value


class EvaluationCreate(Strict):
    """``POST /evaluations``: a training job's result, or one of its checkpoints."""

    job_id: str | None = Field(None, max_length=32)
    checkpoint_id: str | None = Field(None, max_length=32)
    benchmarks: list[BenchmarkSpec] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _target(self) -> EvaluationCreate:
        if self.job_id is None and self.checkpoint_id is None:
            raise ValueError("give 'job_id' or 'checkpoint_id'")
        return self


class ReservationCreate(Strict):
    """``POST /reservations``: hold workers until a job claims them or time runs out."""

    node_count: int = Field(1, ge=1, le=10_000)
    gpu_count: int = Field(0, ge=0, le=1_000)
    gpu_type: str | None = Field(None, max_length=64)
    expires_in_s: float = Field(3600.0, gt=0, le=7 * 86_400)
