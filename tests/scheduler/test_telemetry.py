"""The dashboard's store reads: right figures, owner scoping, bounded windows (SQLite, PG)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from stratalab.ids import new_id, utcnow
from stratalab.scheduler import telemetry
from stratalab.scheduler.db import Checkpoint, Dataset, InferenceRecord, Job, TrainingMetric
from stratalab.scheduler.store import Store


@pytest.fixture
def store(db_url: str):
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


def job(user: str, state: str, minutes_ago: int) -> Job:
    at = utcnow() - timedelta(minutes=minutes_ago)
    return Job(
        id=new_id("job"),
        user_id=user,
        name=f"{user}-{minutes_ago}",
        type="training",
        state=state,
        priority=5,
        created_at=at,
        queued_at=at,
        updated_at=at,
        spec={"script": "pass"},
        resources={"cpu": 1},
        metadata_={},
        max_retries=0,
        retry_count=0,
        attempt=1,
        output="x" * 10_000,
        error="e" * 2_000 if state == "FAILED" else None,
    )


@pytest.fixture
def filled(store: Store):
    """Two users' jobs, checkpoints, round metrics, datasets, logs and request records."""
    alice = [job("alice", s, m) for m, s in enumerate(["TRAINING", "COMPLETED", "FAILED"] * 10)]
    bob = [job("bob", "COMPLETED", 100 + m) for m in range(5)]
    store.insert_jobs(alice + bob, [])
    now = utcnow()
    with store.session() as s:
        for i in range(25):  # the newest 20: 2 MB in 0.01 s each
            s.add(
                Checkpoint(
                    id=new_id("ckpt"),
                    job_id=alice[0].id,
                    user_id="alice",
                    round=i,
                    sha256="0" * 64,
                    size=2_000_000 if i >= 5 else 1,
                    write_s=0.01 if i >= 5 else 100.0,
                    mb_per_s=200.0 if i >= 5 else 0.0,
                    status="ok",
                    reason="round",
                    metrics={},
                    created_at=now - timedelta(seconds=100 - i),
                )
            )
        for rnd in range(1, 101):  # global points: barrier_ms = round
            s.add(
                TrainingMetric(
                    job_id=alice[0].id,
                    ts=time.time(),
                    round=rnd,
                    step=rnd * 10,
                    worker=None,
                    values={"loss": 1.0 / rnd, "barrier_ms": float(rnd)},
                )
            )
            s.add(
                TrainingMetric(
                    job_id=alice[0].id,
                    ts=time.time(),
                    round=rnd,
                    step=rnd * 10 + 3,
                    worker="tcp://w1",
                    values={"loss": 1.0},
                )
            )
        for i, ms in enumerate([7.5, 3.25]):
            s.add(
                Dataset(
                    id=new_id("ds"),
                    user_id="alice",
                    name=f"d{i}",
                    format="csv",
                    source="x",
                    options={},
                    info={},
                    num_rows=100,
                    num_shards=4,
                    validation_rows=0,
                    placement={"0": "tcp://w1", "1": "tcp://w1", "2": "tcp://w2", "3": "tcp://w2"},
                    shard_assignment_ms=ms,
                    description="",
                    created_at=now - timedelta(seconds=10 - i),
                )
            )
        for i in range(120):
            s.add(
                InferenceRecord(
                    ts=time.time() - i,
                    user_id="alice" if i % 2 else "bob",
                    model_id="model_x",
                    request_id=f"infer_{i}",
                    kind="sync",
                    latency_ms=1.0,
                    items=1,
                )
            )
    store.add_logs(
        [
            {
                "job_id": j.id,
                "attempt": 1,
                "seq": i,
                "ts": time.time(),
                "stream": "stdout",
                "level": 40 if i == 2 else 20,
                "message": f"{j.user_id} line {i}",
            }
            for j in (alice[0], bob[0])
            for i in range(3)
        ]
    )
    return alice, bob


def test_admin_view_has_everything_with_short_jobs(store, filled):
    alice, _ = filled
    view = telemetry.read_view(store, None, running_ids=[alice[0].id], jobs=5)
    assert view.jobs_by_state == {"TRAINING": 10, "COMPLETED": 15, "FAILED": 10}
    assert [j["id"] for j in view.recent_jobs] == [j.id for j in alice[:5]]  # newest first
    assert "output" not in view.recent_jobs[0]
    assert len(view.recent_jobs[2]["error"]) == 501  # 500 characters and an ellipsis
    assert [j["id"] for j in view.running_jobs] == [alice[0].id]
    assert len(view.checkpoints) == 20
    assert view.checkpoints[0]["round"] == 24
    assert [b["round"] for b in view.barriers] == list(range(100, 80, -1))
    assert view.barriers[0]["barrier_ms"] == 100.0
    assert view.worker_steps == {"tcp://w1": 1003}
    assert view.shards_by_worker == {"tcp://w1": 4, "tcp://w2": 4}
    assert [d["shard_assignment_ms"] for d in view.datasets] == [3.25, 7.5]
    assert {line["message"] for line in view.logs} >= {"alice line 0", "bob line 2"}


def test_a_user_sees_only_their_own(store, filled):
    alice, _ = filled
    view = telemetry.read_view(store, "bob", running_ids=[alice[0].id])
    assert view.jobs_by_state == {"COMPLETED": 5}
    assert {j["user_id"] for j in view.recent_jobs} == {"bob"}
    assert view.running_jobs == []
    assert view.checkpoints == view.barriers == view.datasets == []
    assert view.worker_steps == {}
    assert {line["message"] for line in view.logs} == {"bob line 0", "bob line 1", "bob line 2"}


def test_system_figures(store, filled):
    figures = telemetry.read_figures(store)
    assert figures.checkpoint_throughput == 200.0  # newest 20: 40 MB in 0.2 s
    assert figures.checkpoints_measured == 20
    assert figures.barrier_latency_p99 == 99.01  # p99 of 1..100
    assert figures.barriers_measured == 100
    assert figures.shard_assignment_time == 3.25  # the newest dataset
    assert figures.jobs_by_state["COMPLETED"] == 15


def test_windows_bound_what_a_read_scans(store, filled):
    with store.session() as s:
        points, steps = telemetry.metric_window(s, None, window=10)
        assert [p[2] for p in points] == [100, 99, 98, 97, 96]  # 10 newest rows, 5 global
        assert steps == [("tcp://w1", 1003)]
        errors = telemetry.recent_logs(s, None, limit=10, min_level=40)
        assert [e["message"] for e in errors] == ["alice line 2", "bob line 2"]
        assert [e["level"] for e in errors] == ["ERROR", "ERROR"]
        rows = telemetry.inference_rows(s, owner=None, project_id=None, since=0.0, limit=7)
        assert len(rows) == 7
        mine = telemetry.inference_rows(s, owner="bob", project_id=None, since=time.time() - 10)
        assert len(mine) == 5  # bob: even i in 0..9


def test_reducers_on_plain_rows():
    points = [
        ("job_a", 0.0, 3, {"barrier_ms": 5}),
        ("job_a", 0.0, 2, {"loss": 1}),
        ("j", 0, 1, None),
    ]
    assert telemetry.barrier_points(points) == [
        {"job_id": "job_a", "round": 3, "barrier_ms": 5.0, "ts": "1970-01-01T00:00:00.000Z"}
    ]
    assert telemetry.worker_steps([("a", 3), ("a", 9), ("b", 1)]) == {"a": 9, "b": 1}
    assert telemetry.shards_by_worker([{"0": "a", "1": None}, {}, {"0": "a"}]) == {"a": 2}
