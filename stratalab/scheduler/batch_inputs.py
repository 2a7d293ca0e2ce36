"""Batch inputs on disk: one file per shard, validated once where possible.

Uniform raw tensors (one tensor of N rows, or N items of the same shape)
become ``.npy`` arrays checked against the model in one pass; anything else
(adapter payloads, mixed shapes, multi-input maps) stays JSON, checked item by
item on the workers.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from stratalab.files import write_atomic
from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.signature import ModelSignature
from stratalab.kernels.models.tensors import to_array
from stratalab.kernels.models.validate import check_inputs
from stratalab.scheduler.db import Model
from stratalab.scheduler.inference import raw_adapters
from stratalab.scheduler.model_schemas import BatchRequest

#: shards per worker by default: enough for progress and balance, few enough to be cheap.
SHARDS_PER_WORKER = 4


def write_inputs(
    folder: Path, sig: ModelSignature, model: Model, req: BatchRequest, *, n_workers: int
) -> dict[str, Any]:
    """Validate the inputs and write one file per shard (blocking)."""
    array, rows_per_item = as_array(sig, model, req)
    items = None if array is not None else list(req.inputs or [])
    n_items = array.shape[0] // rows_per_item if array is not None else len(items or [])
    if n_items == 0:
        raise InvalidInput("the batch has no items")
    size = req.shard_size or max(1, math.ceil(n_items / (n_workers * SHARDS_PER_WORKER)))
    bounds = [(s, min(size, n_items - s)) for s in range(0, n_items, size)]
    for i, (start, count) in enumerate(bounds):
        if array is not None:
            part = array[start * rows_per_item : (start + count) * rows_per_item]
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(part), allow_pickle=False)
            write_atomic(folder / f"in-{i}.npy", buffer.getvalue())
        else:
            assert items is not None
            write_atomic(folder / f"in-{i}.json", json.dumps(items[start : start + count]).encode())
    return {
        "mode": "array" if array is not None else "items",
        "rows_per_item": rows_per_item,
        "items": n_items,
        "shards": bounds,
    }


def as_array(sig: ModelSignature, model: Model, req: BatchRequest) -> tuple[np.ndarray | None, int]:
    """Uniform raw tensors as one checked array (and rows per item); else None."""
    if req.input is not None:
        if not raw_adapters(model):
            raise InvalidInput(
                f"model {model.id} has preprocessing {model.preprocessing!r}; send 'inputs', "
                "a list of payloads in that adapter's format"
            )
        if len(sig.inputs) != 1:
            raise InvalidInput("'input' needs a single-input model; send 'inputs' as maps")
        x = to_array(req.input, name="input")
        name = sig.inputs[0].name
        return check_inputs(sig, {name: x}, model.input_schema)[name], 1
    items = req.inputs or []
    if not raw_adapters(model) or len(sig.inputs) != 1 or not _uniform(items):
        return None, 1
    x = np.asarray([item["data"] for item in items])
    shape = list(items[0]["shape"])
    try:
        x = x.reshape([len(items) * shape[0], *shape[1:]])
    except ValueError:
        return None, 1  # data lengths disagree with the shape: check item by item
    name = sig.inputs[0].name
    return check_inputs(sig, {name: x}, model.input_schema)[name], shape[0]


def _uniform(items: list[Any]) -> bool:
    """True when every item is a ``{data, shape}`` tensor of the same shape."""
    if not items or not all(isinstance(i, dict) and set(i) == {"data", "shape"} for i in items):
        return False
    shape = items[0]["shape"]
    return (
        isinstance(shape, list)
        and len(shape) >= 1
        and all(isinstance(d, int) and d > 0 for d in shape)
        and all(i["shape"] == shape for i in items)
        and all(isinstance(i["data"], list) for i in items)
    )
