"""Metrics, Prometheus, live per-service figures and logs, on a real server and real workers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stratalab.testing import assert_error
from tests.jupyter_ext.sse_client import open_stream

SCRIPT = "import sys\nfor i in range(3):\n    print('line', i)\nprint('oops', file=sys.stderr)\n"


async def poll(api: Any, path: str, ok: Any, *, params: Any = None, timeout: float = 30) -> Any:
    """GET ``path`` until ``ok(body)`` holds (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        resp = await api("GET", path, params=params)
        assert resp.status == 200, resp.text
        body = resp.json
        if ok(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out polling {path}: {body}")


async def test_metrics_count_requests_and_workers(api):
    for _ in range(20):
        assert (await api("GET", "health", token=False)).status == 200

    m = await poll(api, "metrics", lambda b: b["coordinator_rps"] > 0 and b["requests_total"] >= 20)

    assert m["total_workers"] == 2
    assert m["active_workers"] == 2
    assert m["checkpoint_throughput"] is None  # no checkpoint yet: unknown, not zero
    assert m["barrier_latency_p99"] is None
    assert m["shard_assignment_time"] is None
    assert m["units"]["checkpoint_throughput"] == "MB/s"
    assert m["requests_by_class"]["2xx"] >= 20
    assert m["request_latency_ms"]["p99"] > 0
    assert m["timestamp"].endswith("Z")


async def test_prometheus_text_parses_with_the_real_figures(api):
    job_id = (await api("POST", "jobs", json_body={"name": "p", "script": "pass"})).json["job_id"]
    await api.wait_job(job_id, {"COMPLETED"})

    deadline = time.monotonic() + 30  # the figures are cached for about a second
    while True:
        resp = await api("GET", "metrics/prometheus")
        assert resp.status == 200, resp.text
        families = {f.name: f for f in text_string_to_metric_families(resp.text)}
        jobs = {s.labels["state"]: s.value for s in families["stratalab_jobs"].samples}
        if jobs.get("COMPLETED", 0) >= 1.0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)

    assert jobs["COMPLETED"] >= 1.0
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert families["stratalab_workers_total"].samples[0].value == 2.0
    assert families["stratalab_workers_active"].samples[0].value == 2.0
    requests = families["stratalab_http_requests"]
    assert any(
        s.labels["handler"] == "JobsHandler" and s.labels["method"] == "POST"
        for s in requests.samples
    )
    assert "stratalab_http_request_duration_seconds" in families
    assert families["stratalab_info"].samples[0].labels["version"]
    assert_error(await api("GET", "metrics/prometheus", token=False), 401, "AUTH_REQUIRED")


async def test_live_metrics_per_service_and_filters(api):
    full = (await api("GET", "metrics/live")).json

    services = full["services"]
    assert set(services) == {"coordinator", "scheduler", "workers", "database"}
    assert services["coordinator"]["status"] == "healthy"
    assert services["coordinator"]["memory_usage"] > 10  # MB of this very process
    assert services["coordinator"]["queue_size"] == 0
    assert services["scheduler"]["status"] == "healthy"
    assert services["scheduler"]["workers"] == 2
    assert services["workers"]["count"] == 2
    assert all("executing" in w for w in services["workers"]["workers"].values())
    assert services["database"]["status"] == "healthy"
    assert full["interval"] == 5.0

    some = (
        await api(
            "GET",
            "metrics/live",
            params={"services": "coordinator,workers", "metrics": "cpu", "interval": "2"},
        )
    ).json
    assert set(some["services"]) == {"coordinator", "workers"}
    assert set(some["services"]["coordinator"]) == {"status", "pid", "cpu_usage"}
    assert some["interval"] == 2.0


async def test_live_metrics_stream(api, jp_http_port, jp_base_url):
    key = await api.create_key("ops", "admin")
    async with open_stream(
        jp_http_port,
        jp_base_url,
        "metrics/live",
        key=key,
        params={"services": "coordinator", "interval": "1"},
    ) as stream:
        first, second = await stream.next(), await stream.next()
    assert first.event == second.event == "metrics"
    assert list(second.data["services"]) == ["coordinator"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("logs", {"limit": "-1"}),
        ("logs", {"limit": "0"}),
        ("logs", {"limit": "1001"}),
        ("logs", {"limit": "ten"}),
        ("logs", {"level": "LOUD"}),
        ("logs", {"job_id": "../etc"}),
        ("metrics/live", {"services": "kafka"}),
        ("metrics/live", {"metrics": "cpu,gpu_temp"}),
        ("metrics/live", {"interval": "0"}),
        ("metrics/live", {"interval": "soon"}),
        ("workers/stats", None),  # a good one, for contrast
    ],
)
async def test_bad_parameters_get_the_error_envelope(api, path, params):
    resp = await api("GET", path, params=params)
    if params is None:
        assert resp.status == 200
        return
    err = assert_error(resp, 400, "BAD_REQUEST")
    assert err["details"]["field"] in params


async def test_logs_of_a_job_with_level_filter_and_tenancy(api):
    job_id = (await api("POST", "jobs", json_body={"name": "talk", "script": SCRIPT})).json[
        "job_id"
    ]
    await api.wait_job(job_id, {"COMPLETED"})

    everything = (await api("GET", "logs", params={"job_id": job_id})).json
    warnings = (await api("GET", "logs", params={"job_id": job_id, "level": "WARNING"})).json
    last_two = (await api("GET", "logs", params={"job_id": job_id, "limit": "2"})).json

    out = [e["message"] for e in everything["items"] if e["stream"] == "stdout"]
    assert out == ["line 0", "line 1", "line 2"]
    assert [e["message"] for e in warnings["items"] if e["stream"] == "stderr"] == ["oops"]
    assert all(e["level"] in ("WARNING", "ERROR") for e in warnings["items"])
    assert everything["items"][-2:] == last_two["items"]
    stranger = await api.create_key("mallory")
    assert_error(
        await api("GET", "logs", params={"job_id": job_id}, key=stranger), 404, "NOT_FOUND"
    )
    global_view = (await api("GET", "logs", key=stranger)).json
    assert all(e.get("job_id") != job_id for e in global_view["items"])


async def test_global_logs_merge_jobs_and_the_coordinator_for_admins(api):
    logging.getLogger("stratalab.scheduler.test").warning("coordinator note %d", 7)
    job_id = (await api("POST", "jobs", json_body={"name": "g", "script": "print('hi')"})).json[
        "job_id"
    ]
    await api.wait_job(job_id, {"COMPLETED"})

    items = (await api("GET", "logs", params={"limit": "1000"})).json["items"]

    sources = {(e["source"], e["message"]) for e in items}
    assert ("coordinator", "coordinator note 7") in sources
    assert ("job", "hi") in sources
    assert [e["ts"] for e in items] == sorted(e["ts"] for e in items)  # oldest first


async def test_worker_logs_come_from_the_dask_worker(api):
    stats = (await api("GET", "workers/stats")).json
    assert stats["total"] == 2 and stats["active"] == 2 and stats["nthreads"] == 2
    assert stats["memory_limit_bytes"] > 0
    worker = (await api("GET", "workers")).json["items"][0]
    marker = f"marker-{time.time_ns()}"

    def log_on_worker(text: str) -> None:
        logging.getLogger("distributed.worker").warning(text)

    await api.coordinator.cluster.client.run(log_on_worker, marker, workers=[worker["address"]])

    resp = await api("GET", f"workers/{worker['id']}/logs", params={"lines": "50"})

    assert resp.status == 200, resp.text
    body = resp.json
    assert body["worker_id"] == worker["id"]
    mine = [line for line in body["items"] if line["message"] == marker]
    assert len(mine) == 1
    assert (mine[0]["level"], mine[0]["logger"]) == ("WARNING", "distributed.worker")
    assert mine[0]["ts"].endswith("Z")
    errors_only = (await api("GET", f"workers/{worker['id']}/logs", params={"level": "ERROR"})).json
    assert all(line["level"] in ("ERROR", "CRITICAL") for line in errors_only["items"])
    assert_error(await api("GET", "workers/wrk_nope/logs"), 404, "NOT_FOUND")
    assert_error(
        await api("GET", f"workers/{worker['id']}/logs", params={"lines": "-3"}), 400, None
    )
    user = await api.create_key("dave")
    assert_error(await api("GET", f"workers/{worker['id']}/logs", key=user), 403, "FORBIDDEN")
