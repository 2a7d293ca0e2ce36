"""Worker log parsing, the coordinator's log ring, and the live-metrics field filter."""

from __future__ import annotations

import logging

from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.livestats import (
    LogRing,
    parse_worker_logs,
    select,
    worker_services,
    workers_stats,
)


def test_dask_worker_lines_become_entries_oldest_first():
    raw = [  # Dask answers newest first
        ("WARNING", "2026-11-23 21:17:17,670 - distributed.worker - WARNING - marker\nsecond"),
        ("INFO", "2026-11-23 21:17:17,662 - distributed.worker - INFO - Registered to: tcp://x"),
        ("INFO", "not in Dask's format"),
    ]
    entries = parse_worker_logs(raw)
    assert [e["level"] for e in entries] == ["INFO", "INFO", "WARNING"]
    assert entries[0] == {"ts": None, "logger": None, "level": "INFO", "message": raw[2][1]}
    assert entries[2]["logger"] == "distributed.worker"
    assert entries[2]["message"] == "marker\nsecond"
    assert entries[2]["ts"].endswith("Z")
    assert [e["message"] for e in parse_worker_logs(raw, min_level=30)] == ["marker\nsecond"]


def test_log_ring_is_bounded_and_keeps_no_traceback():
    ring = LogRing(capacity=3)
    log = logging.getLogger("stratalab.test_livestats")
    log.addHandler(ring)
    try:
        for i in range(5):
            log.warning("note %d", i)
        try:
            raise ValueError("secret detail")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(ring)
    entries = ring.entries()
    assert [e["message"] for e in entries] == ["note 3", "note 4", "failed"]
    assert all(e["source"] == "coordinator" for e in entries)
    assert "secret detail" not in str(entries)
    assert [e["message"] for e in ring.entries(min_level=40)] == ["failed"]
    assert [e["message"] for e in ring.entries(limit=1)] == ["failed"]


def info(i: int, **metrics) -> WorkerInfo:
    return WorkerInfo(
        id=f"wrk_{i}",
        address=f"tcp://w{i}",
        name=str(i),
        host="h",
        nthreads=2,
        memory_limit=2**30,
        metrics=metrics,
    )


def test_worker_figures_and_field_selection():
    infos = {
        "tcp://w0": info(0, cpu=50.0, memory=2**29, task_counts={"executing": 1, "ready": 3}),
        "tcp://w1": info(1, cpu=10.0, memory=0, task_counts={"executing": 2}),
    }
    views = [
        {
            "status": "active",
            "host": "h",
            "nthreads": 2,
            "gpus": 0,
            "memory_limit_bytes": 2**30,
            "memory_bytes": w.metrics["memory"],
            "cpu_percent": w.metrics["cpu"],
            "running_jobs": ["job_a"] if i == 0 else [],
            "used_cpu": 1 if i == 0 else 0,
            "used_gpus": 0,
        }
        for i, w in enumerate(infos.values())
    ]
    stats = workers_stats(views, infos)
    assert stats["total"] == 2 and stats["nthreads"] == 4 and stats["hosts"] == 1
    assert stats["cpu_percent"] == {"mean": 30.0, "max": 50.0}
    assert stats["tasks"] == {"executing": 3, "ready": 3}
    assert stats["utilization"]["cpu"] == 0.25
    live = worker_services(infos, drained={"wrk_1"})
    assert live["workers"]["wrk_0"]["queue_size"] == 3
    assert live["workers"]["wrk_0"]["memory_usage"] == 512.0
    assert live["workers"]["wrk_1"]["status"] == "draining"
    only_cpu = select({"workers": live}, ["cpu"])["workers"]
    assert set(only_cpu["workers"]["wrk_0"]) == {"status", "cpu_usage"}
    assert only_cpu["count"] == 2
