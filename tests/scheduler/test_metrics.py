"""Request rates, the one-second cache, checkpoint MB/s and the Prometheus text."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stratalab.scheduler.metrics import (
    Cached,
    PrometheusExporter,
    RateMeter,
    RequestStats,
    checkpoint_throughput,
    p99,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_request_rate_counts_the_last_complete_seconds_only():
    clock = Clock(1000.0)
    stats = RequestStats(CollectorRegistry(), clock=clock)
    clock.now = 1100.0
    for second in range(1090, 1100):  # 5 requests in each of 10 seconds
        clock.now = second + 0.5
        for _ in range(5):
            stats.observe("H", "GET", 200, 0.002)
    clock.now = 1100.0
    assert stats.rate(10) == 5.0
    clock.now = 1105.0  # five of those seconds have left the window
    assert stats.rate(10) == 2.5
    clock.now = 1200.0
    assert stats.rate(10) == 0.0
    assert stats.total == 50
    assert stats.by_class == {"2xx": 50}


def test_request_rate_divides_by_uptime_while_young():
    clock = Clock(50.0)
    stats = RequestStats(CollectorRegistry(), clock=clock)
    clock.now = 52.5
    for _ in range(4):
        stats.observe("H", "GET", 404, 0.001)
    assert stats.rate(10) == 0.0  # the current second is not over yet
    clock.now = 53.0
    assert stats.rate(10) == 1.333  # 4 requests in the 3 s since start
    assert stats.by_class == {"4xx": 4}


def test_streams_are_counted_but_not_timed():
    stats = RequestStats(CollectorRegistry())
    stats.observe("Stream", "GET", 200, 300.0, streaming=True)
    stats.observe("H", "GET", 200, 0.004)
    assert stats.total == 2
    assert stats.latency_ms()["max"] == 4.0


async def test_cache_shares_one_computation_then_refreshes_behind_the_answer():
    clock = Clock(0.0)
    cache: Cached[int] = Cached(1.0, clock=clock)
    calls = 0
    gate = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiting = [asyncio.ensure_future(cache.get("k", compute)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1] * 20
    assert calls == 1
    clock.now = 0.5
    assert await cache.get("k", compute) == 1  # fresh
    clock.now = 1.5
    assert await cache.get("k", compute) == 1  # expired: answered at once, refreshed behind
    for _ in range(3):  # the refresh task runs, then its done callback
        await asyncio.sleep(0)
    assert await cache.get("k", compute) == 2
    clock.now = 10.0  # far too old to answer with: the caller waits for the rebuild
    assert await cache.get("k", compute) == 3
    clock.now = 11.5  # expired but servable; a background loop asks to wait anyway
    assert await cache.get("k", compute, fresh=True) == 4
    assert cache.computed == 4


async def test_cache_forgets_failures_and_bounds_its_keys():
    cache: Cached[int] = Cached(60.0, max_keys=3)

    async def boom() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await cache.get("k", boom)

    async def one() -> int:
        return 1

    assert await cache.get("k", one) == 1
    for key in range(10):
        await cache.get(key, one)
    assert len(cache._entries) <= 3


def test_checkpoint_throughput_weights_by_size():
    # 100 MB in 1 s and 1 MB in 1 s: 50.5 MB/s overall, not the 50.5 mean by chance
    assert checkpoint_throughput([(100_000_000, 1.0), (1_000_000, 1.0)]) == 50.5
    assert checkpoint_throughput([(100_000_000, 1.0), (1_000_000, 0.001)]) == 100.899
    assert checkpoint_throughput([]) is None
    assert p99([]) is None
    assert p99([float(i) for i in range(1, 101)]) == 99.01


def test_prometheus_text_parses_and_carries_the_figures():
    exporter = PrometheusExporter()
    stats = RequestStats(exporter.registry)
    stats.observe("DashboardHandler", "GET", 200, 0.003)
    text = exporter.render(
        {
            "checkpoint_throughput": 412.5,
            "coordinator_rps": 3.0,
            "active_workers": 63,
            "total_workers": 64,
            "barrier_latency_p99": 41.0,
            "shard_assignment_time": None,
            "jobs_by_state": {"QUEUED": 2, "COMPLETED": 9},
            "events": {"published": {"jobs": 7}, "dropped": 1},
            "version": "0.1.0",
        }
    ).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    value = {f.name: f.samples[0].value for f in families.values() if len(f.samples) == 1}
    assert value["stratalab_checkpoint_throughput_mb_per_second"] == 412.5
    assert value["stratalab_workers_total"] == 64
    assert value["stratalab_barrier_latency_p99_milliseconds"] == 41.0
    assert "stratalab_shard_assignment_milliseconds" not in families  # unknown is left out
    jobs = {s.labels["state"]: s.value for s in families["stratalab_jobs"].samples}
    assert jobs == {"QUEUED": 2.0, "COMPLETED": 9.0}
    requests = families["stratalab_http_requests"]
    assert requests.type == "counter"
    assert any(
        s.labels == {"handler": "DashboardHandler", "method": "GET", "code": "200"}
        and s.value == 1.0
        for s in requests.samples
    )


def test_rate_meter_follows_a_growing_counter_over_its_window():
    clock, count = Clock(0.0), [0]
    meter = RateMeter(lambda: count[0], window_s=60.0, clock=clock)
    assert meter.rate() is None  # no time has passed
    for t in range(1, 121):  # 3 per second for two minutes, read every second
        clock.now, count[0] = float(t), count[0] + 3
        rate = meter.rate()
    assert rate == 3.0
    clock.now, count[0] = 150.0, count[0]  # then 30 s of nothing
    assert meter.rate() == 1.5  # 90 events in the last 60 s
    assert len(meter._samples) <= 62
