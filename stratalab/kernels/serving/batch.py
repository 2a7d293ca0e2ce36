"""One shard of ``POST /inference/batch``, run as a plain Dask task.

Batch jobs last long enough that a task's ~10 ms of scheduling does not
matter (decision 11), and tasks give retries, placement and cancellation for
free. A shard reuses the worker's serving cache when the plugin is there, so
a model already loaded for sync traffic is not loaded twice. Per the API,
batch inputs are raw tensors and results raw tensors: no adapters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stratalab.errors import StrataLabError, ValidationFailed
from stratalab.kernels.adapters import get_postprocessor
from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.formats import detect_format
from stratalab.kernels.models.runtime import LoadedModel, load_model_bytes
from stratalab.kernels.models.signature import ModelSignature
from stratalab.kernels.models.validate import check_inputs
from stratalab.kernels.serving.batcher import batch_key
from stratalab.kernels.serving.cache import (
    ModelCache,
    check_sha256,
    content_path,
    read_verified,
)

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]

#: Default rows per forward pass in a shard.
DEFAULT_CHUNK_ROWS = 256


def run_batch_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Run every input of a shard and report per-item results.

    Parameters
    ----------
    spec:
        ``sha256`` (required), ``fmt``, ``path`` or ``store_root`` (where the
        artifact is), ``inputs`` (list of raw tensors: ``{"data", "shape"}``,
        wire form, or a map by input name), ``offset`` (index of the first
        input in the whole job), ``chunk_rows`` (rows per forward pass,
        default 256), ``prefer_gpu``, ``output_format`` (``"raw"``: the API's
        ``{"data", "shape"}``, default; ``"numpy"``: arrays by output name).

    Returns
    -------
    ``{"outputs": [...], "errors": [{"index", "code", "message"}], "count",
    "succeeded", "failed", "compute_ms", "device", "offset", "cache_hit"}``.
    ``outputs[i]`` is ``None`` for a failed item; one bad input fails only itself.
    """
    sha256 = check_sha256(str(spec["sha256"]))
    offset = int(spec.get("offset", 0))
    chunk_rows = max(1, int(spec.get("chunk_rows", DEFAULT_CHUNK_ROWS)))
    raw_inputs = list(spec.get("inputs") or [])
    output_format = spec.get("output_format", "raw")
    if output_format not in ("raw", "numpy"):
        raise ValidationFailed(f"output_format must be 'raw' or 'numpy', got {output_format!r}")
    model, cache_hit = _model(spec, sha256)
    signature = model.signature

    outputs: list[Any] = [None] * len(raw_inputs)
    errors: list[dict[str, Any]] = []
    prepared: list[tuple[int, Arrays]] = []
    for i, item in enumerate(raw_inputs):
        try:
            prepared.append((i, check_inputs(signature, _named(signature, item))))
        except StrataLabError as exc:
            errors.append(_error(offset + i, exc))

    compute_ms = 0.0
    for chunk in _chunks(signature, prepared, chunk_rows):
        results, ms = _run_chunk(model.run, chunk, offset, errors)
        compute_ms += ms
        for i, result in results.items():
            outputs[i] = _format(result, signature, output_format)
    errors.sort(key=lambda e: int(e["index"]))
    return {
        "outputs": outputs,
        "errors": errors,
        "count": len(raw_inputs),
        "succeeded": len(raw_inputs) - len(errors),
        "failed": len(errors),
        "compute_ms": compute_ms,
        "device": model.device,
        "offset": offset,
        "cache_hit": cache_hit,
    }


def _model(spec: dict[str, Any], sha256: str) -> tuple[LoadedModel, bool]:
    """The model through the worker's serving cache, or loaded (and verified) directly."""
    fmt = spec.get("fmt")
    path = spec.get("path")
    prefer_gpu = bool(spec.get("prefer_gpu", False))
    cache = _worker_cache()
    if cache is not None and (path is not None or cache.store_root is not None):
        entry, hit = cache.get(sha256, fmt, path=path, prefer_gpu=prefer_gpu)
        return entry.model, hit
    if path is None:
        store_root = spec.get("store_root")
        if store_root is None:
            raise ValidationFailed("a batch shard needs 'path' or 'store_root'")
        path = content_path(store_root, sha256)
    data = read_verified(Path(path), sha256)
    model_format = fmt if fmt is not None else detect_format(data)
    return load_model_bytes(data, model_format, prefer_gpu=prefer_gpu), False


def _worker_cache() -> ModelCache | None:
    """The serving plugin's cache when this runs on a worker that has the plugin."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:  # not inside a Dask task
        return None
    from stratalab.kernels.serving.plugin import serving_plugin

    plugin = serving_plugin(worker)
    return plugin.cache if plugin is not None else None


def _named(signature: ModelSignature, item: Any) -> dict[str, Any]:
    """A shard item as a map by input name (an unnamed tensor feeds the only input)."""
    if isinstance(item, dict) and "data" not in item:
        return item
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"the model has {len(signature.inputs)} inputs; each item must be an object "
            f"keyed by input name {signature.input_names}"
        )
    return {signature.inputs[0].name: item}


def _chunks(
    signature: ModelSignature, prepared: list[tuple[int, Arrays]], chunk_rows: int
) -> list[list[tuple[int, Arrays]]]:
    """Consecutive compatible items grouped up to ``chunk_rows`` rows each.

    Models with a fixed batch dimension get one item per chunk.
    """
    if not signature.batch_dynamic:
        return [[item] for item in prepared]
    chunks: list[list[tuple[int, Arrays]]] = []
    current: list[tuple[int, Arrays]] = []
    rows = 0
    for item in prepared:
        n = _rows(item[1])
        compatible = not current or batch_key(current[0][1]) == batch_key(item[1])
        if current and (not compatible or rows + n > chunk_rows):
            chunks.append(current)
            current, rows = [], 0
        current.append(item)
        rows += n
    if current:
        chunks.append(current)
    return chunks


def _run_chunk(
    run: Callable[[Arrays], Arrays],
    chunk: list[tuple[int, Arrays]],
    offset: int,
    errors: list[dict[str, Any]],
) -> tuple[dict[int, Arrays], float]:
    """One forward pass for the chunk, split by rows; item by item if that fails."""
    start = time.perf_counter()
    if len(chunk) > 1:
        names = list(chunk[0][1])
        merged = {n: np.concatenate([arrays[n] for _, arrays in chunk]) for n in names}
        total = sum(_rows(arrays) for _, arrays in chunk)
        try:
            out = run(merged)
        except InvalidInput:
            out = None
        if out is not None and all(np.ndim(v) >= 1 and v.shape[0] == total for v in out.values()):
            results: dict[int, Arrays] = {}
            begin = 0
            for i, arrays in chunk:
                end = begin + _rows(arrays)
                results[i] = {k: v[begin:end] for k, v in out.items()}
                begin = end
            return results, (time.perf_counter() - start) * 1000.0
    results = {}
    for i, arrays in chunk:
        try:
            results[i] = run(arrays)
        except StrataLabError as exc:
            errors.append(_error(offset + i, exc))
    return results, (time.perf_counter() - start) * 1000.0


def _rows(arrays: Arrays) -> int:
    first = next(iter(arrays.values()))
    return int(first.shape[0]) if first.ndim else 1


def _format(result: Arrays, signature: ModelSignature, output_format: str) -> Any:
    if output_format == "numpy":
        return result
    return get_postprocessor("passthrough")(result, signature, {})


def _error(index: int, exc: StrataLabError) -> dict[str, Any]:
    return {"index": index, "code": exc.code, "message": exc.message}
