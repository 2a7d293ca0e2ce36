"""Usage and billing over the real server: measured CPU time of tasks and training, cost,
hourly buckets, project and admin views, the internal routes and their token."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratalab.kernels.power import probe
from stratalab.testing import assert_error
from tests.jupyter_ext.modelfiles import tensor
from tests.training.conftest import register_digits, submit

#: an hour costs 3.6, so cost = cpu_ms / 1e6: easy to check by hand.
PRICE_CPU_HOUR = 3.6
#: a task that burns CPU in a child process too (the child's time must count).
BURN = """
import subprocess, sys
total = sum(i * i for i in range(2_000_000))
subprocess.run([sys.executable, "-c", "sum(i * i for i in range(2_000_000))"], check=True)
print(total)
"""
DONE = {"COMPLETED", "FAILED", "CANCELLED"}
HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")


@pytest.fixture
def stratalab_config() -> dict[str, Any]:
    """A price table with round numbers."""
    return {"price_cpu_hour": PRICE_CPU_HOUR, "price_gpu_hour": 36.0}


async def _task(api: Any, key: str, script: str, **extra: Any) -> dict[str, Any]:
    resp = await api("POST", "jobs", json_body={"name": "burn", "script": script, **extra}, key=key)
    assert resp.status == 201, resp.text
    return await api.wait_job(resp.json["job_id"], DONE, key=key, timeout=60)


def totals_energy_is_null(body: dict[str, Any]) -> bool:
    """No energy anywhere: this machine has neither RAPL nor NVML."""
    return body["totals"]["energy_j"] is None and all(
        k["energy_j"] is None for k in body["by_kind"].values()
    )


def _token(api: Any) -> str:
    path = Path(api.coordinator.config.data_dir) / "internal_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text().strip()


async def test_usage_counts_measured_cpu_of_tasks_and_training(api):
    # Prepare: a user runs a CPU-burning task and a short training job
    key = await api.create_key("ann")
    task = await _task(api, key, BURN, max_retries=0)
    assert task["status"] == "COMPLETED", task
    dataset = await register_digits(api, key)
    training = await submit(
        api,
        {
            "type": "training",
            "name": "t",
            "model": {"architecture": "mlp", "hidden": [16]},
            "data_config": {"dataset_id": dataset},
            "training_config": {"epochs": 2, "learning_rate": 0.01},
        },
        key,
    )
    job = await api.wait_job(training, DONE, key=key, timeout=90)
    assert job["status"] == "COMPLETED", job

    # Execute
    usage = await api("GET", "usage", key=key)
    hourly = await api("GET", "usage/hourly", key=key, params={"hours": 3})

    # Assert: measured on the workers, priced by the table
    assert usage.status == 200, usage.text
    body = usage.json
    kinds = body["by_kind"]
    assert body["user_id"] == "ann"
    assert kinds["task"]["cpu_ms"] > 0 and kinds["task"]["tasks"] == 1
    assert kinds["training"]["cpu_ms"] > 0 and kinds["training"]["items"] > 0
    assert kinds["evaluation"]["items"] > 0  # the validation passes
    assert kinds["task"]["gpu_ms"] == 0  # a task's GPU time is not measured
    if probe()["source"] == "unavailable":
        assert totals_energy_is_null(body)
    totals = body["totals"]
    assert totals["cost"] == pytest.approx(totals["cpu_ms"] / 3.6e6 * PRICE_CPU_HOUR, rel=1e-6)
    assert totals["cpu_ms"] == pytest.approx(sum(k["cpu_ms"] for k in kinds.values()), abs=0.01)
    assert body["prices"]["cpu_hour"] == PRICE_CPU_HOUR
    assert hourly.status == 200, hourly.text
    data = hourly.json["data"]
    assert data and all(HOUR.match(h["hour"]) for h in data)
    assert sum(h["totals"]["cpu_ms"] for h in data) == pytest.approx(totals["cpu_ms"], abs=0.01)
    assert sum(h["totals"]["tasks"] for h in data) == totals["tasks"]


async def test_project_admin_and_internal_views(api, model_files):
    # Prepare: ann works under a project (a task, three requests, one failing task); bob exists
    ann, bob = await api.create_key("ann"), await api.create_key("bob")
    project = (await api("POST", "projects", json_body={"name": "p"}, key=ann)).json["id"]
    ok = await _task(api, ann, BURN, project_id=project, max_retries=0)
    failed = await _task(api, ann, "raise SystemExit(3)", max_retries=0)
    assert (ok["status"], failed["status"]) == ("COMPLETED", "FAILED")
    model = (await api.upload(model_files.onnx.read_bytes(), key=ann)).json
    x = tensor(np.ones((1, 4), dtype=np.float32))
    for _ in range(3):
        body = {"model_id": model["id"], "input": x, "project_id": project}
        assert (await api("POST", "inference", json_body=body, key=ann)).status == 200

    # Execute
    mine = await api("GET", f"usage/projects/{project}", key=ann)
    theirs = await api("GET", f"usage/projects/{project}", key=bob)
    admin_as_user = await api("GET", "admin/usage", key=ann)
    admin = await api("GET", "admin/usage")  # the Jupyter token is the server owner: admin
    token = _token(api)
    no_token = await api(
        "GET", "internal/uuid-usage", token=False, params={"from": "2020-01-01T00"}
    )
    bad_token = await api(
        "GET",
        "internal/uuid-usage",
        token=False,
        headers={"X-Internal-Token": "nope"},
        params={"from": "2020-01-01T00"},
    )
    internal = await api(
        "GET",
        "internal/uuid-usage",
        token=False,
        headers={"X-Internal-Token": token},
        params={"from": "2020-01-01T00"},
    )
    errors = await api(
        "GET",
        "internal/uuid-usage/errors",
        token=False,
        headers={"X-Internal-Token": token},
        params={"from": "2020-01-01T00"},
    )

    # Assert
    assert mine.status == 200, mine.text
    kinds = mine.json["by_kind"]
    assert kinds["task"]["tasks"] == 1 and kinds["task"]["cpu_ms"] > 0
    assert kinds.get("inference", {}).get("tasks") == 3, mine.json
    assert kinds["inference"]["items"] == 3
    assert_error(theirs, 404, "NOT_FOUND")
    assert_error(admin_as_user, 403, "FORBIDDEN")
    assert admin.status == 200, admin.text
    assert "ann" in {u["user_id"] for u in admin.json["users"]}
    assert_error(no_token, 401, "AUTH_REQUIRED")
    assert_error(bad_token, 401, "AUTH_INVALID")
    assert internal.status == 200, internal.text
    rows = [r for r in internal.json["data"] if r["uuid"] == "ann"]
    assert rows and HOUR.match(rows[0]["hour"])
    assert sum(r["cpu_tasks"] + r["gpu_tasks"] for r in rows) == 1 + 3
    assert sum(r["cpu_ms"] for r in rows) > 0
    assert internal.json["window_hours"] == 72
    assert internal.json["from"] != "2020-01-01T00"  # moved up into the rolling window
    failures = [r for r in errors.json["data"] if r["uuid"] == "ann"]
    assert sum(r["cpu_tasks"] for r in failures) == 1


#: (path, query, status, code) of refused reads.
BAD_READS = [
    ("usage/hourly", {"hours": 500}, 400, "BAD_REQUEST"),
    ("usage/hourly", {"hours": 0}, 400, "BAD_REQUEST"),
    ("usage", {"hours": -1}, 400, "BAD_REQUEST"),
    ("usage", {"hours": "lots"}, 400, "BAD_REQUEST"),
    ("admin/usage", {"hours": 100000}, 400, "BAD_REQUEST"),
    ("efficiency/chart/tta", {"limit": -5}, 400, "BAD_REQUEST"),
    ("efficiency/active", {"limit": 0}, 400, "BAD_REQUEST"),
    ("efficiency", {"pool": "tpu"}, 400, "BAD_REQUEST"),
    ("efficiency/chart/pie", {}, 404, "NOT_FOUND"),
    ("usage/projects/proj_missing", {}, 404, "NOT_FOUND"),
    ("efficiency/job/job_missing", {}, 404, "NOT_FOUND"),
]
#: (query, field named in the error) of refused internal reads.
BAD_HOURS = [
    ({}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-13-01T00"}, "from"),
    ({"from": "2026-03-15T21:00:00Z"}, "from"),
    ({"from": "2026-03-15T21", "to": "soon"}, "to"),
    ({"from": "2026-03-15T21", "to": "2026-03-15T20"}, "to"),
]


async def test_bad_input_answers_with_the_envelope(api):
    headers = {"X-Internal-Token": _token(api)}

    for path, params, status, code in BAD_READS:
        resp = await api("GET", path, params=params)
        err = assert_error(resp, status, code)
        if status == 400:
            assert err["details"]["field"] in params, (path, err)
    for params, field in BAD_HOURS:
        resp = await api("GET", "internal/uuid-usage", token=False, headers=headers, params=params)
        err = assert_error(resp, 400, "BAD_REQUEST")
        assert err["details"]["field"] == field, (params, err)
