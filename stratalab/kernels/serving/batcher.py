"""Micro-batching: concurrent requests for one model share one forward pass.

One consumer task per model takes the oldest request, gathers compatible ones
(same input names, dtypes and trailing shapes) until ``max_batch`` rows or
``max_wait_ms`` after it started gathering, runs them in the model executor
and splits the outputs back by rows. While a run is in flight new requests
queue, so under load batches form without any waiting.

The default wait is 0 ms (Triton's ``max_queue_delay_microseconds=0``): take
what is queued, never hold a lone request back. ``bench_serving_paths.py`` on
the shared 2-core dev box, one row per request:

* one caller, small MLP: p50 0.5 ms at ``max_wait_ms=0``, 3.3 ms at 2 (the
  wait is paid in full whenever there is nothing to batch with), 0.45 ms with
  batching off;
* 16 callers, large MLP (~1.5 ms per pass): batching gives 2.5-3x the
  throughput of no batching; 0 and 2 ms are within run-to-run noise of each
  other (1,000-2,100 req/s against 450-700 without batching);
* 16 callers, small MLP: the RPC, not the model, is the cost, and batching
  changes little.

A positive wait only pays off when requests trickle in slower than a forward
pass but faster than the wait, so it is a knob, not a default.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from stratalab.kernels.models.errors import InvalidInput

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
#: What makes two requests concatenable: per input, its dtype and trailing shape.
BatchKey = tuple[tuple[str, str, tuple[int, ...]], ...]


@dataclass
class BatchResult:
    """Outputs of one request and how it was computed."""

    #: Output name to this request's rows.
    outputs: Arrays
    #: Requests that shared the forward pass (1 when run alone).
    batched: int
    #: Milliseconds of the forward pass this request was part of.
    compute_ms: float


@dataclass
class _Request:
    inputs: Arrays
    rows: int
    key: BatchKey
    future: asyncio.Future[BatchResult] = field(repr=False)


def batch_key(inputs: Arrays) -> BatchKey:
    """Requests with equal keys can be concatenated along axis 0."""
    return tuple(
        (name, a.dtype.str, tuple(int(d) for d in a.shape[1:]))
        for name, a in sorted(inputs.items())
    )


def timed_run(run: Callable[[Arrays], Arrays], inputs: Arrays) -> tuple[Arrays, float]:
    """``run(inputs)`` and its duration in milliseconds (runs in the executor)."""
    start = time.perf_counter()
    outputs = run(inputs)
    return outputs, (time.perf_counter() - start) * 1000.0


class MicroBatcher:
    """Batches concurrent :meth:`submit` calls for one model.

    Parameters
    ----------
    run:
        The model's forward pass (``LoadedModel.run``); called in ``executor``.
    executor:
        Where forward passes run, so the worker's event loop stays free.
    max_batch:
        Most rows in one forward pass; a request with more rows runs alone.
    max_wait_ms:
        Longest time the consumer waits for more requests once it holds one;
        0 (default) batches only what is already queued.
    """

    def __init__(
        self,
        run: Callable[[Arrays], Arrays],
        executor: Executor,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
    ) -> None:
        #: The forward pass being batched.
        self.run = run
        self._executor = executor
        self._max_batch = max(1, int(max_batch))
        self._max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._pending: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._closing = False
        #: Forward passes run, and requests served by them (for stats and tests).
        self.runs = 0
        self.requests = 0

    async def submit(self, inputs: Arrays, rows: int | None) -> BatchResult:
        """Run ``inputs`` (``rows`` along axis 0, ``None`` when not batchable)."""
        if rows is None or rows >= self._max_batch or self._closing:
            return await self._run_alone(inputs)
        loop = asyncio.get_running_loop()
        request = _Request(inputs, rows, batch_key(inputs), loop.create_future())
        self._pending.append(request)
        self._wakeup.set()
        if self._consumer is None or self._consumer.done():
            self._consumer = loop.create_task(self._consume(), name="stratalab-microbatcher")
        return await request.future

    async def close(self) -> None:
        """Serve what is queued, then stop the consumer; later submits run alone."""
        self._closing = True
        self._wakeup.set()
        if self._consumer is not None:
            await self._consumer

    def abort(self) -> None:
        """Stop now (worker shutting down): queued callers get ``CancelledError``."""
        self._closing = True
        if self._consumer is not None:
            self._consumer.cancel()
        while self._pending:
            self._pending.popleft().future.cancel()

    async def _run_alone(self, inputs: Arrays) -> BatchResult:
        loop = asyncio.get_running_loop()
        outputs, ms = await loop.run_in_executor(self._executor, timed_run, self.run, inputs)
        self.runs += 1
        self.requests += 1
        return BatchResult(outputs, 1, ms)

    async def _consume(self) -> None:
        """Form and run batches until closed and drained."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group = await self._gather(self._pending.popleft())
            await self._run_group(group)

    async def _gather(self, first: _Request) -> list[_Request]:
        """Collect requests compatible with ``first`` until full or the wait is over."""
        loop = asyncio.get_running_loop()
        group = [first]
        rows = first.rows
        deadline = loop.time() + self._max_wait
        while True:
            rows = self._take_compatible(group, rows)
            remaining = deadline - loop.time()
            if rows >= self._max_batch or remaining <= 0 or self._closing:
                return group
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                self._take_compatible(group, rows)
                return group

    def _take_compatible(self, group: list[_Request], rows: int) -> int:
        """Move pending requests that fit ``group`` into it, oldest first."""
        key = group[0].key
        keep: deque[_Request] = deque()
        while self._pending:
            request = self._pending.popleft()
            if request.key == key and rows + request.rows <= self._max_batch:
                group.append(request)
                rows += request.rows
            else:
                keep.append(request)
        self._pending = keep
        return rows

    async def _run_group(self, group: list[_Request]) -> None:
        """One forward pass for the group, split back; alone-runs if that fails."""
        live = [r for r in group if not r.future.done()]  # a caller may have gone away
        if not live:
            return
        if len(live) == 1:
            await self._settle_alone(live[0])
            return
        loop = asyncio.get_running_loop()
        names = list(live[0].inputs)
        merged = {n: np.concatenate([r.inputs[n] for r in live], axis=0) for n in names}
        total = sum(r.rows for r in live)
        try:
            outputs, ms = await loop.run_in_executor(self._executor, timed_run, self.run, merged)
        except InvalidInput:
            # One bad request must not fail its neighbours: rerun one by one so
            # only the culprit gets the error.
            logger.info("batched run of %d requests failed; retrying them one by one", len(live))
            for request in live:
                await self._settle_alone(request)
            return
        except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
            logger.warning("batched run of %d requests failed: %r", len(live), exc)
            for request in live:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        if any(np.ndim(v) == 0 or np.shape(v)[0] != total for v in outputs.values()):
            # The outputs have no batch axis to split along (a model reducing
            # over rows): the batched result means nothing per request.
            for request in live:
                await self._settle_alone(request)
            return
        self.runs += 1
        self.requests += len(live)
        start = 0
        for request in live:
            stop = start + request.rows
            part = {name: value[start:stop] for name, value in outputs.items()}
            start = stop
            if not request.future.done():
                request.future.set_result(BatchResult(part, len(live), ms))

    async def _settle_alone(self, request: _Request) -> None:
        """Run one queued request alone and resolve its future."""
        try:
            result = await self._run_alone(request.inputs)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
            if not request.future.done():
                request.future.set_exception(exc)
            return
        if not request.future.done():
            request.future.set_result(result)
