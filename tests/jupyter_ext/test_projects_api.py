"""Projects: grouping, analytics (percentiles, throughput, per pool), complete, cancel."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.jupyter_ext.modelfiles import tensor


async def test_project_analytics_report_percentiles_throughput_and_pools(api, model_files):
    model = (await api.upload(model_files.onnx.read_bytes())).json
    project = await api(
        "POST",
        "projects",
        json_body={"name": "Production API", "type": "realtime", "model_id": model["id"]},
    )
    assert project.status == 201, project.text
    pid = project.json["id"]
    assert project.json["status"] == "active"
    x = tensor(np.ones((1, 4), dtype=np.float32))
    for _ in range(20):
        ok = await api(
            "POST", "inference", json_body={"model_id": model["id"], "input": x, "project_id": pid}
        )
        assert ok.status == 200
    bad = await api(
        "POST",
        "inference",
        json_body={
            "model_id": model["id"],
            "input": {"data": [1], "shape": [1, 1]},
            "project_id": pid,
        },
    )
    assert bad.status == 422
    resp = await api("GET", f"projects/{pid}/analytics", params={"bucket_size": 1})
    assert resp.status == 200, resp.text
    a = resp.json
    assert a["requests"] == 21
    assert a["errors"] == 1
    assert a["error_codes"] == {"VALIDATION_ERROR": 1}
    lat = a["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert sum(p["requests"] for p in a["throughput"]["points"]) == 21
    assert sum(p["errors"] for p in a["throughput"]["points"]) == 1
    assert a["throughput"]["bucket_size"] == 1
    assert {p["pool"]: p["requests"] for p in a["by_pool"]} == {"cpu": 20, "unknown": 1}
    assert sum(w["succeeded"] for w in a["by_worker"]) == 20
    one = (await api("GET", f"projects/{pid}")).json
    assert one["completed_tasks"] == 20
    assert one["failed_tasks"] == 1
    assert one["metrics"]["requests"] == 21


async def test_timeouts_are_counted_as_errors_by_code(api, model_files):
    model = (await api.upload(model_files.onnx.read_bytes())).json
    pid = (await api("POST", "projects", json_body={"name": "p"})).json["id"]
    x = tensor(np.ones((1, 4), dtype=np.float32))
    body = {"model_id": model["id"], "input": x, "project_id": pid, "options": {"timeout": 0.001}}
    assert (await api("POST", "inference", json_body=body)).status == 504
    a = (await api("GET", f"projects/{pid}/analytics")).json
    assert a["errors"] == 1
    assert a["error_codes"] == {"SERVICE_UNAVAILABLE": 1}


async def test_completed_project_takes_no_more_work_and_cancel_stops_its_batches(api, model_files):
    model = (await api.upload(model_files.onnx.read_bytes())).json
    x = tensor(np.ones((1, 4), dtype=np.float32))
    done = (await api("POST", "projects", json_body={"name": "done"})).json["id"]
    assert (await api("POST", f"projects/{done}/complete")).json["status"] == "completed"
    late = await api(
        "POST", "inference", json_body={"model_id": model["id"], "input": x, "project_id": done}
    )
    assert late.status == 409
    assert (await api("POST", f"projects/{done}/complete")).status == 409

    pid = (await api("POST", "projects", json_body={"name": "batchy", "type": "batch"})).json["id"]
    big = np.random.default_rng(0).normal(size=(40_000, 4)).astype(np.float32)
    batch = await api(
        "POST",
        "inference/batch",
        json_body={
            "model_id": model["id"],
            "input": tensor(big),
            "project_id": pid,
            "shard_size": 200,
        },
    )
    assert batch.status == 202
    cancelled = await api("POST", f"projects/{pid}/cancel")
    assert cancelled.status == 200
    assert cancelled.json["status"] == "cancelled"
    await asyncio.sleep(0.2)
    job = (await api("GET", f"inference/{batch.json['job_id']}", params={"limit": 0})).json
    assert job["status"] in ("cancelled", "completed")  # completed only if it beat the cancel


async def test_projects_are_per_user_and_validated(api):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")
    pid = (await api("POST", "projects", json_body={"name": "mine"}, key=alice)).json["id"]
    assert (await api("GET", f"projects/{pid}", key=bob)).status == 404
    assert (await api("GET", f"projects/{pid}/analytics", key=bob)).status == 404
    assert (await api("POST", f"projects/{pid}/cancel", key=bob)).status == 404
    assert (await api("GET", "projects", key=bob)).json["total"] == 0
    assert (await api("GET", "projects", key=alice)).json["total"] == 1
    bad = await api("POST", "projects", json_body={"name": "x", "type": "weird"})
    assert bad.status == 422
    assert (await api("GET", "projects", params={"status": "nope"})).status == 400
    unknown_model = await api("POST", "projects", json_body={"name": "x", "model_id": "model_x"})
    assert unknown_model.error_code() == "NO_MODEL"
