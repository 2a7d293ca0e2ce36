"""The model registry: verified uploads, their records, and who may see them.

An upload is accepted only after the file has really been loaded (ONNX
checker and an ONNX Runtime session; ``torch.jit.load``) and its signature
read, and its JSON Schemas checked as schemas. Records live in the store; the
bytes live in the :class:`~stratalab.scheduler.artifacts.ArtifactStore`.
Lookups on the inference hot path come from an in-memory cache of records, so
a sync request costs no database round trip.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa

from stratalab.errors import Conflict, NoModel
from stratalab.ids import isoformat, new_id, utcnow
from stratalab.kernels.models.formats import detect_format
from stratalab.kernels.models.signature import ModelSignature, inspect_model
from stratalab.kernels.models.validate import check_schema
from stratalab.scheduler.artifacts import ArtifactStore, PendingArtifact, artifact_in_use
from stratalab.scheduler.db import Job, Model
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.model_schemas import ModelSchemaPatch, ModelUploadFields
from stratalab.scheduler.states import ACTIVE, WAITING
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

_LIVE_STATES = [s.value for s in ACTIVE | WAITING]


def signature_of(model: Model) -> ModelSignature:
    """The stored signature as the kernels' object."""
    return ModelSignature.from_dict(
        {"format": model.format, "inputs": model.inputs, "outputs": model.outputs}
    )


class ModelRegistry:
    """Registers, finds, updates and deletes models (blocking: call from a thread)."""

    def __init__(self, store: Store, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts
        self._cache: dict[str, Model] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- create
    def register(
        self,
        principal: Principal,
        pending: PendingArtifact,
        fields: ModelUploadFields,
        *,
        filename: str | None,
        source_job_id: str | None = None,
    ) -> Model:
        """Check the uploaded file, store it under its digest, and record it.

        The temp file is deleted whatever happens; a refused file leaves nothing.
        """
        try:
            pending.finish()
            data = pending.read_bytes()
            fmt = detect_format(data, fields.format)
            signature = inspect_model(
                data, fmt, input_shape=fields.input_shape, output_shape=fields.output_shape
            )
            for schema in (fields.input_schema, fields.output_schema):
                if schema is not None:
                    check_schema(schema)
            sha256 = self.artifacts.commit(pending)
        finally:
            pending.discard()
        now = utcnow()
        sig = signature.to_dict()
        model = Model(
            id=new_id("model"),
            user_id=principal.user_id,
            name=fields.name or _stem(filename) or "model",
            format=fmt,
            sha256=sha256,
            size=len(data),
            inputs=sig["inputs"],
            outputs=sig["outputs"],
            input_schema=fields.input_schema,
            output_schema=fields.output_schema,
            labels=fields.labels,
            preprocessing=fields.preprocessing,
            postprocessing=fields.postprocessing,
            source_job_id=source_job_id,
            metadata_={"description": fields.description, "batch_dynamic": signature.batch_dynamic},
            created_at=now,
            updated_at=now,
        )
        with self.store.session() as s:
            s.add(model)
        self._remember(model)
        logger.info("model %s registered (%s, %d bytes, %s)", model.id, fmt, model.size, sha256)
        return model

    # ------------------------------------------------------------------ read
    def get(self, principal: Principal, model_id: str) -> Model:
        """The caller's live model; another user's or a deleted one is ``NO_MODEL``."""
        model = self._cache.get(model_id)
        if model is None:
            with self.store.session() as s:
                model = s.get(Model, model_id)
            if model is not None and model.deleted_at is None:
                self._remember(model)
        if model is None or model.deleted_at is not None or not principal.may_see(model.user_id):
            raise NoModel(f"no model {model_id}", details={"model_id": model_id})
        return model

    def cached(self, model_id: str) -> Model | None:
        """A record already in memory (the sync path's no-database lookup)."""
        return self._cache.get(model_id)

    def page(
        self, principal: Principal, *, name: str | None, offset: int, limit: int
    ) -> tuple[list[Model], int]:
        """A page of the caller's models, newest first."""
        query = sa.select(Model).where(Model.deleted_at.is_(None))
        owner = principal.owner_filter()
        if owner is not None:
            query = query.where(Model.user_id == owner)
        if name:
            query = query.where(Model.name == name)
        return self.store.page(query, (Model.created_at.desc(), Model.id), offset, limit)

    # ---------------------------------------------------------------- update
    def patch(self, principal: Principal, model_id: str, patch: ModelSchemaPatch) -> Model:
        """Change schemas, labels or adapters; fields not given stay as they are."""
        self.get(principal, model_id)
        values = {name: getattr(patch, name) for name in patch.model_fields_set}
        for key in ("input_schema", "output_schema"):
            if values.get(key) is not None:
                check_schema(values[key])
        with self.store.session() as s:
            model = s.get(Model, model_id)
            if model is None or model.deleted_at is not None:
                raise NoModel(f"no model {model_id}")
            for key, value in values.items():
                setattr(model, key, value)
            model.updated_at = utcnow()
        self._remember(model)
        return model

    # ---------------------------------------------------------------- delete
    def delete(self, principal: Principal, model_id: str) -> Model:
        """Delete a model no live job uses; its file goes when no model or dataset shares it."""
        model = self.get(principal, model_id)
        with self.store.session() as s:
            busy = s.scalars(
                sa.select(Job.id)
                .where(Job.model_id == model_id, Job.state.in_(_LIVE_STATES))
                .limit(5)
            ).all()
            if busy:
                raise Conflict(
                    f"model {model_id} is in use by running jobs {list(busy)}",
                    details={"jobs": list(busy)},
                )
            row = s.get(Model, model_id)
            assert row is not None
            row.deleted_at = utcnow()
        with self._lock:
            self._cache.pop(model_id, None)
        if not artifact_in_use(self.store, model.sha256):  # a dataset upload may share it
            self.artifacts.remove(model.sha256)
        return model

    def _remember(self, model: Model) -> None:
        with self._lock:
            self._cache[model.id] = model


def _stem(filename: str | None) -> str | None:
    """``resnet.onnx`` -> ``resnet`` (the seed's default name)."""
    if not filename:
        return None
    base = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return stem[:128] or None


def model_view(model: Model, loaded_on: list[str]) -> dict[str, Any]:
    """The API's model object."""
    meta = model.metadata_ or {}
    return {
        "id": model.id,
        "name": model.name,
        "format": model.format,
        "size": model.size,
        "checksum": f"sha256:{model.sha256}",
        "uploaded_at": isoformat(model.created_at),
        "updated_at": isoformat(model.updated_at),
        "user_id": model.user_id,
        "inputs": model.inputs,
        "outputs": model.outputs,
        "input_shape": model.inputs[0]["shape"] if len(model.inputs) == 1 else None,
        "output_shape": model.outputs[0]["shape"] if len(model.outputs) == 1 else None,
        "input_schema": model.input_schema,
        "output_schema": model.output_schema,
        "labels": model.labels,
        "preprocessing": model.preprocessing,
        "postprocessing": model.postprocessing,
        "batch_dynamic": bool(meta.get("batch_dynamic", False)),
        "source_job_id": model.source_job_id,
        "description": str(meta.get("description", "")),
        "loaded_on": loaded_on,
    }
