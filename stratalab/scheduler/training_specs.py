"""From a training request to a stored job spec, and from trained parameters to models.

Kept apart from the scheduling in :mod:`stratalab.scheduler.training`: this
module resolves the dataset (or registers DCP's synthetic ``stream``), picks
the network's sizes from the data, seeds the starting parameters, describes
the dataset to workers, and exports the result into the model registry.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import torch

from stratalab.errors import NotFound, ValidationFailed
from stratalab.kernels.training.architectures import build_model, get_params
from stratalab.kernels.training.export import export_onnx, export_torchscript, input_signature
from stratalab.scheduler.dataset_schemas import DatasetCreate
from stratalab.scheduler.datasets import DatasetService
from stratalab.scheduler.db import Dataset
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.model_schemas import ModelUploadFields
from stratalab.scheduler.registry import ModelRegistry
from stratalab.scheduler.store import Store
from stratalab.scheduler.training_schemas import ResourceConfig, TrainingRequest

DbCall = Callable[..., Awaitable[Any]]


def resources_of(rc: ResourceConfig) -> dict[str, Any]:
    """The ``resources`` a training job stores."""
    return {
        "min_devices": rc.min_devices,
        "max_devices": rc.max_devices,
        "gpu": rc.gpu,
        "prefer_gpu": rc.prefer_gpu,
        "reservation_id": rc.reservation_id,
    }


class TrainingSpecs:
    """Builds job specs and exports trained models (store calls run off the loop)."""

    def __init__(
        self,
        *,
        store: Store,
        registry: ModelRegistry,
        db: DbCall,
        datasets: DatasetService,
    ) -> None:
        self.store = store
        self.registry = registry
        self.db = db
        self.datasets = datasets

    async def build(self, principal: Principal, req: TrainingRequest) -> dict[str, Any]:
        """The stored spec of a training request (dataset and model checked)."""
        ds = await self._dataset_for(principal, req)
        return await self._spec(principal, req, ds)

    async def _dataset_for(self, principal: Principal, req: TrainingRequest) -> Dataset:
        dc = req.data_config
        if dc.type == "stream":
            return await self._stream_dataset(principal, req)
        assert dc.dataset_id is not None
        return await self.datasets.get(principal, dc.dataset_id)

    def _dataset_row(self, dataset_id: str) -> Dataset | None:
        with self.store.session() as s:
            return s.get(Dataset, dataset_id)

    async def _stream_dataset(self, principal: Principal, req: TrainingRequest) -> Dataset:
        """DCP's ``data_config.type: stream``: a synthetic dataset registered for the job."""
        dc = req.data_config
        view = await self.datasets.register(
            principal,
            DatasetCreate.model_validate(
                {
                    "name": f"stream-{req.name}"[:128],
                    "format": "stream",
                    "source": f"stream://{req.name}",
                    "options": {
                        "num_rows": dc.total_samples,
                        "n_features": dc.n_features,
                        "n_classes": dc.n_classes,
                    },
                    "description": "synthetic stream registered by a training request",
                }
            ),
        )
        return await self.datasets.get(principal, view["id"])

    async def _spec(
        self, principal: Principal, req: TrainingRequest, ds: Dataset
    ) -> dict[str, Any]:
        info = ds.info
        if info.get("num_classes") is None:
            raise ValidationFailed(
                f"dataset {ds.id} has non-integer labels; training needs class indices",
                details={"dataset_id": ds.id, "label_dtype": info.get("label_dtype")},
            )
        model_spec = await self._model_spec(principal, req, info)
        train_rows = int(ds.num_rows) - int(ds.validation_rows)
        tc = req.training_config
        rc: ResourceConfig = req.resource_config
        return {
            "dataset_id": ds.id,
            "model_spec": model_spec,
            "training_config": tc.model_dump(),
            "output_config": req.output_config.model_dump(),
            "batch_size": req.data_config.batch_size,
            "train_rows": train_rows,
            "total_samples": train_rows * tc.epochs,
            "classes": info.get("classes"),
            "resources": resources_of(rc),
        }

    async def _model_spec(
        self, principal: Principal, req: TrainingRequest, info: dict[str, Any]
    ) -> dict[str, Any]:
        m = req.model
        assert m is not None
        shape = [int(d) for d in info["feature_shape"]]
        width = int(np.prod(shape))
        classes = int(info["num_classes"])
        if m.model_id is not None:
            model = await self.db(self.registry.get, principal, m.model_id)
            if model.format != "torchscript":
                raise ValidationFailed(
                    f"model {model.id} is {model.format}; only TorchScript models can be trained",
                    details={"model_id": model.id, "format": model.format},
                )
            dims = (model.inputs or [{}])[0].get("shape") or []
            in_shape = [int(d) for d in dims[1:] if isinstance(d, int)] or shape
            return {
                "architecture": "torchscript",
                "path": str(self.registry.artifacts.path(model.sha256)),
                "input_shape": in_shape,
            }
        if m.architecture == "small_cnn":
            if len(shape) == 3 and shape[1] == shape[2]:
                channels, size = shape[0], shape[1]
            elif len(shape) == 2 and shape[0] == shape[1]:
                channels, size = 1, shape[0]
            elif math.isqrt(width) ** 2 == width:
                channels, size = 1, math.isqrt(width)
            else:
                raise ValidationFailed(
                    f"small_cnn needs square images; the dataset's samples have shape {shape}",
                    details={"feature_shape": shape},
                )
            return {
                "architecture": "small_cnn",
                "in_channels": channels,
                "num_classes": classes,
                "image_size": size,
            }
        return {
            "architecture": "mlp",
            "in_features": width,
            "hidden": list(m.hidden),
            "num_classes": classes,
            "dropout": m.dropout,
        }

    @staticmethod
    def initial_params(spec: dict[str, Any]) -> list[np.ndarray]:
        """The starting parameters every worker's first task shares (seeded)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec["training_config"]["seed"]))
            return get_params(build_model(spec["model_spec"]))

    async def descriptor(self, dataset_id: str) -> dict[str, Any]:
        """The worker-side description of a dataset (see ``kernels/data/cache.py``)."""
        ds = await self.db(self._dataset_row, dataset_id)
        if ds is None:
            raise NotFound(f"dataset {dataset_id} is gone")
        return self.datasets.descriptor(ds)

    async def export(
        self, job_id: str, user_id: str, spec: dict[str, Any], params: list[np.ndarray]
    ) -> dict[str, Any]:
        """Register the trained model as ONNX (served) and TorchScript, linked to the job."""
        onnx_bytes, ts_bytes = await asyncio.gather(
            asyncio.to_thread(export_onnx, spec["model_spec"], params),
            asyncio.to_thread(export_torchscript, spec["model_spec"], params),
        )
        owner = Principal(user_id=user_id, scope="user")
        name = spec["output_config"].get("model_name") or f"trained-{job_id}"
        labels = spec.get("classes")
        signature = input_signature(spec["model_spec"])
        ids = {}
        for key, data in (("model_id", onnx_bytes), ("torchscript_model_id", ts_bytes)):
            pending = self.registry.artifacts.begin(len(data) + 1)
            pending.write(data)
            fields = ModelUploadFields(
                name=name[:128],
                format=None,  # read from the content
                input_shape=signature["input_shape"],
                output_shape=signature["output_shape"],
                labels=list(labels) if labels else None,
                description=f"trained by {job_id}",
            )
            model = await self.db(
                self.registry.register, owner, pending, fields, filename=None, source_job_id=job_id
            )
            ids[key] = model.id
        return ids
