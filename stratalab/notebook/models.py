"""``c.models``: upload ONNX or TorchScript models and describe their inputs and outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratalab.notebook.resource import AsyncResource, SyncResource, collect, seg, to_frame
from stratalab.notebook.transport import Request
from stratalab.notebook.types import Model

if TYPE_CHECKING:
    import pandas as pd


def upload_request(
    model: str | Path | bytes,
    *,
    name: str | None,
    format: str | None,
    input_shape: list[Any] | None,
    output_shape: list[Any] | None,
    input_schema: dict[str, Any] | None,
    output_schema: dict[str, Any] | None,
    labels: list[Any] | None,
    preprocessing: str | None,
    postprocessing: str | None,
    description: str | None,
) -> Request:
    """``POST /models`` as multipart/form-data: file field ``model`` plus text fields.

    Reads the file (so the async client calls this in a thread).
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        content, filename = bytes(model), f"{name or 'model'}.bin"
    else:
        path = Path(model).expanduser()
        content, filename = path.read_bytes(), path.name
        name = name or path.stem
    structured = {
        "input_shape": input_shape,
        "output_shape": output_shape,
        "input_schema": input_schema,
        "output_schema": output_schema,
        "labels": labels,
    }
    plain = {
        "name": name,
        "format": format,
        "preprocessing": preprocessing,
        "postprocessing": postprocessing,
        "description": description,
    }
    data = {k: json.dumps(v) for k, v in structured.items() if v is not None}
    data.update({k: v for k, v in plain.items() if v is not None})
    files = {"model": (filename, content, "application/octet-stream")}
    return Request("POST", "/models", data=data, files=files)


def schema_request(model_id: str, fields: dict[str, Any]) -> Request:
    """``PATCH /models/{id}/schema`` with the fields given."""
    return Request("PATCH", f"/models/{seg(model_id)}/schema", json=fields)


class Models(SyncResource):
    """Models: ``c.models.upload("net.onnx")``, ``c.models.list()``, ..."""

    def upload(
        self,
        model: str | Path | bytes,
        name: str | None = None,
        *,
        format: str | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        labels: list[Any] | None = None,
        preprocessing: str | None = None,
        postprocessing: str | None = None,
        input_shape: list[Any] | None = None,
        output_shape: list[Any] | None = None,
        description: str | None = None,
    ) -> Model:
        """Register a model file; the server verifies it and reads its signature.

        Parameters
        ----------
        model
            A path to an ``.onnx`` / TorchScript file, or its bytes.
        name
            Defaults to the file's stem.
        format
            ``onnx`` or ``torchscript``; detected from the content when None.
        input_schema, output_schema
            JSON schemas of requests and answers.
        labels
            Class names for classifier outputs.
        preprocessing, postprocessing
            Server-side adapters (``tabular``, ``image_classification``, ``top_k_labels``...).
        input_shape, output_shape
            Shapes for formats that do not record them (TorchScript).
        """
        req = upload_request(
            model,
            name=name,
            format=format,
            input_shape=input_shape,
            output_shape=output_shape,
            input_schema=input_schema,
            output_schema=output_schema,
            labels=labels,
            preprocessing=preprocessing,
            postprocessing=postprocessing,
            description=description,
        )
        uploaded: Model = self._run(req)
        return uploaded

    def records(self, *, name: str | None = None, limit: int | None = None) -> list[Model]:
        """Your models as dicts (``name`` filters)."""
        return list(self._run(collect("/models", {"name": name}, limit)))

    def list(self, *, name: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Your models as a DataFrame (``name`` filters)."""
        return to_frame(self.records(name=name, limit=limit), Model)

    def get(self, model_id: str) -> Model:
        """One model with its inputs, outputs and adapters."""
        model: Model = self._run(Request("GET", f"/models/{seg(model_id)}"))
        return model

    def update_schema(self, model_id: str, **fields: Any) -> Model:
        """Change ``input_schema``, ``output_schema``, ``labels``, pre/postprocessing."""
        model: Model = self._run(schema_request(model_id, fields))
        return model

    def delete(self, model_id: str) -> None:
        """Delete a model (refused while a job uses it)."""
        self._run(Request("DELETE", f"/models/{seg(model_id)}"))


class AsyncModels(AsyncResource):
    """The asyncio twin of :class:`Models`."""

    async def upload(
        self,
        model: str | Path | bytes,
        name: str | None = None,
        *,
        format: str | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        labels: list[Any] | None = None,
        preprocessing: str | None = None,
        postprocessing: str | None = None,
        input_shape: list[Any] | None = None,
        output_shape: list[Any] | None = None,
        description: str | None = None,
    ) -> Model:
        """See :meth:`Models.upload` (the file is read off the event loop)."""
        import asyncio

        req = await asyncio.to_thread(
            upload_request,
            model,
            name=name,
            format=format,
            input_shape=input_shape,
            output_shape=output_shape,
            input_schema=input_schema,
            output_schema=output_schema,
            labels=labels,
            preprocessing=preprocessing,
            postprocessing=postprocessing,
            description=description,
        )
        uploaded: Model = await self._run(req)
        return uploaded

    async def records(self, *, name: str | None = None, limit: int | None = None) -> list[Model]:
        """See :meth:`Models.records`."""
        return list(await self._run(collect("/models", {"name": name}, limit)))

    async def list(self, *, name: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """See :meth:`Models.list`."""
        return to_frame(await self.records(name=name, limit=limit), Model)

    async def get(self, model_id: str) -> Model:
        """See :meth:`Models.get`."""
        model: Model = await self._run(Request("GET", f"/models/{seg(model_id)}"))
        return model

    async def update_schema(self, model_id: str, **fields: Any) -> Model:
        """See :meth:`Models.update_schema`."""
        model: Model = await self._run(schema_request(model_id, fields))
        return model

    async def delete(self, model_id: str) -> None:
        """See :meth:`Models.delete`."""
        await self._run(Request("DELETE", f"/models/{seg(model_id)}"))
