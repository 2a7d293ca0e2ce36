"""The dashboard routes against a real server, real Dask workers and a real database."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import timedelta
from typing import Any

import numpy as np

from stratalab.ids import new_id, utcnow
from stratalab.jupyter_ext.dashboard import DashboardStreamHandler
from stratalab.scheduler.db import Checkpoint, Dataset, TrainingMetric
from stratalab.testing import assert_error
from tests.jupyter_ext.modelfiles import tensor
from tests.jupyter_ext.sse_client import open_stream

SCRIPT = "import sys\nfor i in range(3):\n    print('line', i)\nprint('oops', file=sys.stderr)\n"
GPU_JOB = {"name": "needs-gpu", "script": "pass", "gpu": 1}  # stays QUEUED: no GPU here


async def poll(api: Any, path: str, ok: Any, *, key: str | None = None, timeout: float = 30):
    """GET ``path`` until ``ok(body)`` holds (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        resp = await api("GET", path, key=key)
        assert resp.status == 200, resp.text
        body = resp.json
        if ok(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out polling {path}: {body}")


async def test_dashboard_shows_a_finished_task_job_its_logs_and_the_workers(api):
    job_id = (await api("POST", "jobs", json_body={"name": "dash", "script": SCRIPT})).json[
        "job_id"
    ]
    await api.wait_job(job_id, {"COMPLETED"})

    dash = await poll(
        api,
        "dashboard",
        lambda d: any(
            j["id"] == job_id and j["status"] == "COMPLETED" for j in d["jobs"]["recent"]
        ),
    )

    assert set(dash) >= {
        "coordinator",
        "workers",
        "datasets",
        "checkpoints",
        "barriers",
        "metrics",
        "jobs",
        "logs",
    }
    assert dash["coordinator"]["status"] == "ok"
    assert dash["coordinator"]["dask_address"] == api.coordinator.cluster.scheduler_address
    assert len(dash["workers"]) == 2
    assert all(w["assigned_shards"] == 0 for w in dash["workers"])
    assert dash["metrics"]["total_workers"] == 2
    assert dash["jobs"]["by_state"]["COMPLETED"] >= 1
    mine = [e for e in dash["logs"] if e.get("job_id") == job_id]
    assert [e["message"] for e in mine if e["stream"] == "stdout"] == ["line 0", "line 1", "line 2"]
    again = (await api("GET", "dashboard")).json
    assert again["generated_at"] == dash["generated_at"]  # served from the 1 s cache


def training_rows(coordinator: Any) -> dict[str, Any]:
    """Checkpoints, round metrics and a dataset as the training work stores them."""
    addresses = sorted(coordinator.runner.workers)
    now = utcnow()
    with coordinator.store.session() as s:
        for rnd in range(3):
            s.add(
                Checkpoint(
                    id=new_id("ckpt"),
                    job_id="job_0000000000000000",
                    user_id="someone",
                    round=rnd,
                    sha256="0" * 64,
                    size=4_000_000,
                    write_s=0.02,
                    mb_per_s=200.0,
                    status="ok",
                    reason="round",
                    metrics={},
                    created_at=now - timedelta(seconds=3 - rnd),
                )
            )
            s.add(
                TrainingMetric(
                    job_id="job_0000000000000000",
                    ts=time.time(),
                    round=rnd,
                    step=rnd,
                    worker=None,
                    values={"loss": 0.5, "barrier_ms": 10.0 * (rnd + 1)},
                )
            )
            s.add(
                TrainingMetric(
                    job_id="job_0000000000000000",
                    ts=time.time(),
                    round=rnd,
                    step=5 + rnd,
                    worker=addresses[0],
                    values={"loss": 0.5},
                )
            )
        s.add(
            Dataset(
                id=new_id("ds"),
                user_id="someone",
                name="iris",
                format="csv",
                source="builtin:iris",
                options={},
                info={},
                num_rows=150,
                num_shards=3,
                validation_rows=0,
                placement={"0": addresses[0], "1": addresses[0], "2": addresses[1]},
                shard_assignment_ms=4.5,
                description="",
                created_at=now,
            )
        )
    return {"addresses": addresses}


async def test_dashboard_and_metrics_carry_the_training_figures(api):
    rows = await api.coordinator.db(training_rows, api.coordinator)
    first, second = rows["addresses"]

    dash = await poll(api, "dashboard", lambda d: len(d["checkpoints"]) == 3)

    m = dash["metrics"]
    assert m["checkpoint_throughput"] == 200.0  # 12 MB in 0.06 s
    assert m["barrier_latency_p99"] == 29.8  # p99 of 10, 20, 30 ms
    assert m["shard_assignment_time"] == 4.5
    assert [b["barrier_ms"] for b in dash["barriers"]] == [30.0, 20.0, 10.0]
    assert [c["round"] for c in dash["checkpoints"]] == [2, 1, 0]
    assert dash["datasets"][0]["num_shards"] == 3
    workers = {w["address"]: w for w in dash["workers"]}
    assert (workers[first]["assigned_shards"], workers[first]["current_step"]) == (2, 7)
    assert (workers[second]["assigned_shards"], workers[second]["current_step"]) == (1, None)
    metrics = (await api("GET", "metrics")).json
    assert metrics["checkpoint_throughput"] == 200.0
    assert metrics["barrier_latency_p99"] == 29.8


async def test_a_user_sees_only_their_own_jobs_and_no_coordinator_logs(api):
    alice, bob = await api.create_key("alice"), await api.create_key("bob")
    queued = (await api("POST", "jobs", json_body=GPU_JOB, key=alice)).json["job_id"]
    logging.getLogger("stratalab.scheduler.test").warning("a note for admins")

    admin = await poll(api, "dashboard", lambda d: d["jobs"]["queued"] >= 1)
    as_bob = (await api("GET", "dashboard", key=bob)).json
    as_alice = (await api("GET", "dashboard", key=alice)).json

    assert queued in [j["id"] for j in admin["jobs"]["recent"]]
    assert any(e["source"] == "coordinator" for e in admin["logs"])
    assert as_bob["jobs"] == {"by_state": {}, "queued": 0, "running": [], "recent": []}
    assert not any(e["source"] == "coordinator" for e in as_bob["logs"])
    assert [j["id"] for j in as_alice["jobs"]["recent"]] == [queued]
    assert len(as_bob["workers"]) == 2  # the cluster itself is everyone's
    await api("POST", f"jobs/{queued}/cancel", key=alice)


async def test_stream_sends_a_snapshot_then_job_events_then_snapshots(
    api, jp_http_port, jp_base_url
):
    key = await api.create_key("ops", "admin")
    async with open_stream(
        jp_http_port, jp_base_url, "dashboard/stream", key=key, params={"interval": "1"}
    ) as stream:
        first = await stream.next()
        assert first.event == "snapshot"
        assert first.data["metrics"]["total_workers"] == 2

        job_id = (await api("POST", "jobs", json_body=GPU_JOB)).json["job_id"]

        events = await stream.until(lambda e: e.event == "jobs" and e.data["job_id"] == job_id)
        assert events[-1].data["status"] == "QUEUED"
        later = await stream.until(
            lambda e: (
                e.event == "snapshot" and job_id in [j["id"] for j in e.data["jobs"]["recent"]]
            )
        )
        assert later[-1].data["jobs"]["queued"] >= 1
    await api("POST", f"jobs/{job_id}/cancel")
    await poll_subscribers_gone(api)


async def poll_subscribers_gone(api: Any, timeout: float = 10) -> None:
    """The stream's subscription is closed once its client left."""
    deadline = time.monotonic() + timeout
    while api.coordinator.observability._stream_owners and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not api.coordinator.observability._stream_owners


async def test_throughput_buckets_real_inference_requests(api, model_files):
    up = await api.upload(model_files.onnx.read_bytes(), filename="mlp.onnx")
    assert up.status == 201, up.text
    body = {"model_id": up.json["id"], "input": tensor(np.ones((1, 4), dtype=np.float32))}
    for _ in range(4):
        resp = await api("POST", "inference", json_body=body)
        assert resp.status == 200, resp.text

    resp = await api("GET", "dashboard/throughput", params={"bucket_size": "1", "window": "600"})

    assert resp.status == 200, resp.text
    out = resp.json
    assert out["bucket_size"] == 1.0
    assert out["summary"]["requests"] == 4
    assert out["summary"]["succeeded"] == 4
    assert sum(p["requests"] for p in out["points"]) == 4
    assert out["summary"]["latency_ms"]["p50"] > 0
    other = await api.create_key("carol")
    theirs = await api("GET", "dashboard/throughput", key=other)
    assert theirs.json["summary"]["requests"] == 0  # records are the caller's own


async def test_bad_dashboard_parameters_get_the_error_envelope(api):
    for params in (
        {"bucket_size": "-1"},
        {"bucket_size": "abc"},
        {"bucket_size": "nan"},
        {"window": "0"},
        {"window": "-5"},
        {"window": "604800", "bucket_size": "1"},  # 604,800 buckets
    ):
        resp = await api("GET", "dashboard/throughput", params=params)
        err = assert_error(resp, 400, "BAD_REQUEST")
        assert err["details"]["field"] in params
    missing = await api("GET", "dashboard/throughput", params={"project_id": "proj_nope"})
    assert_error(missing, 404, "NOT_FOUND")
    for interval in ("0", "-1", "inf", "x"):
        resp = await api("GET", "dashboard/stream", params={"interval": interval})
        assert_error(resp, 400, "BAD_REQUEST")
    assert_error(await api("GET", "dashboard", token=False), 401, "AUTH_REQUIRED")


async def test_a_slow_stream_consumer_blocks_neither_the_server_nor_other_consumers(
    api, jp_http_port, jp_base_url, monkeypatch
):
    """A client that stops reading: its queue stays bounded, the rest carry on, it is dropped."""
    monkeypatch.setattr(DashboardStreamHandler, "stall_timeout_s", 3.0)
    bus = api.coordinator.bus
    key = await api.create_key("ops", "admin")
    before = set(bus._subscribers)

    # the slow client: a tiny receive buffer, and it never reads
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    await asyncio.get_running_loop().sock_connect(slow, ("127.0.0.1", jp_http_port))
    request = (
        f"GET {jp_base_url}stratalab/api/v1/dashboard/stream HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nX-API-Key: {key}\r\nAccept: text/event-stream\r\n\r\n"
    )
    await asyncio.get_running_loop().sock_sendall(slow, request.encode())
    try:
        async with open_stream(jp_http_port, jp_base_url, "dashboard/stream", key=key) as fast:
            assert (await fast.next()).event == "snapshot"
            deadline = time.monotonic() + 10
            while len(set(bus._subscribers) - before) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            subs = set(bus._subscribers) - before
            assert len(subs) == 2

            pad = "x" * 65_536
            reader = asyncio.ensure_future(
                fast.until(lambda e: e.event == "jobs" and e.data.get("last") is True, timeout=60)
            )
            for i in range(200):  # 13 MB, far beyond what the slow socket's buffers hold
                bus.publish("jobs", {"job_id": "job_flood", "i": i, "pad": pad})
                if i % 5 == 4:
                    await asyncio.sleep(0.01)  # let the fast reader keep up
            bus.publish("jobs", {"job_id": "job_flood", "last": True})
            events = await reader
            received = sum(1 for e in events if e.event == "jobs")

            # the fast consumer got the flood's end (and nearly all of it)
            assert received >= 150, received
            # the server still answers promptly
            health = await api("GET", "health", token=False, timeout=10)
            assert health.status == 200
            # the slow consumer's backlog is bounded: old events were dropped
            stuck = max(subs, key=lambda s: s.dropped)
            assert stuck.dropped > 0
            assert stuck.pending <= stuck.maxsize
            # and after the stall timeout it is disconnected, its subscription gone
            deadline = time.monotonic() + 30
            while stuck in bus._subscribers and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert stuck not in bus._subscribers
            fast_sub = (subs - {stuck}).pop()
            assert fast_sub in bus._subscribers  # the fast stream is still open
    finally:
        slow.close()
    await poll_subscribers_gone(api)
