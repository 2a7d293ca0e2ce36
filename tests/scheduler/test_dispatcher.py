"""The dispatcher's pure decisions: aging, FIFO, backfill, why-pending."""

from __future__ import annotations

import pytest

from stratalab.scheduler.dispatcher import (
    QueuedJob,
    Request,
    WorkerSlot,
    aged_priority,
    explain,
    order,
    plan,
)


def job(i: int, priority: int = 5, queued_at: float = 0.0, **req: int) -> QueuedJob:
    return QueuedJob(f"job_{i}", priority, queued_at, i, Request(**req))


def worker(addr: str = "w1", nthreads: int = 1, gpus: int = 0, **kw: object) -> WorkerSlot:
    return WorkerSlot(address=addr, nthreads=nthreads, memory_gb=8.0, gpus=gpus, **kw)


@pytest.mark.parametrize(
    ("priority", "waited", "interval", "expected"),
    [
        (5, 0, 60, 5.0),
        (5, 60, 60, 6.0),
        (1, 540, 60, 10.0),
        (1, 10_000, 60, 10.0),
        (3, 30, 60, 3.5),
        (4, 100, 0, 4.0),
    ],
)
def test_aged_priority_formula(priority, waited, interval, expected):
    assert aged_priority(priority, waited, interval) == pytest.approx(expected)


def test_higher_priority_first_then_fifo():
    jobs = [job(1, 5), job(2, 9), job(3, 5), job(4, 9)]
    assert [j.id for j in order(jobs, now=0, aging_interval_s=60)] == [
        "job_2",
        "job_4",
        "job_1",
        "job_3",
    ]


def test_aging_lets_an_old_low_priority_job_overtake():
    old_low = job(1, priority=2, queued_at=0.0)
    new_high = job(2, priority=8, queued_at=599.0)
    # after 600 s the old job has aged to min(10, 2 + 600/60) = 10 > 8.0166
    assert [j.id for j in order([new_high, old_low], now=600, aging_interval_s=60)] == [
        "job_1",
        "job_2",
    ]


def test_plan_places_by_capacity_and_explains_the_rest():
    workers = [worker("w1"), worker("w2")]
    p = plan([job(1, 9), job(2, 5), job(3, 1)], workers, now=0, aging_interval_s=60)
    assert [j for j, _ in p.placements] == ["job_1", "job_2"]
    assert {a for _, a in p.placements} == {"w1", "w2"}
    assert p.pending == {"job_3": "waiting for cpu=1; 0 of 2 free"}
    assert p.aged["job_3"] == pytest.approx(1.0)


def test_gpu_job_waits_with_reason_while_cpu_jobs_backfill():
    p = plan([job(1, 9, gpu=1), job(2, 1)], [worker("w1")], now=0, aging_interval_s=60)
    assert p.placements == [("job_2", "w1")]
    assert p.pending["job_1"] == "waiting for GPU=1; 0 of 0 free; no worker has that many"


def test_gpu_job_goes_to_gpu_worker_and_cpu_job_avoids_it():
    workers = [worker("gpu", nthreads=2, gpus=1), worker("cpu", nthreads=2)]
    p = plan([job(1, 5), job(2, 5, gpu=1)], workers, now=0, aging_interval_s=60)
    assert dict(p.placements) == {"job_1": "cpu", "job_2": "gpu"}


def test_drained_and_missing_workers_are_explained():
    assert explain(Request(), []) == "waiting for a worker; 0 connected"
    drained = [worker("w1", accepting=False)]
    assert explain(Request(), drained) == "waiting for a worker; all 1 are drained"
    p = plan([job(1)], drained, now=0, aging_interval_s=60)
    assert p.placements == []


def test_multi_cpu_request_needs_one_worker_with_enough_threads():
    p = plan([job(1, cpu=3)], [worker("w1", 2), worker("w2", 2)], now=0, aging_interval_s=60)
    assert p.placements == []
    assert p.pending["job_1"] == "waiting for cpu=3; 4 of 4 free; no worker has that many"


def test_ten_thousand_queued_jobs_all_get_a_decision():
    jobs = [job(i, priority=1 + i % 10, queued_at=float(i)) for i in range(10_000)]
    p = plan(jobs, [worker("w1", 4), worker("w2", 4)], now=10_000, aging_interval_s=60)
    assert len(p.placements) == 8
    assert len(p.pending) == 10_000 - 8
    assert len(p.aged) == 10_000
