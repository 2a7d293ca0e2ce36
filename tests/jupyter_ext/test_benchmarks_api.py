"""``/benchmarks``: measured runs of the serving path and of training, kept as jobs.

Real ONNX model, real digits training, real Dask workers; the figures are
checked for consistency (counts add up, percentiles are ordered), never for
speed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stratalab.ids import utcnow
from stratalab.scheduler.db import Job, JobEvent
from stratalab.scheduler.store import Store
from tests.conftest import Api
from tests.training.conftest import register_digits

DONE = {"COMPLETED", "FAILED", "CANCELLED"}


async def upload(api: Api, path: Any) -> str:
    resp = await api.upload(path.read_bytes(), {}, filename=path.name)
    assert resp.status == 201, resp.text
    return str(resp.json["id"])


async def start(api: Api, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    resp = await api("POST", "benchmarks", json_body=body, key=key)
    assert resp.status == 202, resp.text
    assert resp.headers["Location"] == resp.json["poll_url"]
    assert resp.json["status"] == "QUEUED"
    return dict(resp.json)


async def wait_run(api: Api, run_id: str, states: set[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await api("GET", f"benchmarks/{run_id}")
        assert resp.status == 200, resp.text
        run = resp.json
        if run["status"] in states:
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"benchmark {run_id} stayed {run.get('status')}: {run}")


def ordered(dist: dict[str, Any]) -> bool:
    return 0 < dist["p50"] <= dist["p90"] <= dist["p99"] <= dist["max"]


async def test_inference_and_perf_runs_measure_the_serving_path(api, model_files):
    model_id = await upload(api, model_files.onnx)
    run = await start(
        api, {"mode": "inference", "model_id": model_id, "requests": 20, "concurrency": 2}
    )
    done = await wait_run(api, run["id"], DONE)
    assert done["status"] == "COMPLETED", done
    summary = done["summary"]
    assert summary["completed"] == 20 and summary["errors"] == 0
    assert ordered(summary["latency_ms"]) and summary["compute_ms"]["p50"] is not None
    assert summary["latency_ms"]["p50"] >= summary["compute_ms"]["p50"]
    assert summary["achieved_rps"] > 0 and len(done["steps"]) == 1
    assert [e["to_state"] for e in done["timeline"]] == [
        "PENDING",
        "QUEUED",
        "SCHEDULING",
        "PREPARING",
        "RUNNING",
        "COMPLETED",
    ]
    # the requests went through POST /inference's path: they are the project's records
    project = (await api("GET", f"projects/{done['project_id']}")).json
    assert project["type"] == "benchmark" and project["status"] == "completed"
    assert project["metrics"]["requests"] == 21  # 20 measured + 1 warm-up

    perf = await start(
        api,
        {
            "mode": "perf",
            "model_id": model_id,
            "rps_steps": [5, 20],
            "duration": 1,
            "max_concurrency": 4,
        },
    )
    done = await wait_run(api, perf["id"], DONE)
    assert done["status"] == "COMPLETED", done
    assert [s["offered_rps"] for s in done["steps"]] == [5, 20]
    for step in done["steps"]:
        assert step["sent"] + step["unsent"] == step["planned"]
        assert step["completed"] + step["errors"] == step["sent"] > 0
        assert step["latency_ms"]["p50"] <= step["latency_ms"]["p99"]
        assert step["peak_in_flight"] <= 4
    assert done["summary"]["steps"] == 2 and done["progress"]["percent_complete"] == 100.0

    listed = (await api("GET", "benchmarks", params={"page_size": 1})).json
    assert listed["total"] == 2 and listed["items"][0]["id"] == perf["id"]
    assert listed["next_page_token"]
    jobs = (await api("GET", "jobs", params={"type": "benchmark"})).json
    assert {j["id"] for j in jobs["items"]} == {run["id"], perf["id"]}

    other = await api.create_key("mallory")
    assert (await api("GET", f"benchmarks/{perf['id']}", key=other)).error_code() == "NOT_FOUND"
    assert (await api("GET", "benchmarks", key=other)).json["total"] == 0
    assert (await api("GET", f"benchmarks/{jobs['items'][0]['id']}x")).status == 404


async def test_training_run_reports_samples_per_s_barriers_and_time_to_accuracy(api):
    ds = await register_digits(api)
    resp = await api("POST", "benchmarks", json_body={"mode": "gpu-training", "dataset_id": ds})
    assert resp.status == 409 and resp.error_code() == "NO_TRAINING_DEVICES", resp.text

    run = await start(
        api,
        {
            "mode": "training",
            "dataset_id": ds,
            "epochs": 2,
            "model": {"architecture": "mlp", "hidden": [32]},
            "target_accuracy": 0.5,
        },
    )
    done = await wait_run(api, run["id"], DONE, timeout=120)
    assert done["status"] == "COMPLETED", done
    summary = done["summary"]
    assert summary["rounds"] == 2 and len(done["steps"]) == 2
    assert summary["samples_per_s"]["p50"] > 0 and summary["samples_per_s_overall"] > 0
    assert summary["barrier_ms"]["max"] > 0
    assert summary["final_accuracy"] > 0.5
    assert 0 < summary["time_to_accuracy_s"] <= summary["training_s"]
    child = (await api("GET", f"jobs/{done['training_job_id']}")).json
    assert child["type"] == "training" and child["status"] == "COMPLETED"
    assert child["metadata"]["labels"] == {"benchmark_id": run["id"]}
    assert child["result"]["samples_seen"] == summary["samples_seen"]

    # cancelling a training run cancels its training job too
    long = await start(api, {"mode": "training", "dataset_id": ds, "epochs": 100})
    running = await wait_run(api, long["id"], {"RUNNING"})
    resp = await api("POST", f"jobs/{long['id']}/cancel", json_body={"reason": "enough"})
    assert resp.status == 200 and resp.json["status"] == "CANCELLED", resp.text
    child = await api.wait_job(running["training_job_id"], DONE)
    assert child["status"] == "CANCELLED" and "benchmark" in child["timeline"][-1]["reason"]


async def test_cancel_stops_a_run_and_retry_runs_it_again(api, model_files):
    model_id = await upload(api, model_files.onnx)
    body = {"mode": "perf", "model_id": model_id, "rps_steps": [5, 5], "duration": 30}
    run = await start(api, body)
    await wait_run(api, run["id"], {"RUNNING"})
    resp = await api("POST", f"jobs/{run['id']}/cancel", json_body={"reason": "enough"})
    assert resp.status == 200 and resp.json["status"] == "CANCELLED", resp.text
    # the run stops at once: its project is closed and no step finished
    cancelled = await wait_run(api, run["id"], DONE)
    project = (await api("GET", f"projects/{cancelled['project_id']}")).json
    assert project["status"] == "cancelled" and cancelled["steps"] == []

    resp = await api("POST", f"jobs/{run['id']}/retry", json_body={})
    assert resp.status == 201, resp.text
    child = resp.json["job_id"]
    assert (
        resp.json["job"]["type"] == "benchmark" and resp.json["job"]["parent_job_id"] == run["id"]
    )
    again = await wait_run(api, child, {"RUNNING"})
    assert again["request"] == cancelled["request"] and again["project_id"] != project["id"]
    await api("POST", f"jobs/{child}/cancel", json_body={})
    assert (await wait_run(api, child, DONE))["status"] == "CANCELLED"


#: bodies that fail validation, and the field each error names.
BAD_BODIES = [
    ({}, "(body)"),
    ({"mode": "bogus", "model_id": "m"}, "(body)"),
    ({"mode": "perf", "model_id": "m", "duration": 61}, "perf.duration"),
    ({"mode": "perf", "model_id": "m", "rps_steps": [1] * 11}, "perf.rps_steps"),
    ({"mode": "perf", "model_id": "m", "rps_steps": []}, "perf.rps_steps"),
    ({"mode": "perf", "model_id": "m", "rps_steps": [0]}, "perf.rps_steps"),
    ({"mode": "perf", "model_id": "m", "max_concurrency": 257}, "perf.max_concurrency"),
    ({"mode": "perf", "model_id": "m", "rps_steps": [5000] * 10, "duration": 60}, "perf"),
    ({"mode": "inference", "model_id": "m", "rps_steps": [5]}, "inference.rps_steps"),
    ({"mode": "inference", "model_id": "m", "requests": "10"}, "inference.requests"),
    ({"mode": "training", "dataset_id": "d", "epochs": 101}, "training.epochs"),
    ({"mode": "training"}, "training.dataset_id"),
]


async def test_bad_requests_get_422_naming_the_field(api):
    for body, field in BAD_BODIES:
        resp = await api("POST", "benchmarks", json_body=body)
        assert resp.status == 422 and resp.error_code() == "VALIDATION_ERROR", resp.text
        assert field in [e["field"] for e in resp.json["error"]["details"]["errors"]], resp.text


async def test_unknown_or_foreign_targets_and_bad_inputs_are_refused_before_a_run(api, model_files):
    model_id = await upload(api, model_files.onnx)
    ds = await register_digits(api)
    other = await api.create_key("mallory")
    for body, status, code in [
        ({"mode": "inference", "model_id": "model_nope"}, 404, "NO_MODEL"),
        ({"mode": "inference", "model_id": model_id, "input": [[1.0, 2.0]]}, 422, None),
        ({"mode": "training", "dataset_id": "ds_nope"}, 404, "NOT_FOUND"),
    ]:
        resp = await api("POST", "benchmarks", json_body=body)
        assert resp.status == status and (code is None or resp.error_code() == code), resp.text
    for body in ({"mode": "perf", "model_id": model_id}, {"mode": "training", "dataset_id": ds}):
        resp = await api("POST", "benchmarks", json_body=body, key=other)
        assert resp.status == 404, resp.text
    assert (await api("POST", "benchmarks", body="not json")).error_code() == "BAD_REQUEST"
    assert (await api("GET", "benchmarks")).json["total"] == 0  # nothing was committed


@pytest.fixture
def interrupted(db_url: str) -> dict[str, str]:
    """Benchmarks a previous server left behind: one running, one still queued."""
    store = Store(db_url)
    store.migrate()
    now = utcnow()
    rows = {"running": "RUNNING", "queued": "QUEUED"}
    jobs = [
        Job(
            id=f"job_bench{name}",
            user_id="owner",
            name=name,
            type="benchmark",
            state=state,
            created_at=now,
            queued_at=now,
            updated_at=now,
            spec={"mode": "perf", "model_id": "model_gone", "rps_steps": [5], "duration": 1},
            resources={},
            metadata_={},
            max_retries=0,
        )
        for name, state in rows.items()
    ]
    events = [JobEvent(job_id=j.id, ts=now, to_state=j.state, reason="test") for j in jobs]
    store.insert_jobs(jobs, events)
    store.close()
    return {name: f"job_bench{name}" for name in rows}


async def test_a_restart_fails_started_runs_and_runs_queued_ones(interrupted, api):
    cut = await wait_run(api, interrupted["running"], DONE)
    assert (
        cut["status"] == "FAILED"
        and "server stopped while the benchmark was RUNNING" in (cut["error"])
    )
    queued = await wait_run(api, interrupted["queued"], DONE)
    # it ran after the start: its model no longer exists, which it found out by running
    assert queued["status"] == "FAILED" and queued["error"].startswith("NO_MODEL"), queued
    assert "SCHEDULING" in [e["to_state"] for e in queued["timeline"]]
