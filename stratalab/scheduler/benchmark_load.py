"""Load generators and the figures of a benchmark run (no store, no cluster).

The request itself is injected (``call``: one awaitable per request), so the
same generators drive the real serving path in
:mod:`~stratalab.scheduler.benchmarks` and a plain coroutine in unit tests.

- :func:`closed_loop`: N requests, at most ``concurrency`` in flight, each
  slot sending its next request as soon as the last one answered. It
  measures the best throughput at that concurrency.
- :func:`step_load`: an open loop at a fixed offered rate for ``duration``
  seconds. Requests are due at ``t0 + i / rps``; when ``max_concurrency``
  are in flight, the next one waits for a free slot, so an overloaded
  server shows as achieved < offered and as ``unsent`` requests, not as a
  generator that falls behind silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stratalab.errors import StrataLabError
from stratalab.scheduler.analytics import distribution

#: one request: resolves to the answer (with ``compute_ms``, ``worker_id``, ``device``).
Call = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Sample:
    """What one request cost."""

    latency_ms: float  #: from send to answer, as the caller saw it
    compute_ms: float | None  #: the model's own time on the worker (None on error)
    error: str | None  #: the error code, or None when it succeeded
    worker: str | None  #: the worker id that answered
    device: str | None  #: ``cpu`` or ``cuda``


async def timed(call: Call) -> Sample:
    """Send one request and measure it; an API error is a sample, not an exception."""
    t0 = time.perf_counter()
    try:
        out = await call()
    except StrataLabError as exc:
        return Sample((time.perf_counter() - t0) * 1000.0, None, exc.code, None, None)
    latency = (time.perf_counter() - t0) * 1000.0
    compute = out.get("compute_ms")
    return Sample(
        latency,
        float(compute) if compute is not None else None,
        None,
        out.get("worker_id"),
        out.get("device"),
    )


def figures(samples: list[Sample], elapsed_s: float) -> dict[str, Any]:
    """Counts, latency and compute percentiles, throughput, and who answered."""
    ok = [s for s in samples if s.error is None]
    latency = distribution([s.latency_ms for s in ok])
    compute = distribution([s.compute_ms for s in ok if s.compute_ms is not None])
    overhead = None
    if latency["p50"] is not None and compute["p50"] is not None:
        overhead = round(latency["p50"] - compute["p50"], 3)
    return {
        "completed": len(ok),
        "errors": len(samples) - len(ok),
        "error_codes": dict(Counter(s.error for s in samples if s.error is not None)),
        "elapsed_s": round(elapsed_s, 3),
        "achieved_rps": round(len(ok) / elapsed_s, 3) if elapsed_s > 0 else None,
        "latency_ms": latency,
        "compute_ms": compute,
        "overhead_ms_p50": overhead,
        "workers": dict(Counter(s.worker for s in ok if s.worker)),
        "devices": sorted({s.device for s in ok if s.device}),
    }


async def closed_loop(call: Call, *, requests: int, concurrency: int) -> dict[str, Any]:
    """``requests`` calls with ``concurrency`` in flight; the figures of the whole run."""
    samples: list[Sample] = []
    todo = iter(range(requests))

    async def slot() -> None:
        for _ in todo:
            samples.append(await timed(call))

    t0 = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(min(concurrency, requests))))
    out = figures(samples, time.perf_counter() - t0)
    out.update(requests=requests, concurrency=concurrency)
    return out


async def step_load(
    call: Call, *, rps: float, duration: float, max_concurrency: int
) -> dict[str, Any]:
    """Offer ``rps`` requests per second for ``duration`` seconds; the step's figures."""
    planned = max(1, round(rps * duration))
    slots = asyncio.Semaphore(max_concurrency)
    samples: list[Sample] = []
    in_flight: set[asyncio.Task[None]] = set()
    busy = peak = 0

    async def one() -> None:
        nonlocal busy
        try:
            samples.append(await timed(call))
        finally:
            busy -= 1
            slots.release()

    t0 = time.perf_counter()
    sent = 0
    try:
        for i in range(planned):
            delay = t0 + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            if time.perf_counter() - t0 >= duration:
                slots.release()
                break
            busy += 1
            peak = max(peak, busy)
            task = asyncio.ensure_future(one())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
        if in_flight:
            await asyncio.wait(set(in_flight))
    finally:
        for task in list(in_flight):
            task.cancel()
        for task in list(in_flight):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # the step lasts ``duration`` even when every request was answered sooner
    out = figures(samples, max(duration, time.perf_counter() - t0))
    out.update(
        offered_rps=rps,
        duration_s=duration,
        planned=planned,
        sent=sent,
        unsent=planned - sent,
        peak_in_flight=peak,
        max_concurrency=max_concurrency,
    )
    return out


def training_figures(
    points: list[dict[str, Any]], training_started: datetime | None, target: float
) -> dict[str, Any]:
    """Samples/s, barrier latency and time to ``target`` accuracy from per-round points.

    ``points`` are the global (per-round) metric points, oldest first, each
    ``{"round", "ts", "values"}`` with ``ts`` in epoch seconds; the clock
    starts when the job first entered ``TRAINING``.
    """
    start = training_started.timestamp() if training_started is not None else None
    steps: list[dict[str, Any]] = []
    reached: float | None = None
    for p in points:
        values = p["values"]
        accuracy = values.get("val_accuracy", values.get("accuracy"))
        elapsed = round(p["ts"] - start, 3) if start is not None else None
        if reached is None and accuracy is not None and accuracy >= target and elapsed is not None:
            reached = elapsed
        steps.append(
            {
                "round": p["round"],
                "elapsed_s": elapsed,
                "samples_per_s": values.get("samples_per_s"),
                "barrier_ms": values.get("barrier_ms"),
                "loss": values.get("loss"),
                "accuracy": values.get("accuracy"),
                "val_accuracy": values.get("val_accuracy"),
                "workers": values.get("workers"),
            }
        )
    rates = [s["samples_per_s"] for s in steps if s["samples_per_s"] is not None]
    return {
        "rounds": len(steps),
        "samples_per_s": distribution(rates),
        "barrier_ms": distribution([s["barrier_ms"] for s in steps if s["barrier_ms"] is not None]),
        "target_accuracy": target,
        "time_to_accuracy_s": reached,
        "steps": steps,
    }
