"""The benchmark load generators and figures, driven by plain coroutines (no cluster)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest

from stratalab.errors import NoDevices
from stratalab.scheduler.benchmark_load import closed_loop, step_load, training_figures
from stratalab.scheduler.benchmark_runs import perf_summary

pytestmark = pytest.mark.timeout(30)


class FakeModel:
    """A request that answers after ``delay`` s; every ``fail_every``-th one fails."""

    def __init__(self, delay: float = 0.0, fail_every: int = 0) -> None:
        self.delay = delay
        self.fail_every = fail_every
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        n = self.calls
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail_every and n % self.fail_every == 0:
            raise NoDevices("no worker")
        return {"compute_ms": 0.5, "worker_id": f"wrk_{n % 2}", "device": "cpu"}


def test_closed_loop_sends_every_request_with_the_asked_concurrency() -> None:
    # Prepare
    model = FakeModel(delay=0.001, fail_every=5)
    # Execute
    out = asyncio.run(closed_loop(model, requests=20, concurrency=3))
    # Assert
    assert model.calls == 20 and model.peak == 3
    assert out["completed"] == 16 and out["errors"] == 4
    assert out["error_codes"] == {"NO_DEVICES": 4}
    assert out["workers"] == {"wrk_0": 8, "wrk_1": 8} and out["devices"] == ["cpu"]
    assert out["compute_ms"]["p50"] == 0.5
    assert out["latency_ms"]["p50"] <= out["latency_ms"]["p99"]


def test_step_load_never_exceeds_max_concurrency_and_counts_what_it_could_not_send() -> None:
    # Prepare: each request takes 0.2 s and one may be in flight, against 20 rps offered
    model = FakeModel(delay=0.2)
    # Execute
    out = asyncio.run(step_load(model, rps=20, duration=0.5, max_concurrency=1))
    # Assert: at most 3 fit in 0.5 s, so most of the 10 planned were never sent
    assert out["planned"] == 10 and out["sent"] == model.calls <= 3
    assert out["unsent"] == 10 - out["sent"] >= 7
    assert out["peak_in_flight"] == model.peak == 1
    assert out["completed"] == out["sent"] and out["offered_rps"] == 20


def test_step_load_cancelled_leaves_nothing_running() -> None:
    model = FakeModel(delay=5.0)

    async def run() -> None:
        task = asyncio.ensure_future(step_load(model, rps=50, duration=10, max_concurrency=4))
        while model.in_flight < 4:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert model.in_flight == 0


def test_perf_summary_finds_the_first_step_that_fell_behind() -> None:
    def step(offered: float, achieved: float, unsent: int = 0, errors: int = 0) -> dict[str, Any]:
        return {
            "offered_rps": offered,
            "achieved_rps": achieved,
            "unsent": unsent,
            "errors": errors,
            "latency_ms": {"p99": 2.0},
        }

    summary = perf_summary([step(5, 5.0), step(20, 19.5), step(50, 31.0, unsent=12), step(80, 30)])
    assert summary["saturated_at_rps"] == 50 and summary["max_achieved_rps"] == 31.0
    assert summary["at_offered_rps"] == 50 and summary["p99_ms_by_step"] == [2.0] * 4
    assert perf_summary([step(5, 5.0)])["saturated_at_rps"] is None


def test_training_figures_time_to_accuracy_counts_from_the_training_start() -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    t0 = start.timestamp()
    points = [
        {"round": 1, "ts": t0 + 2.0, "values": {"val_accuracy": 0.6, "samples_per_s": 100.0}},
        {"round": 2, "ts": t0 + 4.5, "values": {"val_accuracy": 0.93, "barrier_ms": 12.0}},
        {"round": 3, "ts": t0 + 6.0, "values": {"accuracy": 0.99, "samples_per_s": 300.0}},
    ]
    figs = training_figures(points, start, target=0.9)
    assert figs["time_to_accuracy_s"] == 4.5 and figs["rounds"] == 3
    assert figs["samples_per_s"]["p50"] == 200.0 and figs["barrier_ms"]["max"] == 12.0
    assert [s["elapsed_s"] for s in figs["steps"]] == [2.0, 4.5, 6.0]
    assert training_figures(points, start, target=0.999)["time_to_accuracy_s"] is None
