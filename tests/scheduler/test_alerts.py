"""The alert evaluator over a real store and bus, its figures injected (no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from stratalab.ids import utcnow
from stratalab.scheduler.alert_rules import DEFAULT_RULES, merge_rules
from stratalab.scheduler.alerts import AlertService
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.db import Job
from stratalab.scheduler.events import EventBus
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.store import Store

ADMIN = Principal("root", "admin")


@pytest.fixture
def store(db_url: str):
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """The store call, on the loop (the coordinator uses an executor)."""
    return fn(*args, **kwargs)


def worker(wid: str, memory: int = 100) -> WorkerInfo:
    return WorkerInfo(wid, f"tcp://{wid}", wid, "host", 1, 1000, metrics={"memory": memory})


class Cluster:
    """What the evaluator reads from the runner: live workers and queued-since times."""

    def __init__(self) -> None:
        self.workers = {w.address: w for w in (worker("wrk_a"), worker("wrk_b"))}
        self.queued: list[float] = []

    def service(self, store: Store, bus: EventBus) -> AlertService:
        return AlertService(
            store=store,
            db=run,
            bus=bus,
            workers=lambda: self.workers,
            queued_since=lambda: self.queued,
            rules=merge_rules(DEFAULT_RULES, [{"name": "memory_high", "duration_s": 10}]),
            interval_s=0,  # evaluated by the test, not by a loop
        )


async def test_a_lost_worker_raises_a_stored_published_alert_that_resolves(store):
    bus, cluster = EventBus(), Cluster()
    alerts = cluster.service(store, bus)
    await alerts.start()
    with bus.subscribe(["alerts"]) as sub:
        assert await alerts.evaluate(now=1000.0) == []

        del cluster.workers["tcp://wrk_b"]
        (raised,) = await alerts.evaluate(now=1001.0)
        cluster.workers["tcp://wrk_b"] = worker("wrk_b")
        (resolved,) = await alerts.evaluate(now=1002.0)

        events = [(await sub.get(timeout=1)) for _ in range(2)]
    assert raised["rule"] == "worker_lost" and raised["severity"] == "critical"
    assert raised["status"] == "active" and raised["user_id"] is None
    assert raised["details"]["lost"] == ["wrk_b"] and "wrk_b left the cluster" in raised["message"]
    assert resolved["id"] == raised["id"] and resolved["status"] == "resolved"
    assert resolved["resolved_at"] and resolved["details"]["resolved_value"] == 0
    assert [(e.data["event"], e.data["id"]) for e in events if e] == [
        ("raised", raised["id"]),
        ("resolved", raised["id"]),
    ]
    items, total = await alerts.list_alerts(
        ADMIN,
        severities=None,
        statuses=["resolved"],
        rules=None,
        since=None,
        until=None,
        offset=0,
        limit=10,
    )
    assert total == 1 and items[0]["id"] == raised["id"]


async def test_memory_must_stay_high_for_the_duration_and_a_restart_adopts_open_alerts(store):
    bus, cluster = EventBus(), Cluster()
    first = cluster.service(store, bus)
    await first.start()
    cluster.workers["tcp://wrk_a"] = worker("wrk_a", memory=950)  # 95 % of its 1000 bytes

    assert await first.evaluate(now=0.0) == []
    (raised,) = await first.evaluate(now=10.0)
    assert raised["rule"] == "memory_high" and raised["subject"] == "wrk_a"

    restarted = cluster.service(store, bus)
    await restarted.start()
    assert await restarted.evaluate(now=20.0) == []  # still high: not raised twice
    cluster.workers["tcp://wrk_a"] = worker("wrk_a", memory=100)
    (resolved,) = await restarted.evaluate(now=30.0)
    assert resolved["id"] == raised["id"] and resolved["status"] == "resolved"


async def test_a_failed_job_is_an_alert_for_its_owner(store):
    now = utcnow()
    store.insert_jobs(
        [
            Job(
                id="job_failed1",
                user_id="ann",
                name="boom",
                type="task",
                state="FAILED",
                priority=5,
                created_at=now,
                updated_at=now,
                ended_at=now,
                spec={},
                resources={},
                metadata_={},
                max_retries=0,
                retry_count=0,
                attempt=1,
                error="exit code 3",
            )
        ],
        [],
    )
    alerts = Cluster().service(store, EventBus())
    await alerts.start()

    (raised,) = await alerts.evaluate(now=now.timestamp())

    assert raised["rule"] == "job_failed" and raised["user_id"] == "ann"
    assert raised["job_id"] == "job_failed1"
    assert raised["message"].startswith("job job_failed1 (boom) failed: exit code 3")
    assert (await alerts.get(Principal("ann", "user"), raised["id"]))["id"] == raised["id"]
