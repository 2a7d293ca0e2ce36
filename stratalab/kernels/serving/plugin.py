"""The worker side of sync inference: a ``WorkerPlugin`` with its own RPC handlers.

Architecture decision 11: a Dask task per request costs ~10 ms of scheduling,
an actor call ~2 ms, a handler on the worker's own server ~0.5 ms. This plugin
registers such handlers (``stratalab_infer``, ``stratalab_models``,
``stratalab_unload``, ``stratalab_load``) and keeps models loaded in a
:class:`~stratalab.kernels.serving.cache.ModelCache`. The coordinator calls
them with :func:`~stratalab.kernels.serving.client.call_worker`.

Forward passes run in the plugin's own thread pool, not the worker's task
threads: a long training task occupying the worker must not queue a 1 ms
inference behind it, and the worker's event loop must never run a model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from stratalab.errors import StrataLabError
from stratalab.kernels.adapters import get_postprocessor, get_preprocessor
from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.signature import ModelSignature
from stratalab.kernels.models.tensors import encode_array, is_wire_array
from stratalab.kernels.models.validate import batch_rows, check_inputs, validate_payload
from stratalab.kernels.serving.batcher import MicroBatcher
from stratalab.kernels.serving.cache import CachedModel, ModelCache
from stratalab.kernels.serving.protocol import OP_INFER, OP_LOAD, OP_MODELS, OP_UNLOAD, error_reply

if TYPE_CHECKING:
    import numpy as np
    from distributed import Worker
    from distributed.comm import Comm

logger = logging.getLogger(__name__)

#: Name the plugin registers under; :func:`serving_plugin` finds it by this name.
PLUGIN_NAME = "stratalab-serving"
#: Attributes that travel to the workers when the plugin is registered.
_SETTINGS = frozenset(
    {
        "store_root",
        "max_bytes",
        "threads",
        "run_threads",
        "batching",
        "max_batch",
        "max_wait_ms",
        "max_request_rows",
    }
)


class ServingPlugin(WorkerPlugin):
    """Keeps models loaded on a worker and serves them over the worker's RPC.

    Parameters
    ----------
    store_root:
        Content-addressed artifact store as seen from the worker; requests may
        also name a ``path`` (still verified against their ``sha256``).
    max_bytes:
        Byte bound of the model cache.
    threads:
        ONNX Runtime intra-op threads per model.
    run_threads:
        Threads running forward passes on this worker.
    batching:
        Micro-batch concurrent requests for the same model.
    max_batch:
        Most rows per batched forward pass.
    max_wait_ms:
        Longest a request waits for others to batch with. 0 (default) batches
        only requests queued behind a running pass and never delays a lone
        one; see :mod:`~stratalab.kernels.serving.batcher` for the numbers.
    max_request_rows:
        Largest batch one request may send, if limited.
    """

    name = PLUGIN_NAME
    idempotent = False  # registering again replaces the plugin, with its settings

    def __init__(
        self,
        store_root: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 1 << 30,
        threads: int = 1,
        run_threads: int = 1,
        batching: bool = True,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        max_request_rows: int | None = None,
    ) -> None:
        self.store_root = None if store_root is None else os.fspath(store_root)
        self.max_bytes = max_bytes
        self.threads = threads
        self.run_threads = run_threads
        self.batching = batching
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.max_request_rows = max_request_rows
        self._reset()

    def _reset(self) -> None:
        """Live state, created empty here and filled by :meth:`setup` on the worker."""
        #: The worker's model cache (set by :meth:`setup`).
        self.cache: ModelCache | None = None
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_executor: ThreadPoolExecutor | None = None
        self._load_executor: ThreadPoolExecutor | None = None
        self._batchers: dict[str, MicroBatcher] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __getstate__(self) -> dict[str, Any]:
        """Ship only the settings to the workers, never live state."""
        return {k: v for k, v in self.__dict__.items() if k in _SETTINGS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, worker: Worker) -> None:
        """Create the cache and executors, and register the handlers."""
        self._worker = worker
        self._loop = asyncio.get_running_loop()
        self._run_executor = ThreadPoolExecutor(
            max(1, self.run_threads), thread_name_prefix="stratalab-infer"
        )
        self._load_executor = ThreadPoolExecutor(2, thread_name_prefix="stratalab-load")
        self.cache = ModelCache(
            self.store_root, max_bytes=self.max_bytes, threads=self.threads, on_evict=self._evicted
        )
        worker.handlers[OP_INFER] = self.infer
        worker.handlers[OP_MODELS] = self.models
        worker.handlers[OP_UNLOAD] = self.unload
        worker.handlers[OP_LOAD] = self.load
        logger.info("serving plugin ready on %s (cache %d bytes)", worker.address, self.max_bytes)

    async def teardown(self, worker: Worker) -> None:
        """Unregister the handlers and free the models and threads."""
        for op, handler in (
            (OP_INFER, self.infer),
            (OP_MODELS, self.models),
            (OP_UNLOAD, self.unload),
            (OP_LOAD, self.load),
        ):
            if worker.handlers.get(op) == handler:
                del worker.handlers[op]
        for batcher in self._batchers.values():
            batcher.abort()
        self._batchers.clear()
        if self.cache is not None:
            self.cache.clear()
        for executor in (self._run_executor, self._load_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    async def infer(
        self,
        comm: Comm | None = None,
        *,
        sha256: str,
        inputs: Any,
        fmt: str | None = None,
        path: str | None = None,
        model_id: str | None = None,
        preprocessing: str | None = None,
        postprocessing: str | None = None,
        params: dict[str, Any] | None = None,
        prefer_gpu: bool = False,
        input_schema: dict[str, Any] | None = None,
        **unknown: Any,
    ) -> dict[str, Any]:
        """Run one inference request.

        ``inputs`` is the client's input: tensors (wire form, ``{"data",
        "shape"}`` or nested lists; a map by input name for multi-input models)
        or, with ``preprocessing``, the adapter's business format. ``params``
        go to the adapters (``labels``, ``k``, ``threshold``, ...).

        Returns ``{"outputs", "compute_ms", "device", "worker", "batched",
        "cache_hit", "load_ms", "total_ms"}``: ``outputs`` are wire-form arrays
        by output name without ``postprocessing``, else the adapter's result.
        Caller errors come back as ``{"error": {...}}``.
        """
        try:
            if unknown:
                raise InvalidInput(f"unknown request fields {sorted(unknown)}")
            return await self._infer(
                sha256=sha256,
                inputs=inputs,
                fmt=fmt,
                path=path,
                preprocessing=preprocessing,
                postprocessing=postprocessing,
                params=params or {},
                prefer_gpu=prefer_gpu,
                input_schema=input_schema,
            )
        except StrataLabError as exc:
            logger.debug("inference on model %s refused: %s", model_id or sha256, exc.message)
            return error_reply(exc)

    async def models(self, comm: Comm | None = None) -> dict[str, Any]:
        """The loaded models, least recently used first, and the cache's usage."""
        cache = self._require_cache()
        models = []
        for entry in cache.entries():
            info = entry.info()
            batcher = self._batchers.get(entry.key)
            info["runs"] = batcher.runs if batcher else 0
            info["requests"] = batcher.requests if batcher else 0
            models.append(info)
        return {
            "worker": self._address(),
            "nbytes": cache.nbytes,
            "max_bytes": cache.max_bytes,
            "models": models,
        }

    async def unload(self, comm: Comm | None = None, *, sha256: str) -> dict[str, Any]:
        """Drop a model from this worker (every device copy)."""
        try:
            dropped = self._require_cache().evict(sha256)
        except StrataLabError as exc:
            return error_reply(exc)
        return {"worker": self._address(), "unloaded": len(dropped)}

    async def load(
        self,
        comm: Comm | None = None,
        *,
        sha256: str,
        fmt: str | None = None,
        path: str | None = None,
        prefer_gpu: bool = False,
    ) -> dict[str, Any]:
        """Load a model ahead of traffic (placement, warm-up); returns its summary."""
        try:
            entry, hit = await self._model(sha256, fmt, path, prefer_gpu)
        except StrataLabError as exc:
            return error_reply(exc)
        return {"worker": self._address(), "cache_hit": hit, **entry.info()}

    async def _infer(
        self,
        *,
        sha256: str,
        inputs: Any,
        fmt: str | None,
        path: str | None,
        preprocessing: str | None,
        postprocessing: str | None,
        params: dict[str, Any],
        prefer_gpu: bool,
        input_schema: dict[str, Any] | None,
    ) -> dict[str, Any]:
        start = time.perf_counter()
        entry, hit = await self._model(sha256, fmt, path, prefer_gpu)
        load_ms = 0.0 if hit else entry.load_ms
        prepare = partial(
            self._prepare, entry.signature, inputs, preprocessing, params, input_schema
        )
        if _cheap(inputs, preprocessing, input_schema):
            arrays = prepare()  # zero-copy decode and shape checks: microseconds
        else:
            arrays = await asyncio.to_thread(prepare)
        rows = batch_rows(entry.signature, arrays) if self.batching else None
        result = await self._batcher(entry).submit(arrays, rows)
        if postprocessing is None:
            outputs: Any = {name: encode_array(value) for name, value in result.outputs.items()}
        else:
            post = get_postprocessor(postprocessing)
            outputs = await asyncio.to_thread(post, result.outputs, entry.signature, params)
        return {
            "outputs": outputs,
            "compute_ms": result.compute_ms,
            "device": entry.model.device,
            "worker": self._address(),
            "batched": result.batched,
            "cache_hit": hit,
            "load_ms": load_ms,
            "total_ms": (time.perf_counter() - start) * 1000.0,
        }

    def _prepare(
        self,
        signature: ModelSignature,
        inputs: Any,
        preprocessing: str | None,
        params: dict[str, Any],
        input_schema: dict[str, Any] | None,
    ) -> dict[str, np.ndarray]:
        """Schema check on the input as sent, adapter, then signature checks."""
        validate_payload(inputs, input_schema)
        arrays = get_preprocessor(preprocessing)(inputs, signature, params)
        return check_inputs(signature, arrays, max_batch=self.max_request_rows)

    async def _model(
        self, sha256: str, fmt: str | None, path: str | None, prefer_gpu: bool
    ) -> tuple[CachedModel, bool]:
        """The cached model; a hit is answered on the loop, a miss loads in a thread."""
        cache = self._require_cache()
        if not prefer_gpu:  # the key needs no device probe: answer hits without a thread hop
            entry = cache.peek(cache.key_for(sha256, fmt, prefer_gpu=False))
            if entry is not None:
                return entry, True
        loop = asyncio.get_running_loop()
        get = partial(cache.get, sha256, fmt, path=path, prefer_gpu=prefer_gpu)
        return await loop.run_in_executor(self._load_executor, get)

    def _batcher(self, entry: CachedModel) -> MicroBatcher:
        """The model's batcher, replaced when the model was reloaded."""
        batcher = self._batchers.get(entry.key)
        if batcher is None or batcher.run != entry.model.run:
            if batcher is not None:
                self._close_later(batcher)
            assert self._run_executor is not None
            batcher = MicroBatcher(
                entry.model.run,
                self._run_executor,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
            )
            self._batchers[entry.key] = batcher
        return batcher

    def _evicted(self, entry: CachedModel) -> None:
        """Cache callback (any thread): retire the evicted model's batcher on the loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._retire, entry)

    def _retire(self, entry: CachedModel) -> None:
        batcher = self._batchers.get(entry.key)
        if batcher is not None and batcher.run == entry.model.run:
            del self._batchers[entry.key]
            self._close_later(batcher)

    def _close_later(self, batcher: MicroBatcher) -> None:
        """Let a retired batcher serve its queue, then stop (task kept referenced)."""
        task = asyncio.get_running_loop().create_task(batcher.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _require_cache(self) -> ModelCache:
        if self.cache is None:
            raise StrataLabError("serving plugin is not set up on this worker")
        return self.cache

    def _address(self) -> str:
        return self._worker.address if self._worker is not None else ""


def _cheap(inputs: Any, preprocessing: str | None, input_schema: dict[str, Any] | None) -> bool:
    """True when preparing the inputs costs microseconds (wire arrays, no adapter/schema)."""
    if input_schema is not None or preprocessing not in (None, "passthrough"):
        return False
    if is_wire_array(inputs):
        return True
    return isinstance(inputs, dict) and bool(inputs) and all(map(is_wire_array, inputs.values()))


def serving_plugin(worker: Worker) -> ServingPlugin | None:
    """The serving plugin on ``worker``, if registered (batch shards reuse its cache)."""
    plugin = worker.plugins.get(PLUGIN_NAME)
    return plugin if isinstance(plugin, ServingPlugin) else None
