"""One shard of ``POST /inference/batch``, run as a plain Dask task.

Batch jobs last long enough that a task's ~10 ms of scheduling does not
matter (decision 11), and tasks give retries, placement and cancellation for
free. A shard reuses the worker's serving cache when the plugin is there, so
a model already loaded for sync traffic is not loaded twice.

Adapters apply here exactly as on the sync path: items are in the
preprocessor's format when the model has one, and results in the
postprocessor's. (The seed skips adapters on batch; we do not.)

Two input layouts:

* **array**: one ``.npy`` file whose axis 0 holds ``rows_per_item`` rows per
  item. Uniform raw tensors (the common case, e.g. 100,000 rows) take this
  path: validated once, run in large chunks, stored as arrays.
* **items**: a list (inline, or a ``.json`` file), one payload per item, each
  validated, preprocessed and postprocessed on its own; one bad item fails
  only itself.

With ``output_path`` the shard writes its results there (atomically: ``.npz``
for raw array outputs, ``.json`` otherwise) and returns only its summary, so
large results never travel through the scheduler.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stratalab.errors import StrataLabError, ValidationFailed
from stratalab.files import write_atomic
from stratalab.kernels.adapters import get_postprocessor, get_preprocessor
from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.formats import detect_format
from stratalab.kernels.models.runtime import LoadedModel, load_model_bytes
from stratalab.kernels.models.signature import ModelSignature
from stratalab.kernels.models.tensors import jsonable
from stratalab.kernels.models.validate import check_inputs, validate_payload
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
#: Key of the per-item success mask in an ``.npz`` result file.
VALID_KEY = "__valid__"


def run_batch_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Run every input of a shard and report per-item results.

    Parameters
    ----------
    spec:
        ``sha256`` (required), ``fmt``, ``path`` or ``store_root`` (where the
        artifact is); the input: ``inputs`` (inline list of items) or
        ``input_path`` (``.npy`` array with ``rows_per_item``, default 1, or a
        ``.json`` list of items); ``offset`` (index of the first item in the
        whole job), ``chunk_rows`` (rows per forward pass, default 256),
        ``prefer_gpu``, ``preprocessing``, ``postprocessing``, ``params`` (for
        the adapters), ``input_schema`` (checked per item), ``output_format``
        (``"raw"``: the API's ``{"data", "shape"}``, default; ``"numpy"``:
        arrays by output name), ``output_path`` (write results there).

    Returns
    -------
    ``{"errors": [{"index", "code", "message"}], "count", "succeeded",
    "failed", "compute_ms", "device", "offset", "cache_hit", "worker"}`` plus
    ``"outputs"`` (``outputs[i]`` is ``None`` for a failed item) unless the
    results went to ``output_path``.
    """
    sha256 = check_sha256(str(spec["sha256"]))
    offset = int(spec.get("offset", 0))
    chunk_rows = max(1, int(spec.get("chunk_rows", DEFAULT_CHUNK_ROWS)))
    output_format = spec.get("output_format", "raw")
    if output_format not in ("raw", "numpy"):
        raise ValidationFailed(f"output_format must be 'raw' or 'numpy', got {output_format!r}")
    model, cache_hit = _model(spec, sha256)
    job = _ShardJob(
        model=model,
        offset=offset,
        chunk_rows=chunk_rows,
        preprocessing=spec.get("preprocessing"),
        postprocessing=spec.get("postprocessing"),
        params=dict(spec.get("params") or {}),
        input_schema=spec.get("input_schema"),
    )
    source = spec.get("input_path")
    if source is not None and str(source).endswith(".npy"):
        array = np.load(str(source), allow_pickle=False)
        result = job.run_array(array, int(spec.get("rows_per_item", 1)))
    else:
        items = _read_items(source) if source is not None else list(spec.get("inputs") or [])
        result = job.run_items(items, output_format)
    output_path = spec.get("output_path")
    if output_path is not None:
        _write_result(Path(output_path), result.pop("outputs"), result.pop("arrays", None))
    else:
        result.pop("arrays", None)
    result.update(offset=offset, cache_hit=cache_hit, device=model.device, worker=_worker_address())
    return result


class _ShardJob:
    """The model and adapter settings one shard runs with."""

    def __init__(
        self,
        *,
        model: LoadedModel,
        offset: int,
        chunk_rows: int,
        preprocessing: str | None,
        postprocessing: str | None,
        params: dict[str, Any],
        input_schema: Mapping[str, Any] | None,
    ) -> None:
        self.model = model
        self.signature = model.signature
        self.offset = offset
        self.chunk_rows = chunk_rows
        self.pre = get_preprocessor(preprocessing)
        self.post = None if postprocessing in (None, "passthrough") else postprocessing
        self.params = params
        self.input_schema = input_schema

    # ----------------------------------------------------------------- items
    def run_items(self, raw_inputs: list[Any], output_format: str) -> dict[str, Any]:
        """Validate, preprocess and run each item; batch compatible ones together."""
        outputs: list[Any] = [None] * len(raw_inputs)
        errors: list[dict[str, Any]] = []
        prepared: list[tuple[int, Arrays]] = []
        for i, item in enumerate(raw_inputs):
            try:
                validate_payload(item, self.input_schema)
                arrays = self.pre(item, self.signature, self.params)
                prepared.append((i, check_inputs(self.signature, arrays)))
            except StrataLabError as exc:
                errors.append(_error(self.offset + i, exc))
        compute_ms = 0.0
        for chunk in _chunks(self.signature, prepared, self.chunk_rows):
            results, ms = _run_chunk(self.model.run, chunk, self.offset, errors)
            compute_ms += ms
            for i, result in results.items():
                try:
                    outputs[i] = self._format(result, output_format)
                except StrataLabError as exc:
                    errors.append(_error(self.offset + i, exc))
        errors.sort(key=lambda e: int(e["index"]))
        return _summary(outputs, errors, len(raw_inputs), compute_ms)

    def _format(self, result: Arrays, output_format: str) -> Any:
        if self.post is not None:
            return get_postprocessor(self.post)(result, self.signature, self.params)
        if output_format == "numpy":
            return result
        return get_postprocessor("passthrough")(result, self.signature, {})

    # ----------------------------------------------------------------- array
    def run_array(self, array: np.ndarray, rows_per_item: int) -> dict[str, Any]:
        """Items of ``rows_per_item`` rows each, checked once and run in big chunks."""
        if rows_per_item < 1 or array.ndim == 0 or array.shape[0] % rows_per_item:
            raise InvalidInput(
                f"{array.shape[0] if array.ndim else 0} rows do not split into items of "
                f"{rows_per_item} rows"
            )
        if len(self.signature.inputs) != 1:
            raise InvalidInput("array batches need a model with exactly one input")
        name = self.signature.inputs[0].name
        n_items = array.shape[0] // rows_per_item
        x = check_inputs(self.signature, {name: array})[name] if n_items else array
        per_pass = rows_per_item
        if self.signature.batch_dynamic:
            per_pass = max(rows_per_item, self.chunk_rows // rows_per_item * rows_per_item)
        valid = np.ones(n_items, dtype=bool)
        errors: list[dict[str, Any]] = []
        parts: dict[str, list[np.ndarray]] = {}
        posted: list[Any] = []
        compute_ms = 0.0
        for begin in range(0, x.shape[0], per_pass):
            chunk = x[begin : begin + per_pass]
            first_item = begin // rows_per_item
            start = time.perf_counter()
            out = self._run_rows(
                name,
                chunk,
                rows_per_item=rows_per_item,
                first_item=first_item,
                valid=valid,
                errors=errors,
            )
            compute_ms += (time.perf_counter() - start) * 1000.0
            for key, value in out.items():
                parts.setdefault(key, []).append(value)
            if self.post is not None:
                posted.extend(self._post_rows(out, chunk.shape[0] // rows_per_item, rows_per_item))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        if self.post is not None:
            outputs: list[Any] = [p if ok else None for p, ok in zip(posted, valid, strict=True)]
        else:
            outputs = split_items(arrays, valid, rows_per_item)
        result = _summary(outputs, errors, n_items, compute_ms)
        if self.post is None:
            result["arrays"] = {**arrays, VALID_KEY: valid}
        return result

    def _run_rows(
        self,
        name: str,
        chunk: np.ndarray,
        *,
        rows_per_item: int,
        first_item: int,
        valid: np.ndarray,
        errors: list[dict[str, Any]],
    ) -> Arrays:
        """One forward pass; on failure item by item, failed items as zero rows."""
        try:
            out = self.model.run({name: chunk})
            if all(np.ndim(v) >= 1 and v.shape[0] == chunk.shape[0] for v in out.values()):
                return out
        except StrataLabError:
            pass
        pieces: list[Arrays | None] = []
        for j in range(chunk.shape[0] // rows_per_item):
            rows = chunk[j * rows_per_item : (j + 1) * rows_per_item]
            try:
                pieces.append(self.model.run({name: rows}))
            except StrataLabError as exc:
                valid[first_item + j] = False
                errors.append(_error(self.offset + first_item + j, exc))
                pieces.append(None)
        template = next((p for p in pieces if p is not None), None)
        if template is None:
            raise InvalidInput("every item of a chunk failed; see the shard's errors")
        filled = [
            p if p is not None else {k: np.zeros_like(v) for k, v in template.items()}
            for p in pieces
        ]
        return {k: np.concatenate([p[k] for p in filled]) for k in template}

    def _post_rows(self, out: Arrays, n_items: int, rows_per_item: int) -> list[Any]:
        """The postprocessor on a whole chunk, split back into one result per item."""
        assert self.post is not None
        post = get_postprocessor(self.post)
        whole = post(out, self.signature, self.params)
        predictions = whole.get("predictions") if isinstance(whole, dict) else None
        if isinstance(predictions, list) and len(predictions) == n_items * rows_per_item:
            return [
                {"predictions": predictions[i * rows_per_item : (i + 1) * rows_per_item]}
                for i in range(n_items)
            ]
        return [
            post(
                {k: v[i * rows_per_item : (i + 1) * rows_per_item] for k, v in out.items()},
                self.signature,
                self.params,
            )
            for i in range(n_items)
        ]


def _summary(
    outputs: list[Any], errors: list[dict[str, Any]], count: int, compute_ms: float
) -> dict[str, Any]:
    return {
        "outputs": outputs,
        "errors": errors,
        "count": count,
        "succeeded": count - len(errors),
        "failed": len(errors),
        "compute_ms": compute_ms,
    }


def split_items(arrays: Arrays, valid: np.ndarray, rows_per_item: int) -> list[Any]:
    """Raw ``{data, shape}`` per item (``None`` for failed ones), as the API returns."""
    passthrough = get_postprocessor("passthrough")
    out: list[Any] = []
    for i, ok in enumerate(valid):
        if not ok:
            out.append(None)
            continue
        part = {k: v[i * rows_per_item : (i + 1) * rows_per_item] for k, v in arrays.items()}
        out.append(passthrough(part, None, {}))  # type: ignore[arg-type]
    return out


def _read_items(path: str | Path) -> list[Any]:
    """A ``.json`` list of items written by the coordinator."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValidationFailed("a batch items file must hold a JSON list")
    return data


def _write_result(path: Path, outputs: list[Any], arrays: Arrays | None) -> None:
    """Results to ``path``: arrays as ``.npz`` when there are any, else JSON."""
    if arrays is not None and path.suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        write_atomic(path, buffer.getvalue())
        return
    write_atomic(path.with_suffix(".json"), json.dumps(jsonable(outputs)).encode())


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:
        return None


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


def _error(index: int, exc: StrataLabError) -> dict[str, Any]:
    return {"index": index, "code": exc.code, "message": exc.message}
