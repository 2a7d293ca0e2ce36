"""``/ws`` against a real server, real Dask workers and a real database."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tornado.httpclient import HTTPClientError

from stratalab.jupyter_ext.websocket import EventsWebSocket
from tests.jupyter_ext.ws_client import RawWebSocket, call, recv, until, ws_connect

GPU_JOB = {"name": "waits", "script": "pass", "gpu": 1}  # stays QUEUED: no GPU here


def event_of(topic: str, **data: object):
    """A matcher for an event of ``topic`` whose data has these values."""
    return lambda m: (
        m["type"] == "event"
        and m["topic"] == topic
        and all(m["data"].get(k) == v for k, v in data.items())
    )


async def test_a_subscriber_receives_a_real_jobs_state_changes_and_its_logs(api, jp_ws_fetch):
    conn = await ws_connect(jp_ws_fetch)  # the Jupyter token: the owner, an admin
    try:
        subscribed = await call(conn, {"action": "subscribe", "topics": ["jobs", "logs"], "id": 1})
        assert subscribed == {
            "type": "subscribed",
            "topics": ["jobs", "logs"],
            "job_ids": None,
            "id": 1,
        }

        job_id = (
            await api("POST", "jobs", json_body={"name": "ws", "script": "print('hello ws')"})
        ).json["job_id"]
        seen = await until(conn, event_of("jobs", job_id=job_id, status="COMPLETED"), timeout=60)
        if not any(event_of("logs", job_id=job_id)(m) for m in seen):
            seen += await until(conn, event_of("logs", job_id=job_id))

        states = [m["data"]["status"] for m in seen if event_of("jobs", job_id=job_id)(m)]
        assert states[0] == "QUEUED" and "RUNNING" in states and states[-1] == "COMPLETED"
        lines = [m["data"]["message"] for m in seen if event_of("logs", job_id=job_id)(m)]
        assert any("hello ws" in line for line in lines), lines
        assert all(m["ts"].endswith("Z") for m in seen)

        assert await call(conn, {"action": "ping", "id": "p1"}) == {"type": "pong", "id": "p1"}
        left = await call(conn, {"action": "unsubscribe", "topics": ["logs"]})
        assert left == {"type": "unsubscribed", "topics": ["jobs"], "job_ids": None}
    finally:
        conn.close()


async def test_bad_messages_get_an_error_and_the_connection_stays_usable(api, jp_ws_fetch):
    conn = await ws_connect(jp_ws_fetch)
    try:
        not_json = await call(conn, "{not json", raw=True)
        unknown = await call(conn, {"action": "subscribe", "topics": ["jobs", "gossip"]})
        no_action = await call(conn, {"topics": ["jobs"]})
        bad_action = await call(conn, {"action": "dance", "id": 3})
        no_topics = await call(conn, {"action": "subscribe"})
        not_object = await call(conn, [1, 2])
        binary = await call(conn, b"\x00\x01", raw=True)
        missing_job = await call(
            conn, {"action": "subscribe", "topics": ["jobs"], "job_ids": ["job_nope"], "id": 7}
        )

        assert not_json["type"] == "error" and not_json["code"] == "BAD_REQUEST"
        assert unknown["code"] == "BAD_REQUEST" and unknown["details"]["unknown"] == ["gossip"]
        assert "workers" in unknown["details"]["allowed"]
        for err in (no_action, bad_action, no_topics, not_object, binary):
            assert err["type"] == "error" and err["code"] == "BAD_REQUEST", err
        assert bad_action["id"] == 3
        assert missing_job == {
            "type": "error",
            "code": "NOT_FOUND",
            "message": "no job job_nope",
            "details": {"field": "job_ids"},
            "id": 7,
        }
        # still open, and the refused subscriptions changed nothing
        assert await call(conn, {"action": "ping"}) == {"type": "pong"}
        state = await call(conn, {"action": "subscribe", "topics": ["workers"]})
        assert state == {"type": "subscribed", "topics": ["workers"], "job_ids": None}

        # every message spends a request token: over budget is an error, and the socket stays
        assert (await api("PUT", "config", json_body={"rate_limit_per_minute": 2})).status == 200
        answers = [await call(conn, {"action": "ping"}) for _ in range(3)]
        assert answers[:2] == [{"type": "pong"}] * 2
        assert answers[2]["type"] == "error" and answers[2]["code"] == "RATE_LIMITED"
    finally:
        conn.close()


async def test_missing_or_bad_credentials_and_a_foreign_origin_are_refused(
    api, jp_ws_fetch, jp_http_port
):
    refused = {}
    for name, kwargs in {
        "no credentials": {"token": False},
        "unknown key": {"key": "slk_not_a_key"},
        "foreign origin": {"headers": {"Origin": "https://evil.example"}},
    }.items():
        with pytest.raises(HTTPClientError) as info:
            await ws_connect(jp_ws_fetch, **kwargs)
        resp = info.value.response
        assert resp is not None and resp.body is not None
        refused[name] = (info.value.code, json.loads(resp.body)["error"]["code"])
    same_origin = await ws_connect(
        jp_ws_fetch, headers={"Origin": f"http://localhost:{jp_http_port}"}
    )
    try:
        assert await call(same_origin, {"action": "ping"}) == {"type": "pong"}
    finally:
        same_origin.close()

    assert refused == {
        "no credentials": (401, "AUTH_REQUIRED"),
        "unknown key": (401, "AUTH_INVALID"),
        "foreign origin": (403, "FORBIDDEN"),  # even with the Jupyter token
    }


async def test_a_user_receives_only_events_about_their_own_jobs(api, jp_ws_fetch):
    ann, bob = await api.create_key("ann"), await api.create_key("bob")
    ann_job = (await api("POST", "jobs", json_body=GPU_JOB, key=ann)).json["job_id"]
    bob_job = (await api("POST", "jobs", json_body=GPU_JOB, key=bob)).json["job_id"]
    conn = await ws_connect(jp_ws_fetch, key=ann)
    try:
        topics = ["workers", "jobs", "metrics", "logs", "alerts"]
        assert (await call(conn, {"action": "subscribe", "topics": topics}))["type"] == "subscribed"
        foreign = await call(
            conn, {"action": "subscribe", "topics": ["jobs"], "job_ids": [bob_job]}
        )
        assert foreign["code"] == "NOT_FOUND"

        bus = api.coordinator.bus
        for job, user in ((bob_job, "bob"), (ann_job, "ann")):
            bus.publish("logs", {"job_id": job, "message": f"{user}'s line"})
            bus.publish("metrics", {"job_id": job, "round": 1, "values": {"loss": 0.5}})
            bus.publish("jobs", {"job_id": job, "user_id": user, "status": "TRAINING"})
            bus.publish("alerts", {"id": f"alert_{user}", "user_id": user, "job_id": job})
        bus.publish("alerts", {"id": "alert_platform", "user_id": None, "job_id": None})
        bus.publish("workers", {"worker_id": "wrk_x", "status": "drained"})
        bus.publish("jobs", {"job_id": ann_job, "user_id": "ann", "status": "end"})
        seen = await until(conn, event_of("jobs", status="end"))

        got = [(m["topic"], m["data"].get("job_id")) for m in seen if m["type"] == "event"]
        assert ("logs", ann_job) in got and ("metrics", ann_job) in got
        assert ("alerts", ann_job) in got and ("workers", None) in got
        assert all(job != bob_job for _, job in got), got
        assert ("alerts", None) not in got  # platform alerts are for admins

        # narrowed to one job: other jobs' events stop, worker events go on
        narrowed = await call(
            conn, {"action": "subscribe", "topics": ["jobs"], "job_ids": [ann_job]}
        )
        assert narrowed["job_ids"] == [ann_job]
        bus.publish("jobs", {"job_id": "job_other", "user_id": "ann", "status": "QUEUED"})
        bus.publish("workers", {"worker_id": "wrk_y", "status": "active"})
        assert (await recv(conn))["data"] == {"worker_id": "wrk_y", "status": "active"}
    finally:
        conn.close()


async def test_a_slow_consumer_blocks_neither_the_server_nor_other_consumers(
    api, jp_ws_fetch, jp_http_port, jp_base_url, monkeypatch
):
    """A client that stops reading: its queue stays bounded, the rest carry on, it is told."""
    monkeypatch.setattr(EventsWebSocket, "queue_size", 32)
    key = await api.create_key("ops", "admin")
    bus = api.coordinator.bus
    before = set(bus._subscribers)
    slow = await RawWebSocket.open(
        jp_http_port, f"{jp_base_url}stratalab/api/v1/ws", {"X-API-Key": key}
    )
    fast = await ws_connect(jp_ws_fetch, key=key)
    try:
        await slow.send({"action": "subscribe", "topics": ["jobs"]})
        assert (await slow.recv())["type"] == "subscribed"
        assert (await call(fast, {"action": "subscribe", "topics": ["jobs"]}))["type"] == (
            "subscribed"
        )
        subs = set(bus._subscribers) - before
        assert len(subs) == 2

        pad = "x" * 65_536
        reader = asyncio.ensure_future(until(fast, event_of("jobs", last=True), timeout=60))
        for i in range(200):  # 13 MB, far beyond what the slow socket's buffers hold
            bus.publish("jobs", {"job_id": "job_flood", "i": i, "pad": pad})
            if i % 5 == 4:
                await asyncio.sleep(0.01)  # let the fast reader keep up
        bus.publish("jobs", {"job_id": "job_flood", "last": True})
        received = [m for m in await reader if m["type"] == "event"]

        # the fast consumer got the flood's end (and nearly all of it)
        assert len(received) >= 150, len(received)
        health = await api("GET", "health", token=False, timeout=10)
        assert health.status == 200
        # the slow consumer's backlog is bounded: old events were dropped
        stuck = max(subs, key=lambda s: s.dropped)
        assert stuck.dropped > 0 and stuck.pending <= stuck.maxsize == 32
        # reading at last, it is told how many events it lost
        deadline = time.monotonic() + 60
        message = await slow.recv()
        while message["type"] != "lagged" and time.monotonic() < deadline:
            message = await slow.recv()
        assert message["type"] == "lagged" and message["dropped"] > 0, json.dumps(message)[:200]
    finally:
        slow.close()
        fast.close()
