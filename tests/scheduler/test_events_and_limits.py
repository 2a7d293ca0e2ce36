"""The event bus never blocks on slow consumers; rate limits refill."""

from __future__ import annotations

from stratalab.scheduler.events import EventBus
from stratalab.scheduler.ratelimit import RateLimiter


async def test_slow_subscriber_drops_oldest_without_blocking_others():
    bus = EventBus()
    slow = bus.subscribe(["jobs"], maxsize=10)
    fast = bus.subscribe(["jobs"], maxsize=1000)
    for i in range(100):
        bus.publish("jobs", {"i": i})
    assert slow.dropped == 90
    first = await slow.get(timeout=0.1)
    assert first is not None and first.data == {"i": 90}
    received = [(await fast.get(timeout=0.1)).data["i"] for _ in range(100)]
    assert received == list(range(100))
    assert fast.dropped == 0


async def test_subscription_filters_and_closes():
    bus = EventBus()
    with bus.subscribe(["logs"], accept=lambda e: e.data["job_id"] == "a") as sub:
        bus.publish("logs", {"job_id": "b"})
        bus.publish("jobs", {"job_id": "a"})
        bus.publish("logs", {"job_id": "a"})
        got = await sub.get(timeout=0.1)
        assert got is not None and got.topic == "logs" and got.data == {"job_id": "a"}
        assert await sub.get(timeout=0.01) is None
    assert bus.subscriber_count == 0


def test_token_bucket_limits_then_refills():
    limiter = RateLimiter(per_minute=3)
    verdicts = [limiter.check("k", now=0.0) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[2].remaining == 0
    assert verdicts[3].retry_after_s == 20.0  # one token per 20 s at 3/min
    assert limiter.check("other", now=0.0).allowed
    assert limiter.check("k", now=20.0).allowed


def test_zero_disables_limits():
    limiter = RateLimiter(per_minute=0)
    assert all(limiter.check("k").allowed for _ in range(1000))


async def test_a_consumer_that_never_reads_stays_bounded_and_reports_its_lag():
    bus = EventBus()
    stuck = bus.subscribe(["dashboard"], maxsize=8)
    for i in range(1000):
        bus.publish("dashboard", {"i": i})
    assert stuck.pending == 8  # memory bounded by the queue, whatever is published
    assert stuck.take_lagged() == 992
    assert stuck.take_lagged() == 0  # reported once
    assert bus.dropped == 992
    newest = [(await stuck.get(timeout=0.1)).data["i"] for _ in range(8)]
    assert newest == list(range(992, 1000))
    bus.publish("dashboard", {"i": 1000})
    assert stuck.take_lagged() == 0
