"""Training requests that must be refused (or kept waiting) with a clear reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.training.conftest import register_digits, submit, training_body, wait_for

pytestmark = pytest.mark.usefixtures("jp_server_config")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only (the same paths run on PostgreSQL in test_training_api.py)."""
    return f"sqlite:///{tmp_path / 'stratalab.db'}"


@pytest.mark.parametrize(
    ("training", "field"),
    [
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"sync_mode": "sometimes"}, "sync_mode"),
        ({"epochs": 0}, "epochs"),
    ],
)
async def test_bad_training_config_is_a_422_naming_the_field(
    api: Api, training: dict[str, Any], field: str
) -> None:
    ds = await register_digits(api)
    resp = await api("POST", "jobs", json_body=training_body(ds, **training))
    assert resp.status == 422, resp.text
    assert resp.error_code() == "VALIDATION_ERROR"
    assert field in resp.text
    assert (await api("GET", "jobs")).json["total"] == 0, "nothing was stored"


async def test_unknown_or_foreign_datasets_and_models_are_not_found(api: Api) -> None:
    other = await api.create_key("mallory")
    not_hers = await register_digits(api)
    for ds in ("ds_doesnotexist", not_hers):
        resp = await api("POST", "jobs", json_body=training_body(ds), key=other)
        assert resp.status == 404 and resp.error_code() == "NOT_FOUND", resp.text
    body = training_body(await register_digits(api))
    body["model"] = {"model_id": "model_nope"}
    resp = await api("POST", "jobs", json_body=body)
    assert resp.status == 404 and resp.error_code() == "NO_MODEL"
    body["model"] = {"architecture": "mlp", "model_id": "model_nope"}
    assert (await api("POST", "jobs", json_body=body)).status == 422


async def test_a_gpu_job_on_a_cluster_without_gpus_is_no_training_devices(api: Api) -> None:
    ds = await register_digits(api)
    resp = await api("POST", "jobs", json_body=training_body(ds, resources={"gpu": 1}))
    assert resp.status == 409 and resp.error_code() == "NO_TRAINING_DEVICES"
    assert "no worker has a GPU" in resp.json["error"]["message"]


async def test_more_devices_than_the_cluster_waits_with_a_reason_and_lifecycle_errors(
    api: Api,
) -> None:
    ds = await register_digits(api)
    job_id = await submit(api, training_body(ds, resources={"min_devices": 3}))
    job = await wait_for(api, job_id, lambda j: bool(j.get("why_pending")))
    assert job["status"] == "QUEUED"
    assert "needs 3 worker(s)" in job["why_pending"] and "2 eligible" in job["why_pending"]

    pause = await api("POST", f"jobs/{job_id}/pause")
    assert pause.status == 409 and pause.error_code() == "CANNOT_PAUSE"
    assert "QUEUED" in pause.json["error"]["message"]
    resume = await api("POST", f"jobs/{job_id}/resume")
    assert resume.status == 409 and resume.error_code() == "CONFLICT"
    assert "only a PAUSED" in resume.json["error"]["message"]
    bad_ckpt = await api("POST", f"jobs/{job_id}/resume", json_body={"checkpoint_id": 7})
    assert bad_ckpt.status == 422
    assert (await api("POST", f"jobs/{job_id}/cancel")).json["status"] == "CANCELLED"
    retry = await api(
        "POST", f"jobs/{job_id}/retry", json_body={"new_resource_config": {"min_devices": 0}}
    )
    assert retry.status == 422, retry.text

    task = await api("POST", "jobs", json_body={"name": "t", "script": "print(1)"})
    pause = await api("POST", f"jobs/{task.json['job_id']}/pause")
    assert (
        pause.error_code() == "CANNOT_PAUSE"
        and "only training jobs" in pause.json["error"]["message"]
    )


async def test_bad_metrics_checkpoint_and_evaluation_requests(api: Api) -> None:
    ds = await register_digits(api)
    job_id = await submit(api, training_body(ds, epochs=1))
    assert (await api("GET", f"jobs/{job_id}/metrics", params={"max_points": -1})).status == 400
    stream = await api("GET", f"jobs/{job_id}/metrics/stream", params={"interval": "soon"})
    assert stream.status == 400 and "interval" in stream.json["error"]["message"]
    assert (await api("GET", "checkpoints/ckpt_nope")).error_code() == "NOT_FOUND"
    assert (await api("GET", "jobs/job_nope/metrics")).status == 404
    resp = await api(
        "POST", "evaluations", json_body={"benchmarks": [{"name": "x", "dataset": ds}]}
    )
    assert resp.status == 422 and "job_id" in resp.text
    resp = await api(
        "POST",
        "evaluations",
        json_body={"job_id": job_id, "benchmarks": [{"name": "x", "dataset": "ds_nope"}]},
    )
    assert resp.status == 404 and "ds_nope" in resp.json["error"]["message"]
    resp = await api(
        "POST",
        "evaluations",
        json_body={
            "job_id": job_id,
            "benchmarks": [{"name": "x", "dataset": ds, "parameters": {"split": "test"}}],
        },
    )
    assert resp.status == 422 and "split" in resp.text
    other = await api.create_key("mallory")
    assert (await api("GET", f"jobs/{job_id}/metrics", key=other)).status == 404
    assert (await api("GET", f"jobs/{job_id}/checkpoints", key=other)).status == 404
    assert (await api("POST", f"jobs/{job_id}/pause", key=other)).status == 404
    assert (await api("GET", "reservations", token=False)).status == 401
