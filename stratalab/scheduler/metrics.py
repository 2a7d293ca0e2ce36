"""The coordinator's own numbers: request rate, cached aggregates, Prometheus text.

:class:`RequestStats` counts every API request (the web layer calls
:meth:`RequestStats.observe` once per finished request) in one-second
buckets, so ``coordinator_rps`` costs nothing to read. :class:`Cached` keeps
an expensive aggregate for about a second and lets concurrent readers share
one computation, so a dashboard polled at 10 Hz costs one rebuild a second.
:class:`PrometheusExporter` renders the figures of ``GET /metrics`` in the
Prometheus text format, with a registry of its own (no global state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stratalab.scheduler.analytics import distribution

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: seconds of history :class:`RequestStats` keeps per-second counts for.
RATE_HISTORY_S = 60
#: request durations kept for the latency percentiles of ``GET /metrics``.
LATENCY_SAMPLES = 2048
#: Prometheus buckets for request durations (seconds).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class RequestStats:
    """API requests by second, by outcome, and their recent latencies."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        #: when counting started (rates over a shorter uptime divide by the uptime).
        self.started = clock()
        #: requests answered since start.
        self.total = 0
        #: requests answered since start, by HTTP status class ("2xx", "4xx", ...).
        self.by_class: dict[str, int] = {}
        self._counts = [0] * RATE_HISTORY_S
        self._seconds = [-1] * RATE_HISTORY_S
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._requests = Counter(
            "stratalab_http_requests",
            "API requests answered, by route handler, method and status.",
            ["handler", "method", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "stratalab_http_request_duration_seconds",
            "Time to answer an API request (streams excluded), by route handler.",
            ["handler"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def observe(
        self,
        handler: str,
        method: str,
        status: int,
        seconds: float,
        *,
        streaming: bool = False,
    ) -> None:
        """Count one finished request (``streaming``: an SSE stream, no latency sample)."""
        now = self._clock()
        second = int(now)
        slot = second % RATE_HISTORY_S
        if self._seconds[slot] != second:
            self._seconds[slot], self._counts[slot] = second, 0
        self._counts[slot] += 1
        self.total += 1
        cls = f"{status // 100}xx"
        self.by_class[cls] = self.by_class.get(cls, 0) + 1
        self._requests.labels(handler, method, str(status)).inc()
        if not streaming:
            self._latencies.append(seconds * 1000.0)
            self._duration.labels(handler).observe(seconds)

    def rate(self, window_s: int = 10) -> float:
        """Requests per second over the last ``window_s`` complete seconds."""
        window_s = max(1, min(window_s, RATE_HISTORY_S - 1))
        now = self._clock()
        second = int(now)
        count = sum(
            c
            for c, s in zip(self._counts, self._seconds, strict=True)
            if second - window_s <= s < second
        )
        span = min(float(window_s), second - self.started)
        return round(count / span, 3) if span > 0 else 0.0

    def latency_ms(self) -> dict[str, float | None]:
        """p50/p90/p95/p99, mean and max of the recent request durations (ms)."""
        return distribution(list(self._latencies))


class RateMeter:
    """Per-second rate of a counter that only grows, over about the last ``window_s`` seconds.

    Samples are taken when the rate is read (once per cached rebuild), so the
    meter costs nothing between reads and never touches the store.
    """

    def __init__(
        self,
        read: Callable[[], int],
        *,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), read())], maxlen=1024)

    def rate(self) -> float | None:
        """Counted events per second since the oldest sample in the window (None: no time)."""
        now, value = self._clock(), self._read()
        self._samples.append((now, value))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        start, first = self._samples[0]
        if now - start <= 0:
            return None
        return round((value - first) / (now - start), 3)


@dataclass
class _Entry(Generic[T]):
    expires: float
    value: T | None = None
    pending: asyncio.Future[T] | None = None


class Cached(Generic[T]):
    """Values recomputed at most once per ``ttl_s`` per key; concurrent callers share one run.

    A value up to ``stale_s`` seconds past its expiry is still answered at
    once while one refresh runs in the background, so a poller at 10 Hz
    never waits for a rebuild; an older one (sparse polling) is recomputed
    before the answer.
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        stale_s: float | None = None,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: seconds a computed value is served before the next caller recomputes it.
        self.ttl_s = ttl_s
        #: seconds after expiry during which the old value is served while refreshing.
        self.stale_s = ttl_s if stale_s is None else stale_s
        self.max_keys = max_keys
        self._clock = clock
        self._entries: dict[Hashable, _Entry[T]] = {}
        #: computations run (cache misses and refreshes), for tests and the benchmark.
        self.computed = 0

    async def get(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], *, fresh: bool = False
    ) -> T:
        """The cached value of ``key``, computing it when missing or too old.

        ``fresh`` waits for the rebuild of an expired value instead of answering
        with it (for background loops, which have no one waiting).
        """
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                self._evict(now)
            entry = self._entries[key] = _Entry[T](expires=now)
        stale_s = 0.0 if fresh else self.stale_s
        if entry.value is not None and now < entry.expires + stale_s:
            if now >= entry.expires and entry.pending is None:
                self._refresh(entry, compute)  # answer now, refresh for the next caller
            return entry.value
        if entry.pending is None:
            self._refresh(entry, compute)
        assert entry.pending is not None
        return await asyncio.shield(entry.pending)

    def _refresh(self, entry: _Entry[T], compute: Callable[[], Awaitable[T]]) -> None:
        self.computed += 1
        future: asyncio.Future[T] = asyncio.ensure_future(compute())
        entry.pending = future

        def done(f: asyncio.Future[T]) -> None:
            entry.pending = None
            if f.cancelled():
                return
            if (exc := f.exception()) is not None:  # the old value stays; the next caller retries
                logger.error("refreshing a cached aggregate failed", exc_info=exc)
                return
            entry.value, entry.expires = f.result(), self._clock() + self.ttl_s

        future.add_done_callback(done)

    def _evict(self, now: float) -> None:
        for key in [
            k
            for k, e in self._entries.items()
            if e.pending is None and e.expires + self.stale_s <= now
        ]:
            del self._entries[key]
        while len(self._entries) >= self.max_keys:
            del self._entries[next(iter(self._entries))]

    def clear(self) -> None:
        """Forget every value (the next caller recomputes)."""
        self._entries = {k: e for k, e in self._entries.items() if e.pending is not None}


def p99(values: Sequence[float]) -> float | None:
    """The 99th percentile (None for no values)."""
    return distribution(values)["p99"]


def checkpoint_throughput(rows: Sequence[tuple[int, float]]) -> float | None:
    """MB/s over checkpoints given as ``(size_bytes, write_seconds)``: total bytes / total time.

    Weighting by size keeps a burst of tiny checkpoints (fast per byte only
    on paper) from hiding the rate at which real state is written.
    """
    seconds = sum(w for _, w in rows)
    if not rows or seconds <= 0:
        return None
    return round(sum(s for s, _ in rows) / seconds / 1e6, 3)


#: Gauges of ``GET /metrics`` exported to Prometheus: (name, key in the metrics, help).
_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "stratalab_checkpoint_throughput_mb_per_second",
        "checkpoint_throughput",
        "Checkpoint write rate over the recent checkpoints (MB/s).",
    ),
    (
        "stratalab_coordinator_requests_per_second",
        "coordinator_rps",
        "API requests per second over the last 10 s.",
    ),
    ("stratalab_workers_active", "active_workers", "Workers taking work."),
    ("stratalab_workers_total", "total_workers", "Workers connected to the Dask scheduler."),
    (
        "stratalab_barrier_latency_p99_milliseconds",
        "barrier_latency_p99",
        "p99 of the full-sync round barrier wait over recent rounds (ms).",
    ),
    (
        "stratalab_shard_assignment_milliseconds",
        "shard_assignment_time",
        "Time the latest dataset shard placement took (ms).",
    ),
    ("stratalab_queue_depth", "queued_jobs", "Jobs waiting in the queue."),
    ("stratalab_running_jobs", "running_jobs", "Jobs holding capacity on a worker."),
    (
        "stratalab_inference_requests_per_second",
        "inference_rps",
        "Inference requests per second over the last minute.",
    ),
    ("stratalab_event_subscribers", "event_subscribers", "Live event-stream consumers."),
    ("stratalab_uptime_seconds", "uptime_s", "Seconds since the coordinator started."),
)


class _Snapshot(Collector):
    """Yields the figures of the latest ``GET /metrics`` body as metric families."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        m = self.latest
        for name, key, text in _GAUGES:
            value = m.get(key)
            if value is not None:
                yield GaugeMetricFamily(name, text, value=float(value))
        jobs = GaugeMetricFamily("stratalab_jobs", "Jobs in the store, by state.", labels=["state"])
        for state, n in sorted((m.get("jobs_by_state") or {}).items()):
            jobs.add_metric([state], float(n))
        yield jobs
        events = m.get("events") or {}
        published = CounterMetricFamily(
            "stratalab_events_published",
            "Events published on the coordinator's bus, by topic.",
            labels=["topic"],
        )
        for topic, n in sorted((events.get("published") or {}).items()):
            published.add_metric([topic], float(n))
        yield published
        yield CounterMetricFamily(
            "stratalab_events_dropped",
            "Events dropped for consumers that fell behind.",
            value=float(events.get("dropped", 0)),
        )
        info = GaugeMetricFamily("stratalab_info", "The running version.", labels=["version"])
        info.add_metric([str(m.get("version", ""))], 1.0)
        yield info


class PrometheusExporter:
    """The Prometheus text exposition of the coordinator's metrics."""

    #: the content type Prometheus expects.
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        #: this coordinator's registry (never prometheus_client's global one).
        self.registry = CollectorRegistry(auto_describe=False)
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)

    def render(self, metrics: dict[str, Any]) -> bytes:
        """The text format of ``metrics`` (a ``GET /metrics`` body) and the request counters."""
        self._snapshot.latest = metrics
        return bytes(generate_latest(self.registry))
