"""Request and response models of the datasets routes.

A dataset is registered from a JSON body (``source`` is an fsspec URL, a
local path, a built-in name, or a label for a synthetic stream) or from a
multipart form whose file field is ``file`` and whose other fields are the
same as the JSON body's (``options`` as JSON text, numbers as text). The
reader options are the keyword arguments of the format's reader in
``stratalab.kernels.data`` and are checked by building that reader.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, Field

from stratalab.ids import isoformat
from stratalab.kernels.data.base import redact
from stratalab.scheduler.db import Dataset
from stratalab.scheduler.schemas import Strict

DatasetFormat = Literal["csv", "parquet", "npz", "webdataset", "builtin", "stream"]
#: Most shards a dataset may be cut into.
MAX_SHARDS = 100_000


class DatasetCreate(Strict):
    """``POST /datasets`` and ``POST /data/validate``."""

    name: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Label; defaults to the file name or the source's last path part.",
    )
    format: DatasetFormat = Field(
        description="csv, parquet, npz, webdataset (tar), builtin (digits, iris) or stream."
    )
    source: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description=(
            "fsspec URL or local path; for builtin the dataset name (digits, iris); for stream "
            "an optional label. Leave out when uploading a file."
        ),
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        max_length=64,
        description=(
            "Reader options: csv/parquet label_column, features, classes (csv also delimiter, "
            "encoding); npz x_key, y_key; webdataset feature_ext, label_ext; builtin "
            "shuffle_seed; stream num_rows, n_features, n_classes, seed, class_sep, noise."
        ),
    )
    num_shards: int | None = Field(
        None,
        ge=1,
        le=MAX_SHARDS,
        description="Logical shards of the training rows; default 4 per live worker.",
    )
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of rows (at the end) held out for validation."
    )
    description: str = Field("", max_length=10_000)


class ShardsPerWorker(BaseModel):
    """How many of a dataset's shards one worker holds."""

    worker_id: str | None
    address: str
    shards: int


class DatasetOut(BaseModel):
    """A registered dataset."""

    id: str
    name: str
    user_id: str
    format: str
    source: str | None = Field(description="The URL or name given; null for an uploaded file.")
    uploaded: bool
    checksum: str | None = Field(description="sha256:<hex> of an uploaded file.")
    size: int | None
    options: dict[str, Any]
    info: dict[str, Any] = Field(description="What reading the source found (schema, classes).")
    num_rows: int
    train_rows: int
    validation_rows: int
    num_shards: int
    num_classes: int | None
    feature_shape: list[int]
    shards_per_worker: list[ShardsPerWorker]
    shard_assignment_ms: float = Field(description="Time the last full placement took.")
    description: str
    created_at: str


class DatasetValidationOut(BaseModel):
    """``POST /data/validate``: what registering would store (invalid data is a 422)."""

    valid: bool
    format: str
    num_rows: int
    train_rows: int
    validation_rows: int
    num_shards: int
    info: dict[str, Any]


class ShardOut(BaseModel):
    """One training shard and the worker it is placed on."""

    index: int
    start: int = Field(description="First row (inclusive).")
    stop: int = Field(description="Last row (exclusive).")
    rows: int
    worker_address: str | None
    worker_id: str | None


class CachedShardOut(BaseModel):
    """A shard held in a worker's memory."""

    dataset_id: str
    shard: int | str = Field(description="Shard index, or 'validation'.")
    num_shards: int
    rows: int
    bytes: int
    cached_at: float


class WorkerCacheOut(BaseModel):
    """One worker's shard cache."""

    worker_id: str | None
    address: str
    shards: list[CachedShardOut]
    bytes: int
    max_bytes: int
    hits: int
    misses: int


class DataCacheOut(BaseModel):
    """``GET /data/cache``."""

    workers: list[WorkerCacheOut]
    bytes: int


def dataset_view(ds: Dataset, worker_ids: dict[str, str]) -> dict[str, Any]:
    """The API's dataset object (:class:`DatasetOut`); ``worker_ids`` maps addresses to ids."""
    counts = Counter((ds.placement or {}).values())  # kept current by workers_changed
    info = dict(ds.info or {})
    return {
        "id": ds.id,
        "name": ds.name,
        "user_id": ds.user_id,
        "format": ds.format,
        "source": None if ds.sha256 else redact(ds.source),
        "uploaded": ds.sha256 is not None,
        "checksum": f"sha256:{ds.sha256}" if ds.sha256 else None,
        "size": ds.size,
        "options": dict(ds.options or {}),
        "info": info,
        "num_rows": ds.num_rows,
        "train_rows": ds.num_rows - ds.validation_rows,
        "validation_rows": ds.validation_rows,
        "num_shards": ds.num_shards,
        "num_classes": info.get("num_classes"),
        "feature_shape": list(info.get("feature_shape") or []),
        "shards_per_worker": [
            {"worker_id": worker_ids.get(address), "address": address, "shards": n}
            for address, n in sorted(counts.items())
        ],
        "shard_assignment_ms": ds.shard_assignment_ms,
        "description": ds.description,
        "created_at": isoformat(ds.created_at),
    }
