"""Workers, cluster capacity and the queue, on the shared two-worker Dask cluster.

Tests that drain a worker enable it again before they end: the Dask cluster
is shared by the whole session (the drain flag itself lives in each test's
own database).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stratalab.testing import assert_error

GIB = 2**30
GPU_JOB = {"name": "needs-gpu", "script": "pass", "gpu": 1}  # stays QUEUED: no GPU here
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


async def poll(
    fetch: Callable[[], Awaitable[Any]],
    ok: Callable[[Any], bool],
    *,
    timeout: float = 30,
    what: str = "",
) -> Any:
    """Call ``fetch`` until ``ok`` holds for its result (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await fetch()
        if ok(value):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: last {value}")


async def workers(api: Any) -> list[dict[str, Any]]:
    resp = await api("GET", "workers")
    assert resp.status == 200, resp.text
    return list(resp.json["items"])


async def enable_all(api: Any) -> None:
    """Undo every drain of this test."""
    for w in await workers(api):
        resp = await api("POST", f"workers/{w['id']}/enable")
        assert resp.status == 200, resp.text


async def get_job(api: Any, job_id: str) -> dict[str, Any]:
    resp = await api("GET", f"jobs/{job_id}")
    assert resp.status == 200, resp.text
    return dict(resp.json)


# ------------------------------------------------------------- workers
async def test_lists_the_two_workers_of_the_cluster(api):
    resp = await api("GET", "workers")

    assert resp.status == 200, resp.text
    assert resp.json["total"] == 2 and resp.json["next_page_token"] is None
    items = resp.json["items"]
    assert len({w["id"] for w in items}) == 2
    for w in items:
        assert w["id"].startswith("wrk_")
        assert w["address"].startswith("tcp://")
        assert w["status"] == "active"
        assert w["nthreads"] == 1
        assert w["memory_limit_bytes"] == 2 * GIB
        assert w["gpus"] == 0 and w["running_jobs"] == []
    page = await api("GET", "workers", params={"page_size": 1})
    assert len(page.json["items"]) == 1 and page.json["next_page_token"]
    rest = await api(
        "GET", "workers", params={"page_size": 1, "page_token": page.json["next_page_token"]}
    )
    assert {page.json["items"][0]["id"], rest.json["items"][0]["id"]} == {w["id"] for w in items}
    assert (await api("GET", "workers", params={"status": "drained"})).json["total"] == 0


async def test_get_worker_by_id_and_unknown_worker(api):
    listed = await workers(api)

    one = await api("GET", f"workers/{listed[1]['id']}")
    unknown = await api("GET", "workers/wrk_000000000000")
    drain_unknown = await api("POST", "workers/wrk_000000000000/drain")

    assert one.status == 200, one.text
    assert one.json == listed[1]
    assert_error(unknown, 404, "NOT_FOUND")
    assert_error(drain_unknown, 404, "NOT_FOUND")
    assert api.coordinator.runner.drained == set()


async def test_drained_worker_gets_no_new_work_until_enabled(api):
    first, second = await workers(api)
    try:
        drained = await api("POST", f"workers/{first['id']}/drain")

        assert drained.status == 200, drained.text
        assert drained.json["status"] == "drained"
        listed = await api("GET", "workers", params={"status": "drained"})
        assert [w["id"] for w in listed.json["items"]] == [first["id"]]
        flags = await api.coordinator.db(api.coordinator.store.worker_flags)
        assert set(flags) == {first["id"]}
        for i in range(2):
            resp = await api("POST", "jobs", json_body={"name": f"elsewhere{i}", "script": "pass"})
            job = await api.wait_job(resp.json["job_id"], {"COMPLETED", "FAILED"})
            assert job["status"] == "COMPLETED", job
            assert job["worker"] == second["address"]
            assert job["worker_id"] == second["id"]

        enabled = await api("POST", f"workers/{first['id']}/enable")

        assert enabled.status == 200, enabled.text
        assert enabled.json["status"] == "active"
        assert await api.coordinator.db(api.coordinator.store.worker_flags) == {}
        assert (await api("GET", f"workers/{first['id']}")).json["status"] == "active"
    finally:
        await enable_all(api)


async def test_job_waits_while_every_worker_is_drained(api):
    listed = await workers(api)
    try:
        for w in listed:
            assert (await api("POST", f"workers/{w['id']}/drain")).status == 200
        resp = await api("POST", "jobs", json_body={"name": "waits", "script": "pass"})
        job_id = resp.json["job_id"]

        job = await poll(
            lambda: get_job(api, job_id), lambda j: j["why_pending"], what="a why_pending"
        )

        assert job["status"] == "QUEUED"
        assert job["why_pending"] == "waiting for a worker; all 2 are drained"
        assert (await api("POST", f"workers/{listed[0]['id']}/enable")).status == 200
        done = await api.wait_job(job_id, {"COMPLETED", "FAILED"})
        assert done["status"] == "COMPLETED" and done["worker"] == listed[0]["address"]
    finally:
        await enable_all(api)


async def test_drain_then_force_drain_requeues_a_running_job_elsewhere(api):
    resp = await api("POST", "jobs", json_body={"name": "sleeper", "script": SLEEPER})
    job_id = resp.json["job_id"]
    try:
        running = await api.wait_job(job_id, {"RUNNING"})
        origin = running["worker_id"]

        gentle = await api("POST", f"workers/{origin}/drain")

        assert gentle.status == 200, gentle.text
        assert gentle.json["status"] == "draining"
        assert gentle.json["running_jobs"] == [job_id]
        assert (await get_job(api, job_id))["status"] == "RUNNING"

        forced = await api("POST", f"workers/{origin}/drain", json_body={"force": True})

        assert forced.status == 200, forced.text
        assert forced.json["status"] == "drained" and forced.json["running_jobs"] == []
        moved = await poll(
            lambda: get_job(api, job_id),
            lambda j: j["status"] == "RUNNING" and j["attempt"] == 2,
            what="the job running again",
        )
        assert moved["worker_id"] != origin
        assert moved["retry_count"] == 0  # an operator's drain costs the job no retry
        steps = [(e["from_state"], e["to_state"]) for e in moved["timeline"]]
        assert ("RUNNING", "QUEUED") in steps
        requeue = next(e for e in moved["timeline"] if e["from_state"] == "RUNNING")
        assert "drained (force)" in requeue["reason"]
        assert steps[-1] == ("PREPARING", "RUNNING")
    finally:
        cancel = await api("POST", f"jobs/{job_id}/cancel")
        assert cancel.status == 200, cancel.text
        await enable_all(api)
    assert (await get_job(api, job_id))["status"] == "CANCELLED"


# ------------------------------------------------------ cluster, queue
async def test_cluster_reports_capacity_and_allocation(api, dask_address):
    resp = await api("GET", "cluster")

    assert resp.status == 200, resp.text
    body = resp.json
    assert body["scheduler_address"] == dask_address
    assert body["embedded"] is False
    assert body["workers"] == {"total": 2, "active": 2}
    assert body["capacity"] == {"cpu": 2, "gpu": 0, "memory_bytes": 4 * GIB}
    assert body["allocated"] == {"cpu": 0, "gpu": 0}
    assert body["utilization"] == {"cpu": 0.0, "gpu": 0.0}
    assert body["running_jobs"] == 0 and body["queued_jobs"] == 0


async def test_queue_explains_a_gpu_job_and_priority_can_change(api):
    resp = await api("POST", "jobs", json_body=GPU_JOB)
    job_id = resp.json["job_id"]

    queue = await poll(
        lambda: api("GET", "queue"),
        lambda r: any(j["why_pending"] for j in r.json["jobs"]),
        what="the queue to explain the GPU job",
    )

    body = queue.json
    (job,) = body["jobs"]
    assert job["id"] == job_id and job["status"] == "QUEUED"
    assert job["why_pending"].startswith("waiting for GPU=1; 0 of 0 free")
    assert job["priority_aged"] is not None and 5 <= job["priority_aged"] < 6
    assert body["depth"] == 1 and body["running"] == 0
    assert body["by_priority"] == {"5": 1}
    assert body["by_state"] == {"QUEUED": 1}
    assert body["oldest_wait_seconds"] >= 0

    patched = await api("PATCH", f"jobs/{job_id}/priority", json_body={"priority": 9})

    assert patched.status == 200, patched.text
    assert patched.json["priority"] == 9 and patched.json["status"] == "QUEUED"
    after = (await api("GET", "queue")).json
    assert after["by_priority"] == {"9": 1}
    assert after["jobs"][0]["priority"] == 9
    stored = await api.coordinator.db(api.coordinator.store.get_job, job_id)
    assert stored.priority == 9


async def test_cancelled_job_no_longer_says_why_it_is_pending(api):
    resp = await api("POST", "jobs", json_body=GPU_JOB)
    job_id = resp.json["job_id"]
    await poll(lambda: get_job(api, job_id), lambda j: j["why_pending"], what="why_pending")

    cancelled = await api("POST", f"jobs/{job_id}/cancel")

    assert cancelled.status == 200 and cancelled.json["status"] == "CANCELLED"
    job = await poll(
        lambda: get_job(api, job_id),
        lambda j: j["why_pending"] is None,
        timeout=5,
        what="why_pending to be cleared",
    )
    assert job["priority_aged"] is None
